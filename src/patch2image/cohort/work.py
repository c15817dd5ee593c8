"""What a worker does with a chunk of photographs: segment, measure, write masks, return one row each.

The segmentation is ``patch2image segment``'s own (``load_segmenter``, :func:`patch2image.segment.prepare_file`
and the Segmenter's post-processing), so a cohort's masks are the files ``segment`` writes for the same
photographs, byte for byte. Each worker process loads the models once, on its first
chunk, and keeps them (:func:`loaded_models`); a chunk carries only file names there and small rows back,
so the scheduler never holds an image.
"""

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np

from patch2image.cohort.keys import content_hash, file_state, photograph_key
from patch2image.errors import UserError


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a worker needs to know to give a photograph's row; ``key`` tells one settings from another."""

    model: str  # a shipped model's name, or a weights or ONNX file the workers can read
    disc_model: str | None = None
    backend: str = "auto"
    precision: str = "auto"
    threshold: float | None = None  # None: the model's own
    tta: bool = False
    inside_fov: bool = True
    measure: bool = False
    save_masks: bool = False
    out_dir: str = ""  # where the masks go (absolute: the workers may run elsewhere)
    threads: int | None = None  # the network's threads in each worker (None: the worker's default)
    microns_per_pixel: float | None = None  # the measurements' scale, where the camera's is known
    fov_degrees: float | None = None  # or the field of view's angle (45 for most fundus cameras)
    key: str = ""  # settings_key of the fields above and of the models' content

    def results(self) -> dict:
        """The fields that change a result (the key's input): not where masks go, not the threads."""
        fields = dataclasses.asdict(self)
        for name in ("out_dir", "threads", "key"):
            fields.pop(name)
        return fields


@dataclasses.dataclass
class _Model:
    segmenter: object  # a patch2image.inference.Segmenter, with its post-processing
    threshold: float | None  # None: the model's own


@dataclasses.dataclass
class Models:
    vessels: _Model
    disc: _Model | None


_LOADED: dict[str, Models] = {}
_LOADING = threading.Lock()


def loaded_models(settings: Settings) -> Models:
    """This process's models for ``settings``, loaded on first use and kept for the next chunks."""
    with _LOADING:
        if settings.key not in _LOADED:
            _reuse_freed_memory()
            _LOADED.clear()  # one cohort's models at a time
            disc = _load(settings.disc_model, settings, "optic_disc") if settings.disc_model else None
            _LOADED[settings.key] = Models(_load(settings.model, settings, "vessels"), disc)
        return _LOADED[settings.key]


def _reuse_freed_memory() -> None:
    """Let glibc keep freed arrays for the next photograph, as in a plain process, rather than unmap them.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also fixes glibc's mmap
    threshold: every array of a photograph is then mapped afresh and page-faulted in, and a worker took
    18% longer per photograph than ``segment`` (``benchmarks/cohort.py``). Set here, at run time, it holds
    on any cluster, however its workers were started. The bounds keep a worker's held memory small.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None)  # the process's own symbols: glibc's, where mallopt is
    if not hasattr(libc, "mallopt"):
        return
    libc.mallopt(_M_TRIM_THRESHOLD, 64 * 2**20)
    libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)  # glibc's own upper bound for its dynamic threshold


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def _load(name: str, settings: Settings, task: str) -> _Model:
    """A model's Segmenter, loaded as ``segment`` loads it from the same options."""
    from patch2image.inference import load_segmenter

    segmenter = load_segmenter(
        name, backend=settings.backend, precision=settings.precision, threads=settings.threads,
        announce=lambda line: None, tta=settings.tta, inside_fov=settings.inside_fov,
    )  # fmt: skip
    if segmenter.metadata.task != task:
        option = "--model" if task == "vessels" else "--disc-model"
        raise UserError(f"{option} {name}: a {segmenter.metadata.task} model, where a {task} model is needed")
    return _Model(segmenter, settings.threshold if task == "vessels" else None)


def segment_chunk(settings: Settings, files: list[str]) -> list[dict]:
    """One row per photograph; a photograph that fails gives its row with the reason, never an exception."""
    models = loaded_models(settings)  # a model that cannot load is the run's error, not a photograph's
    return [segment_photograph(models, settings, file) for file in files]


def segment_photograph(models: Models, settings: Settings, file: str) -> dict:
    from patch2image.segment import describe_failure

    size, mtime_ns = file_state(file)
    row = {"file": file, "size": size, "mtime_ns": mtime_ns, "settings": settings.key, "content_hash": None}
    started = time.perf_counter()
    try:
        row["content_hash"] = _hash(file)
        row.update(_results(models, settings, Path(file), row["content_hash"]))
        row["status"] = "ok"
    except Exception as exc:  # one bad photograph must not stop the others
        row["status"] = describe_failure(Path(file), exc)
    row["seconds"] = round(time.perf_counter() - started, 4)
    return row | provenance(settings)


def _hash(file: str) -> str:
    try:
        return content_hash(file)
    except FileNotFoundError:
        raise UserError(f"{file}: no such file") from None
    except OSError as exc:
        raise UserError(f"{file}: cannot be read ({exc.strerror or exc})") from None


