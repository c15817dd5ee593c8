"""``patch2image segment``: photographs in, probability maps, masks and overlays out.

For each input ``DIR/NAME.EXT`` it writes, in ``--out``, ``NAME_prob.png`` (probability x 65535, 16-bit
grey; ``--prob-bits 8``: x 255, for viewers that show 16-bit grey as black), ``NAME_mask.png`` (0/255,
probability >= ``--threshold``, by default the threshold the model was scored at) and
``NAME_overlay.png`` (the segmentation in green over the photograph), all at the photograph's
original size. A file that cannot be read or segmented is reported on stderr as ``error: FILE: what``
and skipped; the others go on and the exit status is 1 at the end.

With ``--workers N`` (N >= 1), N worker processes read and pre-process the next photographs and write
the outputs of the previous ones while this process runs the network, so the network does not wait on
the disk or on PNG encoding. At most N photographs are being read and N written at any time (plus the
one in the network), so memory stays flat over any number of files. The outputs are the same with any
number of workers: every image goes through the same functions (:func:`prepare_file`,
:func:`finish_file`), only in other processes.
"""

import dataclasses
import glob
import multiprocessing
import signal
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cv2
import numpy as np

from patch2image.data.io import write_png
from patch2image.errors import UserError
from patch2image.inference import Segmenter

IMAGE_SUFFIXES = frozenset(
    ".png .jpg .jpeg .jpe .tif .tiff .bmp .gif .ppm .pgm .pnm .pbm .webp .jp2 .j2k .tga .ico".split()
)
OUTPUTS = ("prob", "mask", "overlay")
OVERLAY_COLOURS = {"vessels": np.array([0, 255, 0], np.float32), "optic_disc": np.array([255, 200, 0], np.float32)}
"""RGB tint of the segmented pixels: green vessels, an amber optic disc."""
OVERLAY_ALPHA = 0.6
DISC_COLUMNS = ("image", "centre_x", "centre_y", "diameter")
"""``optic_disc.csv``: the disc's centroid and its equivalent diameter (of a circle of the same area),
in pixels of the original photograph."""


# --------------------------------------------------------------------------- inputs


def is_image_name(path: Path) -> bool:
    """Whether the name has an image extension (``.ppm.gz`` and other gzipped images included)."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in IMAGE_SUFFIXES


def output_stem(path: Path) -> str:
    """``01_test.tif`` -> ``01_test``; ``im0001.ppm.gz`` -> ``im0001``."""
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in IMAGE_SUFFIXES else name


def _is_own_output(path: Path) -> bool:
    return path.suffix.lower() == ".png" and path.stem.rpartition("_")[2] in OUTPUTS


def expand_inputs(specs: list[str], out_dir: str | Path | None = None) -> tuple[list[Path], list[str]]:
    """Files to segment from paths, folders and glob patterns, in order, without duplicates.

    A file named explicitly is always taken (its content decides whether it is an image). Folders
    (not recursive) and glob patterns give their files with an image extension, except hidden files and,
    inside ``out_dir``, this command's own outputs.

    Returns
    -------
    files : list of Path
    problems : list of str
        One message per input that gave no file.
    """
    out = Path(out_dir).resolve() if out_dir is not None else None
    files, problems, seen = [], [], set()

    def wanted(path: Path) -> bool:
        if path.name.startswith(".") or not path.is_file() or not is_image_name(path):
            return False
        return not (out is not None and path.parent.resolve() == out and _is_own_output(path))

    for spec in specs:
        path = Path(spec)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if wanted(p))
            if not found:
                problems.append(f"{spec}: folder holds no image files")
        elif glob.has_magic(spec):
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True))
            found = [p for p in matches if wanted(p)]
            if not found:
                detail = f"{len(matches)} matches, none an image file" if matches else "matches nothing"
                problems.append(f"{spec}: pattern {detail}")
        else:
            problems.append(f"{spec}: no such file or folder")
            found = []
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                files.append(p)
    return files, problems


def check_stems(files: list[Path]) -> None:
    owners: dict[str, Path] = {}
    for path in files:
        stem = output_stem(path)
        if stem in owners:
            raise UserError(
                f"{owners[stem]} and {path} would both write {stem}_*.png; segment them into different --out folders"
            )
        owners[stem] = path


# --------------------------------------------------------------------------- outputs


def probability_png(prob: np.ndarray, bits: int = 16) -> np.ndarray:
    """Probabilities as PNG grey levels: 16 bits (value / 65535) keep the ranking of faint vessels,
    which 8 bits (value / 255, for viewing) would tie with the background below 1/510."""
    top = 65535 if bits == 16 else 255
    return np.round(np.clip(prob, 0, 1) * top).astype(np.uint16 if bits == 16 else np.uint8)


def overlay(rgb: np.ndarray, mask: np.ndarray, task: str = "vessels") -> np.ndarray:
    """The photograph with the segmented pixels tinted in the task's colour (``OVERLAY_COLOURS``)."""
    # One 256-entry table per channel: no float copy of a possibly 12-megapixel photograph.
    levels = np.arange(256, dtype=np.float32)[None, :]
    colour = OVERLAY_COLOURS[task][:, None]
    tables = np.round((1 - OVERLAY_ALPHA) * levels + OVERLAY_ALPHA * colour).astype(np.uint8)
    result = rgb.copy()
    result[mask] = tables[np.arange(3), rgb[mask]]
    return result


