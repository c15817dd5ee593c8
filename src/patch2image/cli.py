"""patch2image: patch-to-image training and fast segmentation of retinal images.

One sub-command per job, each a thin call into the library. Each imports its library modules when it
runs, not here: most of them import torch, which is most of a command's start-up time, and ``--help``
or a mistyped option should answer at once.

Every ``UserError`` becomes one line on stderr and exit status 2; no traceback reaches the user.
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from patch2image.atomic_files import atomic_write, same_file, write_target, write_text
from patch2image.data.registry import DATASETS
from patch2image.errors import UserError
from patch2image.parameters import POSITIVE, THRESHOLD, as_options, check

USER_NETWORK_HELP = "a user network module:Class the weights were trained with (imported only when named here)"
THRESHOLD_HELP = "mask threshold on the probability (default: the model's, the one it was scored at, else 0.5)"
TTA_HELP = "average over the image and its three flips (4x the time; +.006-.008 Dice on other cameras' photographs)"


def _add_dataset_args(parser: argparse.ArgumentParser) -> None:
    """--kind and the --images/--labels/--masks form of a user's own data (data check, evaluate)."""
    parser.add_argument("--kind", choices=list(DATASETS))
    parser.add_argument("--images", help="folder of images (your own data)")
    parser.add_argument("--labels", help="folder of labels, paired with the images by name")
    parser.add_argument("--masks", help="folder of field-of-view masks (optional)")


def _open_dataset(args):
    from patch2image.data import folder_dataset, open_dataset

    if args.images:
        return folder_dataset(args.images, args.labels, args.masks)
    if args.labels or args.masks:
        raise UserError("--labels and --masks go with --images DIR")
    if not args.path:
        raise UserError("give a dataset PATH or --images DIR --labels DIR")
    return open_dataset(args.path, args.kind)


def cmd_nets(args) -> int:
    from patch2image.networks import NETWORKS, count_parameters, create_network

    rows = [{"name": n, "parameters": count_parameters(create_network(n))} for n in NETWORKS]
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print(f"{row['name']:<10} {row['parameters']:>10,} parameters")
    return 0


MODELS_FOOTNOTE = """\
Scores: the mean over the test images named, at threshold 0.5. AUC and Dice: over the whole image (the paper's
protocol); FOV: inside the field of view only. protocol: paper = trained as long as the paper did, budget = fewer
epochs. The README gives some models' scores on other images too (every fold; DRIVE alone): docs/protocol.md."""


def cmd_models(args) -> int:
    from patch2image.weights import ALIASES, shipped_models

    models = shipped_models()
    if args.json:
        print(json.dumps([metadata.to_dict() | {"name": name} for name, metadata in models]))
        return 0
    if not models:
        print("no shipped models in this installation")
        return 0
    row = "{:<20} {:<10} {:<11} {:<9} {:<33} {:>6} {:>6} {:>8} {:>8}"
    print(row.format("model", "network", "task", "protocol", "tested on", "AUC", "Dice", "AUC FOV", "Dice FOV"))
    for name, metadata in models:
        scores = [metadata.metrics.get(area, {}).get(key) for area in ("whole", "fov") for key in ("auc", "dice")]
        print(
            row.format(
                name,
                metadata.network or "?",
                metadata.task,
                metadata.protocol or "?",
                _tested_on(metadata),
                *("-" if score is None else f"{score:.4f}" for score in scores),
            )  # fmt: skip
        )
    for alias, name in ALIASES.items():
        if name in dict(models):
            print(f"{alias:<20} = {name}")
    print(MODELS_FOOTNOTE)
    if any(not metadata.metrics for _, metadata in models):
        print(
            "none held out: trained on every labelled photograph of its datasets; the same recipe trained without "
            "one camera and scored on it is its evidence (docs/results/cross-dataset.md)"
        )
    return 0


