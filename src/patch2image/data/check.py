"""``patch2image data check``: read every file of a dataset and report what was found and what is wrong."""

from collections import Counter
from pathlib import Path

from patch2image.data.dataset import Dataset, held_out_count
from patch2image.data.field_of_view import FOV_METHOD
from patch2image.data.io import inspect_image, label_value_set, read_label_values
from patch2image.data.sample import size_mismatch
from patch2image.errors import UserError


def check_dataset(dataset: Dataset, val_fraction: float = 0.2) -> tuple[str, list[str]]:
    """Read every file of ``dataset`` once; describe it and list its problems.

    Field-of-view masks are not computed here (only said to be): that is the slow part of loading.

    Parameters
    ----------
    dataset : Dataset
    val_fraction : float, default 0.2
        For the counts of the held-out validation images.

    Returns
    -------
    report : str
        Kind, task, counts per split (per fold for STARE and CHASE_DB1), image sizes, label values
        before binarising, where the field-of-view masks come from.
    problems : list of str
        One line per problem, each naming its file: missing label, size mismatch, unreadable or
        truncated file, empty folder, unpaired file. Empty when the dataset is fine.
    """
    problems = list(dataset.problems)
    lines = [f"dataset: {dataset.kind} at {dataset.root}", f"task: {dataset.task}"]
    if dataset.paper_size:
        lines.append(f"paper size (HxW): {dataset.paper_size[0]}x{dataset.paper_size[1]}")
    lines += _split_lines(dataset, val_fraction, problems)

    cases = dataset.cases()
    sizes, values, second_values, fov_values, av_values = Counter(), Counter(), Counter(), Counter(), Counter()
    noisy = []
    for case in cases:
        size = _image_size(case.image, problems)
        if size is not None:
            sizes[f"{size[0]}x{size[1]}"] += 1
        for path, counter in (
            (case.label, values),
            (case.second_label, second_values),
            (case.fov, fov_values),
            (case.artery_vein, av_values),
        ):
            if path is None:
                continue
            found = _label_values(path, case.image, size, problems)
            if found is None:
                continue
            counter[_value_text(found)] += 1
            if counter is values and len(found) > 2:
                noisy.append(path)

    lines.append(f"images: {len(cases)}; sizes (WxH): {_counts(sizes) or 'none readable'}")
    if dataset.labelled or values:
        lines.append(f"labels: {sum(c.label is not None for c in cases)}; values before binarising: {_counts(values)}")
    else:
        lines.append("labels: none (images only: fine for segmenting, not for training or scoring)")
    if noisy:
        lines.append(
            f"labels with more than 2 values (binarised > 127, or > 0 when the top is 1): {len(noisy)}, e.g. {noisy[0]}"
        )
    n_second = sum(c.second_label is not None for c in cases)
    if n_second:
        lines.append(f"second-observer labels: {n_second}; values: {_counts(second_values)}")
    n_av = sum(c.artery_vein is not None for c in cases)
    if n_av:
        lines.append(f"artery/vein labels: {n_av}; values: {_counts(av_values)} (kept, not trained on)")
    n_fov = sum(c.fov is not None for c in cases)
    if n_fov:
        lines.append(f"field-of-view masks: from the dataset for {n_fov} images; values: {_counts(fov_values)}")
    if n_fov < len(cases):
        lines.append(f"field-of-view masks: computed when loaded ({FOV_METHOD}) for {len(cases) - n_fov} images")
    lines.append(f"problems: {len(problems)}")
    return "\n".join(lines), problems


def _split_lines(dataset: Dataset, val_fraction: float, problems: list[str]) -> list[str]:
    names = {c.name for c in dataset.cases()}
    if dataset.fold_table:
        lines = []
        for fold, splits in sorted(dataset.fold_table.items()):
            counts = ", ".join(f"{split} {len(ids)}" for split, ids in splits.items())
            lines.append(f"fold {fold}: {counts}")
            for split, ids in splits.items():
                problems += [f"{dataset.root}: {n} (fold {fold}, {split}) is missing" for n in ids if n not in names]
        return lines
    lines = []
    for split in ("train", "val", "test"):
        if split not in dataset.groups:
            continue
        count = len(dataset.groups[split])
        if split == "train" and "val" not in dataset.groups:
            n_val = held_out_count(count, val_fraction)
            lines.append(
                f"train: {count} images ({count - n_val} train + {n_val} validation, val_fraction {val_fraction})"
            )
        else:
            lines.append(f"{split}: {count} images")
    return lines


def _image_size(path: Path, problems: list[str]) -> tuple[int, int] | None:
    try:
        return inspect_image(path)
    except UserError as exc:
        problems.append(str(exc))
        return None


def _label_values(path: Path, image: Path, size, problems: list[str]) -> tuple[int, ...] | None:
    try:
        found = read_label_values(path)
    except UserError as exc:
        problems.append(str(exc))
        return None
    if size is not None and (found.shape[1], found.shape[0]) != size:
        problems.append(size_mismatch(path, found.shape, image, (size[1], size[0])))
    return tuple(int(v) for v in label_value_set(found))


def _counts(counter: Counter) -> str:
    return ", ".join(f"{key} ({n})" for key, n in counter.most_common())


def _value_text(values: tuple[int, ...]) -> str:
    if len(values) > 4:
        return f"{len(values)} values {values[0]}..{values[-1]}"
    return "{" + ", ".join(str(v) for v in values) + "}"