@dataclasses.dataclass(frozen=True)
class Outputs:
    """What ``segment`` writes for each photograph."""

    threshold: float = 0.5
    prob_bits: int = 16  # 16-bit probability maps, or 8-bit for viewing
    task: str = "vessels"  # optic_disc: one region, its overlay in amber, and its centre and size measured
    largest_region: bool = True  # optic disc: keep the largest connected region of the mask


def largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of a binary mask (the optic disc is one region; specks are not)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def disc_measurement(mask: np.ndarray) -> dict:
    """Centroid (x, y) and equivalent diameter of the segmented disc, in pixels; empty values without one."""
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return {"centre_x": "", "centre_y": "", "diameter": ""}
    diameter = 2 * np.sqrt(len(rows) / np.pi)
    return {"centre_x": round(float(cols.mean()), 1), "centre_y": round(float(rows.mean()), 1),
            "diameter": round(float(diameter), 1)}  # fmt: skip


def disc_table(measured: "Measured") -> str:
    """``optic_disc.csv``: one row per photograph (``DISC_COLUMNS``), in input order."""
    lines = [",".join(DISC_COLUMNS)]
    for path, found in measured.items():
        lines.append(",".join(str(v) for v in (path.name, found["centre_x"], found["centre_y"], found["diameter"])))
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, stem: str, rgb: np.ndarray, prob: np.ndarray, outputs: Outputs) -> dict | None:
    """``stem_prob.png``, ``stem_mask.png`` and ``stem_overlay.png`` in ``out_dir``; the disc's measurement."""
    mask = prob >= outputs.threshold
    optic_disc = outputs.task == "optic_disc"
    if optic_disc and outputs.largest_region:
        mask = largest_region(mask)
    write_png(out_dir / f"{stem}_prob.png", probability_png(prob, outputs.prob_bits))
    write_png(out_dir / f"{stem}_mask.png", mask.astype(np.uint8) * 255)
    write_png(out_dir / f"{stem}_overlay.png", overlay(rgb, mask, outputs.task))
    return disc_measurement(mask) if optic_disc else None


# --------------------------------------------------------------------------- the two halves around the network


def prepare_file(path: Path, preparer: Segmenter) -> tuple[np.ndarray, np.ndarray]:
    """Read a photograph: (its RGB, the network's input). ``preparer.model`` is not used."""
    from patch2image.data import read_image

    rgb = read_image(path)
    return rgb, preparer.prepare(rgb)


def finish_file(out_dir: Path, stem: str, rgb: np.ndarray, prob: np.ndarray, outputs: Outputs) -> dict | None:
    """Bring the network's probabilities back to the photograph's size and write the three outputs."""
    return write_outputs(out_dir, stem, rgb, Segmenter.finish(prob, rgb.shape[:2]), outputs)


# --------------------------------------------------------------------------- worker processes
#
# Why a ProcessPoolExecutor rather than torch's DataLoader(num_workers=N): the work to take off the
# network's process lies on both sides of it (read + pre-process before, resize back + PNG encoding
# after), while a DataLoader only feeds the first half; futures also carry each file's exception back
# as that file's error, in order. Processes, not threads: pre-processing and PNG encoding hold the GIL
# for part of their time, and a decoder that crashes takes down a worker, not the command (see
# _Workers). Workers start from a forkserver (spawn where there is none), never by plain
# fork, because forking a process whose OpenMP runtime has started threads can hang the child; the
# forkserver imports patch2image (and torch) once, so a worker starts in milliseconds.