def _tested_on(metadata) -> str:
    """The images a shipped model's scores are the mean over: ``DRIVE test set``, ``STARE fold 1 (4 images)``."""
    titles = {kind: spec.title.split(" (")[0] for kind, spec in DATASETS.items()}
    kinds = (metadata.dataset or "?").split("+")
    if not metadata.metrics:
        return "none held out (see below)"
    if len(kinds) > 1:
        counts = {kind: sum(image.startswith(f"{kind}-") for image in metadata.test_images) for kind in kinds}
        return " + ".join(f"{titles.get(kind, kind)} {count}" for kind, count in counts.items())
    title = titles.get(kinds[0], kinds[0])
    if not metadata.test_images:
        return f"{title} test set"
    where = f"fold {metadata.fold}" if metadata.fold is not None else "test set"
    return f"{title} {where} ({len(metadata.test_images)} images)"


def cmd_demo(args) -> int:
    """The main job: segment scikit-image's sample fundus photograph with a shipped model."""

    from skimage.data import retina

    from patch2image.data.io import write_png
    from patch2image.weights import default_model

    model = args.model or default_model()
    if model is None:
        raise UserError("no shipped model in this installation; train one with `patch2image train`")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photo = out / "retina.png"
    write_png(photo, retina())
    print(f"segmenting scikit-image's sample fundus photograph ({photo}) with {model}")
    code = main(["segment", str(photo), "--model", model, "--out", str(out)])
    if code == 0:
        print(f"wrote {out}/retina_prob.png, retina_mask.png and retina_overlay.png")
    return code


def cmd_data_check(args) -> int:
    from patch2image.data import check_dataset

    report, problems = check_dataset(_open_dataset(args))
    print(report)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def cmd_train(args) -> int:
    from patch2image.config import load_config
    from patch2image.evaluation import format_results
    from patch2image.experiment import run_experiment
    from patch2image.training import distributed

    config = load_config(args.config, args.fold, args.seed)
    rows = run_experiment(config, args.out, args.resume, args.quiet, args.device)
    if not distributed.is_main():
        return 0
    if not rows:
        print(
            f"results in {args.out}: no test images were held out, so no rows are scored; "
            "score its weights on other photographs with `patch2image evaluate --model`"
        )
        return 0
    threshold = config.evaluation.threshold
    scored = "thresholds chosen on validation images" if threshold == "validation" else f"threshold {threshold:g}"
    print(f"results in {args.out} (whole image, {scored}, mean over test images)")
    print(format_results(rows))
    return 0


def cmd_evaluate(args) -> int:
    from patch2image.evaluation import (
        PROTOCOLS,
        evaluate_model,
        format_results,
        json_safe,
        read_run_metrics,
        write_evaluation,
    )

    if args.run_dir:
        rows = read_run_metrics(args.run_dir)
        if not rows:
            raise UserError(f"{args.run_dir}: no metrics/<row>.json; is it a run directory of patch2image train?")
        if args.json:
            write_text(args.json, json.dumps(json_safe(rows), indent=1))
    else:
        if not args.model:
            raise UserError("give a RUN_DIR, or --model NAME_OR_WEIGHTS with a dataset")
        if args.json:  # refused now, not after the evaluation
            beside = Path(args.json).with_suffix(".csv")  # write_evaluation's per-image CSV
            if same_file(args.json, beside):
                raise UserError(
                    f"--json {args.json}: the per-image CSV is written beside it as {beside}, the same file; "
                    "give a name ending in .json"
                )
            for path in (args.json, beside):
                write_target(path)  # a folder, a FIFO or a device there is refused
        args.path = args.path or args.dataset
        dataset = _open_dataset(args)
        result = evaluate_model(
            args.model, dataset, args.split, args.fold, args.threshold, args.mode, args.stride, args.network,
            backend=args.backend, announce=_announce, tta=args.tta,
        )  # fmt: skip
        if args.json:
            write_evaluation(result, args.json)
        rows = {"model": result}
    for protocol in PROTOCOLS:
        print(f"{protocol} ({'whole image' if protocol == 'whole' else 'inside the field of view'}), mean over images")
        print(format_results(rows, protocol))
    return 0