def provenance(settings: Settings) -> dict:
    """What made a row: the models as named, and the software version of the worker that ran them."""
    from patch2image.weights import _software_version

    return {"model": settings.model, "disc_model": settings.disc_model, "software_version": _software_version()}


def _results(models, settings, path: Path, content: str) -> dict:
    from patch2image.fundus_check import check_photograph
    from patch2image.postprocessing import disc_measurement
    from patch2image.segment import prepare_file

    vessels = models.vessels.segmenter
    rgb, fov, network_input = prepare_file(path, vessels)
    prob = vessels.finish(vessels.predict(network_input), fov)
    mask = vessels.mask_of(prob, models.vessels.threshold)
    height, width = rgb.shape[:2]
    working_height, working_width = network_input.shape[-2:]
    row = {
        "fundus_warning": check_photograph(rgb, fov).warning or None,  # what segment warns of
        "height": height, "width": width, "working_height": int(working_height), "working_width": int(working_width),
        "scale": round(working_width / width, 4), "fov_pixels": int(fov.sum()), "vessel_pixels": int(mask.sum()),
    }  # fmt: skip
    key = photograph_key(content, settings.key)
    if settings.save_masks:
        row.update(_write_masks(settings.out_dir, key, "vessels", prob, mask))
    disc_mask = None
    if models.disc is not None:
        disc = models.disc.segmenter
        disc_prob = disc.finish(disc.predict(disc.prepare(rgb, fov)), fov)
        disc_mask = disc.mask_of(disc_prob, models.disc.threshold)
        found = disc_measurement(disc_mask)
        # optic_disc_*: not the measurements' disc_* columns, which come from the same mask by their own rule
        row.update({f"optic_disc_{name}": (None if value == "" else value) for name, value in found.items()})
        if settings.save_masks:
            row.update(_write_masks(settings.out_dir, key, "disc", disc_prob, disc_mask))
    if settings.measure:
        row.update(measurements(mask, fov, disc_mask, settings.microns_per_pixel, settings.fov_degrees))
    return row


MASKS = "masks"


def mask_path(key: str, what: str, kind: str) -> str:
    """``masks/3fa/3fa9...-0c1d..._vessels_mask.png``, relative to ``--out``.

    Sharded by the first three characters of the content hash: 4,096 folders, about 100 files each at
    100,000 photographs, so every folder stays quick to list.
    """
    return f"{MASKS}/{key[:3]}/{key}_{what}_{kind}.png"


def _write_masks(out_dir: str, key: str, what: str, prob: np.ndarray, mask: np.ndarray) -> dict:
    from patch2image.data.io import write_png
    from patch2image.postprocessing import probability_png

    paths = {kind: mask_path(key, what, kind) for kind in ("prob", "mask")}
    write_png(Path(out_dir) / paths["prob"], probability_png(prob))
    write_png(Path(out_dir) / paths["mask"], mask.astype(np.uint8) * 255)
    return {f"{what}_{kind}": path for kind, path in paths.items()}


def measurement_columns() -> tuple[str, ...]:
    """The measurement columns ``--measure`` adds."""
    from patch2image.measure import COLUMNS  # scikit-image and SciPy: only when measuring

    return tuple(COLUMNS)


def measurements(vessels, fov, disc, microns_per_pixel: float | None, fov_degrees: float | None) -> dict:
    """The measurement row of one photograph's masks (the columns of :func:`measurement_columns`)."""
    from patch2image.measure import measure_masks

    found = measure_masks(vessels, fov, disc, microns_per_pixel=microns_per_pixel, fov_degrees=fov_degrees)
    return {name: _plain(value) for name, value in found.items()}


def _plain(value):
    """Numbers as float (a column's type must not depend on which photographs a batch holds), None as null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        value = float(value)
        return None if np.isnan(value) else value
    return str(value)


def prepared(settings: Settings) -> Settings:
    """``settings`` checked on this machine before any worker starts, with absolute paths and its ``key``.

    The key holds the models' content hashes rather than their names, so that a retrained model under the
    same file name is a new key, and a model moved elsewhere is not.
    """
    from patch2image.cohort.keys import settings_key
    from patch2image.weights import resolve_weights

    names, contents = {}, {}
    for option, name in (("model", settings.model), ("disc_model", settings.disc_model)):
        if name is None:
            continue
        path = resolve_weights(name)
        if not path.is_file():
            flag = "--" + option.replace("_", "-")
            raise UserError(f"{flag} {name}: no such shipped model or file (`patch2image models` lists them)")
        shipped = path != Path(name)  # workers resolve a shipped name in their own installation
        names[option] = name if shipped else str(path.resolve())
        contents[option] = content_hash(path)
    settings = dataclasses.replace(settings, out_dir=str(Path(settings.out_dir).resolve()), **names)
    _load(settings.model, settings, "vessels")  # a wrong model is refused here, not once per worker
    if settings.disc_model:
        _load(settings.disc_model, settings, "optic_disc")
    if settings.measure:
        measurement_columns()
    key = settings_key(settings.results() | {name: f"content {digest}" for name, digest in contents.items()})
    return dataclasses.replace(settings, key=key)