def _start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _init_worker() -> None:
    """One thread per worker: N workers plus the network's threads must share the cores, not each take all."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle; it shuts us down
    cv2.setNumThreads(1)
    import torch

    torch.set_num_threads(1)


def _new_executor(workers: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context(_start_method())
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(["patch2image.segment", "patch2image.data"])
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)


class _Workers:
    """A process pool that replaces itself when a worker dies (a decoder crash, the OOM killer).

    The files in flight at that moment fail with ``BrokenProcessPool`` (there is no telling which one
    killed the worker); the files after them go to a fresh pool.
    """

    def __init__(self, workers: int):
        self.workers = workers
        self.executor = _new_executor(workers)

    def submit(self, fn: Callable, *args) -> Future:
        try:
            return self.executor.submit(fn, *args)
        except BrokenProcessPool:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = _new_executor(self.workers)
            return self.executor.submit(fn, *args)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


Report = Callable[[Path, Exception | None], None]
"""Called once per file when it is done: with None on success, else with what went wrong."""
Measured = dict[Path, dict]
"""Optic disc: each segmented file's measurement (``DISC_COLUMNS``)."""


def segment_files(
    files: list[Path], segmenter: Segmenter, out_dir: Path, outputs: Outputs, report: Report, workers: int = 0
) -> Measured:
    """Segment ``files`` into ``out_dir``, in this process (``workers=0``) or with worker processes.

    Every file is reported through ``report`` in input order; an exception in one file never stops the
    others. Returns the optic disc's measurement of each file segmented (empty for vessels).
    """
    measured: Measured = {}
    if workers <= 0:
        for path in files:
            try:
                rgb, grey = prepare_file(path, segmenter)
                found = finish_file(out_dir, output_stem(path), rgb, segmenter.predict(grey), outputs)
            except Exception as exc:  # one bad file must not stop the others; KeyboardInterrupt still does
                report(path, exc)
            else:
                if found is not None:
                    measured[path] = found
                report(path, None)
        return measured
    _segment_in_workers(files, segmenter, out_dir, outputs, report, min(workers, len(files)), measured)
    return measured


def _segment_in_workers(files, segmenter: Segmenter, out_dir: Path, outputs, report, workers, measured) -> None:
    # The workers need the metadata and the pre-processing, not the network: don't pickle it to them.
    preparer = dataclasses.replace(segmenter, model=None)
    pool = _Workers(workers)
    pending = iter(files)
    reading: deque[tuple[Path, Future]] = deque()
    writing: deque[tuple[Path, Future]] = deque()

    def read_next() -> None:
        path = next(pending, None)
        if path is not None:
            reading.append((path, pool.submit(prepare_file, path, preparer)))

    try:
        for _ in range(workers):
            read_next()
        while reading:
            path, future = reading.popleft()
            read_next()  # before waiting, so a worker reads ahead while the network runs
            try:
                rgb, grey = future.result()
                prob = segmenter.predict(grey)
            except Exception as exc:
                # Queued with the writes, so that files are reported in input order whatever finishes first.
                done = Future()
                done.set_exception(exc)
            else:
                done = pool.submit(finish_file, out_dir, output_stem(path), rgb, prob, outputs)
                del rgb, grey, prob  # only the pending task holds them now, until a worker takes it
            writing.append((path, done))
            while len(writing) > workers:
                _collect(*writing.popleft(), report, measured)
        while writing:
            _collect(*writing.popleft(), report, measured)
    finally:
        pool.shutdown()


def _collect(path: Path, future: Future, report: Report, measured: Measured) -> None:
    try:
        found = future.result()
    except Exception as exc:
        report(path, exc)
    else:
        if found is not None:
            measured[path] = found
        report(path, None)


# --------------------------------------------------------------------------- model


def load_segmentation_model(
    name_or_path: str, backend: str | None, threads: int | None = None, network: str | None = None
) -> tuple[object, dict, str]:
    """(model, metadata, backend) for ``--model`` and ``--backend``.

    ``.onnx`` files run with onnxruntime; weights run with PyTorch, or with onnxruntime after an
    export in memory.
    """
    is_onnx = str(name_or_path).lower().endswith(".onnx")
    backend = backend or ("onnxruntime" if is_onnx else "torch")
    if backend == "torch" and is_onnx:
        raise UserError(f"{name_or_path}: an ONNX model runs only with --backend onnxruntime")
    if is_onnx:
        from patch2image.export import OnnxModel

        model = OnnxModel(name_or_path, threads)
        return model, model.metadata, backend
    from patch2image.weights import load_model

    model, metadata = load_model(name_or_path, network)
    if backend == "onnxruntime":
        from patch2image.export import OnnxModel, onnx_bytes

        return OnnxModel(onnx_bytes(model, metadata), threads), metadata, backend
    return model, metadata, backend


def describe_failure(path: Path, exc: Exception) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, UserError):
        message = f"{type(exc).__name__}: {message}"
    return message if str(path) in message else f"{path}: {message}"