def _add_segment_arguments(parser: argparse.ArgumentParser) -> None:
    from patch2image.inference import DEFAULT_MAX_PIXELS, DEFAULT_OVERLAP
    from patch2image.runtime.backends import PRECISION_CHOICES

    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument(
        "--model",
        metavar="NAME_OR_WEIGHTS",
        help="a shipped model or alias (`patch2image models`), a .safetensors or a .onnx file (default: the package's "
        "default vessel model)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for NAME_{prob,mask,overlay}.png")
    parser.add_argument("--network", metavar="MODULE:CLASS", help=USER_NETWORK_HELP)
    parser.add_argument(
        "--mode", choices=["image", "patch"], default="image",
        help="image: whole image (tiles if large); patch: the paper's patch-level segmentation (slow)",
    )  # fmt: skip
    parser.add_argument("--stride", type=int, default=2, help="patch mode: stride between patches (default 2)")
    parser.add_argument("--threshold", type=float, help=THRESHOLD_HELP)
    parser.add_argument("--tta", action="store_true", help=TTA_HELP)
    parser.add_argument(
        "--scale", type=float, default=1.0, metavar="M",
        help="multiply the size the scale rule chooses by M (0.1-4; default 1): for a camera you know the rule "
        "shrinks too much (M > 1) or too little",
    )  # fmt: skip
    _add_backend_argument(parser)
    parser.add_argument(
        "--max-megapixels", type=float, default=DEFAULT_MAX_PIXELS / 1e6,
        help=f"larger images (at the model's scale) go in tiles (default {DEFAULT_MAX_PIXELS / 1e6:g})",
    )  # fmt: skip
    parser.add_argument("--tile", type=int, default=None, help="largest tile side in pixels (default: from the budget)")
    parser.add_argument(
        "--overlap", type=int, default=DEFAULT_OVERLAP, help=f"tile overlap (default {DEFAULT_OVERLAP})"
    )
    parser.add_argument(
        "--precision", choices=PRECISION_CHOICES, default="auto",
        help="bf16: bfloat16 (PyTorch autocast, OpenVINO); auto (default): float32 or bfloat16, whichever runs faster "
        "here (bfloat16 moved DRIVE's AUC and Dice by at most 2e-5, docs/benchmarks.md); fp32: float32 only",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the network (default: all)")
    parser.add_argument(
        "--workers", type=int, default=0, metavar="N",
        help="processes that read and pre-process ahead and write the outputs, while the network runs here "
        "(default 0: everything in this process)",
    )  # fmt: skip
    parser.add_argument(
        "--all-regions", action="store_true",
        help="optic disc: keep every region of the mask (default: the largest, the disc being one region)",
    )  # fmt: skip
    parser.add_argument(
        "--outside-fov", action="store_true",
        help="keep what the network finds outside the field of view (default: cleared, there is no retina there)",
    )  # fmt: skip
    parser.add_argument(
        "--prob-bits", type=int, choices=[16, 8], default=16,
        help="probability map: 16-bit grey (value/65535, default, keeps the ranking) or 8-bit (value/255, for viewing)",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace files in --out that segment did not write (by default such a file stops the command)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--disc-model", default="optic-disc", metavar="NAME_OR_WEIGHTS",
        help="the optic disc model the zones are drawn around (default optic-disc)",
    )  # fmt: skip
    parser.add_argument(
        "--microns-per-pixel", type=float, help="the scale (default: from --fov-degrees, else from the disc)"
    )
    parser.add_argument(
        "--fov-degrees", type=float,
        help="the camera's angle across the field of view (45 for most fundus cameras); default: scale from the disc",
    )  # fmt: skip


def _add_backend_argument(parser: argparse.ArgumentParser) -> None:
    from patch2image.runtime.backends import CHOICES

    parser.add_argument(
        "--backend", choices=CHOICES, default="auto",
        help="what runs the network (default auto: the fastest here for the network and image size, measured once "
        "and remembered; in float32 every backend gives the same probabilities within 1e-4)",
    )  # fmt: skip


def cmd_segment(args: argparse.Namespace) -> int:
    """Segment every input; 0 when all succeeded, 1 when any input failed (143 after SIGTERM)."""
    from tqdm import tqdm

    from patch2image.inference import load_segmenter
    from patch2image.segment import (
        Outputs,
        Terminated,
        claim_outputs,
        describe_failure,
        expand_inputs,
        output_stem,
        segment_photographs,
    )
    from patch2image.weights import default_model

    check({"max_megapixels": POSITIVE}, vars(args))
    files, problems = expand_inputs(args.inputs, args.out)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not files:
        return 1
    if args.model is None and default_model() is None:
        raise UserError("no shipped model in this installation; name one with --model")
    segmenter = load_segmenter(
        args.model or default_model(), backend=args.backend, precision=args.precision, threads=args.threads,
        network=args.network, announce=(lambda line: None) if args.quiet else _announce, mode=args.mode,
        stride=args.stride, tta=args.tta, tile=args.tile, overlap=args.overlap,
        max_pixels=int(args.max_megapixels * 1e6), inside_fov=not args.outside_fov,
        largest_region=not args.all_regions, scale=args.scale,
    )  # fmt: skip
    outputs = Outputs(args.threshold, args.prob_bits, segmenter.metadata.task)
    disc = None
    if args.measure:  # only then: measuring imports scikit-image and SciPy, which segmenting does not need
        from patch2image.measure.scale import check_scale_arguments

        if segmenter.metadata.task != "vessels":
            raise UserError(f"--measure: {args.model} is an optic disc model; measurements need a vessel model")
        check_scale_arguments(args.microns_per_pixel, args.fov_degrees)
        disc = _segmenter(args, args.disc_model)
    tables = ("measurements.csv",) if args.measure else ()
    record = claim_outputs(files, Path(args.out), segmenter.metadata.task, args.overwrite, tables)  # before the bar
    failed, started = len(problems), time.perf_counter()
    bar = tqdm(total=len(files), desc="segment", unit="image", disable=args.quiet or len(files) == 1, file=sys.stderr)

    segmented = []

    def report_failure(path: Path, exc: Exception | None) -> None:
        nonlocal failed
        if exc is not None:
            failed += 1
            print(f"error: {describe_failure(path, exc)}", file=sys.stderr)

    def report(path: Path, exc: Exception | None) -> None:
        nonlocal failed
        if exc is not None:
            failed += 1
            tqdm.write(f"error: {describe_failure(path, exc)}", file=sys.stderr)
        else:
            segmented.append(path)
        bar.update(1)

    def warn(path: Path, line: str) -> None:
        tqdm.write(f"warning: {path}: {line}", file=sys.stderr)

    def measure() -> None:
        """``--measure``: the segmented photographs, with the masks just written, into measurements.csv."""
        from patch2image.measure.photograph import Measurer, measure_segmented

        out = Path(args.out)
        measurer = Measurer(None, disc, None, args.microns_per_pixel, args.fov_degrees)
        masks = {path: out / f"{output_stem(path)}_mask.png" for path in segmented}
        _write_measurements(out, measure_segmented(masks, measurer, report_failure))
        print(f"measurements of each image in {out / 'measurements.csv'}")

    def note(path: Path, line: str) -> None:
        tqdm.write(f"{path.name}: {line}", file=sys.stdout)

    try:
        with bar:
            table = segment_photographs(
                record, segmenter, outputs, report, args.workers, warn, None if args.quiet else note,
                measure if args.measure else None,
            )  # fmt: skip
    except Terminated:
        print("terminated (SIGTERM); the outputs written so far are complete", file=sys.stderr)
        return 143
    if table is not None:
        print(f"optic disc centre and diameter of each image in {table}")
    done = len(segmented)
    choosing = getattr(segmenter.model, "measuring_seconds", 0.0)  # auto's one-time measurement is no segmentation
    seconds = (time.perf_counter() - started - choosing) / max(1, len(files))
    remembered = getattr(segmenter.model, "remembered", True)
    again = "once on this machine" if remembered else "again next run: the cache is not writable"
    once = f"; {choosing:.1f} s more to choose the backend, {again}" if choosing >= 0.05 else ""
    described = getattr(segmenter.model, "description", args.backend)
    print(f"segmented {done} of {len(files)} images into {args.out} ({described}, {args.mode} mode, "
          f"{seconds:.2f} s per image{once})")  # fmt: skip
    return 1 if failed else 0


def cmd_measure(args) -> int:
    """Measure every input into ``--out``/measurements.csv; 0 when all were measured, 1 when any failed."""
    from pathlib import Path

    from tqdm import tqdm

    from patch2image.measure.photograph import Measurer, measure_files, measure_mask_files
    from patch2image.measure.scale import check_scale_arguments
    from patch2image.segment import check_stems, describe_failure, expand_inputs

    if args.threshold is not None:
        check({"threshold": THRESHOLD}, {"threshold": args.threshold})
    check_scale_arguments(args.microns_per_pixel, args.fov_degrees)
    if (args.disc_masks or args.fov_masks) and not args.masks:
        raise UserError("--disc-masks and --fov-masks go with --masks")
    out = Path(args.out)
    target = out / "measurements.csv"
    if target.exists() and not args.overwrite:
        raise UserError(f"{target}: exists; pass --overwrite to replace it, or choose another --out")
    files, problems = expand_inputs(args.inputs, out)
    check_stems(files)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not files:
        return 1
    failed = len(problems)
    bar = tqdm(total=len(files), desc="measure", unit="image", disable=args.quiet or len(files) == 1, file=sys.stderr)

    def report(path, exc) -> None:
        nonlocal failed
        if exc is not None:
            failed += 1
            tqdm.write(f"error: {describe_failure(path, exc)}", file=sys.stderr)
        bar.update(1)

    scale = {"microns_per_pixel": args.microns_per_pixel, "fov_degrees": args.fov_degrees}
    with bar:
        if args.masks:
            measurer = Measurer(None, None, args.threshold, **scale)
            rows = measure_mask_files(files, measurer, report, args.disc_masks, args.fov_masks)
        else:
            vessels, disc = _segmenter(args, args.model), _segmenter(args, args.disc_model)
            measurer = Measurer(vessels, disc, args.threshold, **scale)
            rows = measure_files(files, measurer, report)
    _write_measurements(out, rows)
    print(f"measured {len(rows)} of {len(files)} images into {target}")
    return 1 if failed else 0


def _segmenter(args, name: str | None):
    """A Segmenter for ``name`` (default: the package's vessel model) with the command's backend and threads."""
    from patch2image.inference import load_segmenter

    if name is None:
        from patch2image.weights import default_model

        name = default_model()
        if name is None:
            raise UserError("no shipped model in this installation; name one with --model")
    return load_segmenter(
        name, backend=args.backend, precision=getattr(args, "precision", "auto"), threads=args.threads,
        announce=(lambda line: None) if args.quiet else _announce,
    )  # fmt: skip


def _write_measurements(out, rows: list[dict]) -> None:
    from patch2image.atomic_files import write_text
    from patch2image.measure import csv_text

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    write_text(out / "measurements.csv", csv_text(rows))


def _announce(line: str) -> None:
    """An informational line (stdout: stderr is for errors) that leaves segment's progress bar intact."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)


def cmd_export(args) -> int:
    """Export the weights as ONNX, then check onnxruntime against PyTorch on a test image (or, int8, say how far)."""
    from patch2image.runtime.export import export_onnx
    from patch2image.weights import load_model

    model, metadata = load_model(args.model, args.network)
    if args.int8:
        return _export_int8(model, metadata, args)
    difference = export_onnx(model, args.onnx, metadata, args.opset)
    print(f"wrote {args.onnx} (opset {args.opset}; onnxruntime vs PyTorch on a test image: |diff| {difference:.1e})")
    if difference > 1e-4:
        print(f"error: {args.onnx}: onnxruntime and PyTorch differ by {difference:.1e} (> 1e-4)", file=sys.stderr)
        return 1
    return 0


def _export_int8(model, metadata, args) -> int:
    """``export --int8 PHOTOS``: calibrate on the photographs, write the int8 model, report its distance to float32."""

    import numpy as np

    from patch2image.data import read_image
    from patch2image.inference import Segmenter, predict_image
    from patch2image.runtime.export import OnnxModel, check_opset, onnx_bytes
    from patch2image.runtime.quantise import quantise_onnx
    from patch2image.segment import expand_inputs

    check_opset(args.opset)  # refused before the calibration photographs are read
    files, problems = expand_inputs(args.int8)
    if problems:
        raise UserError(problems[0])
    preparer = Segmenter(None, metadata)
    inputs = [preparer.prepare(read_image(path)) for path in files]
    data = quantise_onnx(onnx_bytes(model, metadata, args.opset), inputs)
    with atomic_write(args.onnx) as tmp:
        Path(tmp).write_bytes(data)
    difference = np.abs(predict_image(OnnxModel(data), inputs[0]) - predict_image(model, inputs[0]))
    print(
        f"wrote {args.onnx} (int8, calibrated on {len(inputs)} images; vs PyTorch float32 on {files[0].name}: "
        f"mean |diff| {difference.mean():.1e}, max {difference.max():.2f})"
    )
    return 0


def cmd_report(args) -> int:
    from patch2image.report import build_report

    path = build_report(args.run_dirs, args.out, args.images, args.page)
    print(f"report in {path}")
    return 0


def cmd_serve(args) -> int:
    """A local web page to segment photographs: drag and drop, threshold slider, downloads."""
    from patch2image.serve import run_server

    return run_server(
        host=args.host, port=args.port, models=args.model, max_upload_mb=args.max_upload_mb,
        max_megapixels=args.max_megapixels, threads=args.threads,
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="patch2image", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    nets = commands.add_parser("nets", help="list the registered networks and their parameter counts")
    nets.add_argument("--json", action="store_true")
    nets.set_defaults(run=cmd_nets)

    demo = commands.add_parser("demo", help="segment a sample fundus photograph with a shipped model")
    demo.add_argument("--out", default="runs/demo", help="folder for the photograph and its segmentation")
    demo.add_argument("--model", help="a shipped model's name or a weights file (default: vessels)")
    demo.set_defaults(run=cmd_demo)

    models = commands.add_parser("models", help="list the trained models shipped with the package")
    models.add_argument("--json", action="store_true")
    models.set_defaults(run=cmd_models)

    train = commands.add_parser("train", help="run an experiment: patch training, transfer, fine-tuning, scratch")
    train.add_argument("config", help="experiment configuration (YAML), e.g. configs/smoke.yaml")
    train.add_argument("--out", required=True, help="run directory for weights, history, metrics")
    train.add_argument("--fold", type=int, help="the cross-validation fold to run (STARE 1-5, CHASE_DB1 1-4)")
    train.add_argument("--seed", type=int, help="replaces the configuration's seed: the same run by other chance")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    train.add_argument("--quiet", action="store_true", help="one log line per epoch instead of progress bars")
    train.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda or cuda:N")
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("evaluate", help="score a run directory, or a model on a dataset")
    evaluate.add_argument("run_dir", nargs="?", help="a run directory of `patch2image train`")
    evaluate.add_argument("--model", help="a shipped model's name, a .safetensors or a .onnx file")
    evaluate.add_argument("--network", metavar="MODULE:CLASS", help=USER_NETWORK_HELP)
    evaluate.add_argument("--dataset", help="dataset root (DRIVE, STARE, CHASE_DB1, IDRiD or a folder)")
    _add_dataset_args(evaluate)  # with --images, all images are test images
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    evaluate.add_argument("--fold", type=int, help="STARE and CHASE_DB1: the fold whose split to score")
    evaluate.add_argument("--mode", default="image", choices=["image", "patch"])
    evaluate.add_argument("--stride", type=int, default=2, help="patch mode: distance between patches")
    evaluate.add_argument("--threshold", type=float, help=THRESHOLD_HELP)
    evaluate.add_argument("--tta", action="store_true", help=TTA_HELP)
    _add_backend_argument(evaluate)
    evaluate.add_argument("--json", help="write the metrics here (with --model, also the per-image CSV beside it)")
    evaluate.set_defaults(run=cmd_evaluate, path=None)

    segment = commands.add_parser("segment", help="segment photographs: probability maps, masks, overlays")
    _add_segment_arguments(segment)
    segment.add_argument(
        "--measure", action="store_true", help="vessel models: also write measurements.csv (as `measure` does)"
    )
    _add_scale_arguments(segment)
    segment.set_defaults(run=cmd_segment)

    measure = commands.add_parser("measure", help="vessel density, fractal dimension, calibre, tortuosity by zone")
    measure.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="photographs (masks with --masks): files, folders or patterns"
    )
    measure.add_argument("--out", required=True, metavar="DIR", help="folder for measurements.csv")
    measure.add_argument("--model", metavar="NAME_OR_WEIGHTS", help="the vessel model (default: the package's)")
    _add_scale_arguments(measure)
    measure.add_argument("--threshold", type=float, help="vessel mask threshold (default: the model's)")
    measure.add_argument(
        "--masks", action="store_true",
        help="the inputs are vessel masks or probability maps (segment's NAME_mask.png), not photographs",
    )  # fmt: skip
    measure.add_argument("--disc-masks", metavar="DIR", help="with --masks: the disc masks, same file names")
    measure.add_argument("--fov-masks", metavar="DIR", help="with --masks: field-of-view masks (default: everything)")
    _add_backend_argument(measure)
    measure.add_argument("--threads", type=int, default=None, help="CPU threads of the networks (default: all)")
    measure.add_argument("--overwrite", action="store_true", help="replace an existing measurements.csv")
    measure.add_argument("--quiet", action="store_true", help="no progress bar")
    measure.set_defaults(run=cmd_measure)

    from patch2image.cohort.command import add_arguments as add_cohort_arguments
    from patch2image.cohort.command import cmd_cohort

    cohort = commands.add_parser(
        "cohort", help="segment and measure a whole cohort on Dask, resumably, into one results table"
    )
    add_cohort_arguments(cohort)
    cohort.set_defaults(run=cmd_cohort)

    from patch2image.runtime.export import MIN_OPSET, OPSET

    export = commands.add_parser("export", help="export a model as ONNX with dynamic height and width")
    export.add_argument("model", metavar="NAME_OR_WEIGHTS", help="a shipped model's name or a .safetensors file")
    export.add_argument("--onnx", required=True, metavar="FILE", help="the .onnx file to write")
    export.add_argument("--network", metavar="MODULE:CLASS", help=USER_NETWORK_HELP)
    export.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset, {MIN_OPSET} or later (default {OPSET})")
    export.add_argument(
        "--int8", nargs="+", metavar="PHOTO",
        help="quantise to int8, calibrated on these photographs, folders or patterns (about 20 from the camera "
        "the model will see); on DRIVE it cost Mini-Unet under 0.001 AUC and 0.003 Dice (docs/benchmarks.md)",
    )  # fmt: skip
    export.set_defaults(run=cmd_export)

    report = commands.add_parser("report", help="the paper's tables and figures from run directories")
    report.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR",
        help="run directories, or folders holding them; evaluate --json files make the cross-dataset matrix",
    )  # fmt: skip
    report.add_argument("--out", required=True, help="output folder: report.html, tables.md, tables.tex, figures/")
    report.add_argument(
        "--images", nargs="+", metavar="NAME",
        help="test images (file stems) for the qualitative panels; default: the first of each dataset",
    )  # fmt: skip
    report.add_argument(
        "--page", metavar="MARKDOWN", help="also write the tables into this Markdown page, below its hand-written text"
    )
    report.set_defaults(run=cmd_report)

    serve = commands.add_parser("serve", help="a local web page to segment photographs, for users without a terminal")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1: this computer only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    serve.add_argument(
        "--model", action="append", metavar="NAME_OR_WEIGHTS",
        help="a model to offer, repeatable; the first is the page's default (default: every shipped model)",
    )  # fmt: skip
    serve.add_argument("--max-upload-mb", type=float, default=50, help="largest file accepted (default 50 MB)")
    serve.add_argument("--max-megapixels", type=float, default=40, help="largest photograph accepted (default 40)")
    serve.add_argument("--threads", type=int, default=None, help="CPU threads of the network (default: all)")
    serve.set_defaults(run=cmd_serve)

    data = commands.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="check a dataset's layout and files")
    check.add_argument("path", nargs="?", help="dataset root (DRIVE, STARE, CHASE_DB1, IDRiD or a folder)")
    _add_dataset_args(check)
    check.set_defaults(run=cmd_data_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)
    try:
        with as_options():  # a value out of range is named by its option: --stride, not stride
            return args.run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused: a path that is a file, no permission, a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = "; rerun with --resume to continue from the last finished epoch" if args.command == "train" else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
