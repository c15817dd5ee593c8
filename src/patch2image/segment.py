"""``patch2image segment``: photographs in, probability maps, masks and overlays out.

For each input ``DIR/NAME.EXT`` it writes, in ``--out``, ``NAME_prob.png`` (probability x 255, 8-bit
grey), ``NAME_mask.png`` (0/255, probability >= ``--threshold``, by default the threshold the model
was scored at) and ``NAME_overlay.png`` (the segmentation in green over the photograph), all at the
photograph's original size. A file that cannot
be read or segmented is reported on stderr as ``error: FILE: what`` and skipped; the others go on and
the exit status is 1 at the end.

With ``--workers N`` (N >= 1), N worker processes read and pre-process the next photographs and write
the outputs of the previous ones while this process runs the network, so the network does not wait on
the disk or on PNG encoding. At most N photographs are being read and N written at any time (plus the
one in the network), so memory stays flat over any number of files. The outputs are the same with any
number of workers: every image goes through the same functions (:func:`prepare_file`,
:func:`finish_file`), only in other processes.
"""

import argparse
import dataclasses
import glob
import multiprocessing
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from patch2image.errors import UserError
from patch2image.files import atomic_write
from patch2image.inference import DEFAULT_MAX_PIXELS, DEFAULT_OVERLAP, Segmenter

IMAGE_SUFFIXES = frozenset(
    ".png .jpg .jpeg .jpe .tif .tiff .bmp .gif .ppm .pgm .pnm .pbm .webp .jp2 .j2k .tga .ico".split()
)
OUTPUTS = ("prob", "mask", "overlay")
OVERLAY_COLOUR = np.array([0, 255, 0], np.float32)  # RGB
OVERLAY_ALPHA = 0.6


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


def _check_stems(files: list[Path]) -> None:
    owners: dict[str, Path] = {}
    for path in files:
        stem = output_stem(path)
        if stem in owners:
            raise UserError(
                f"{owners[stem]} and {path} would both write {stem}_*.png; segment them into different --out folders"
            )
        owners[stem] = path


# --------------------------------------------------------------------------- outputs


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a grey (H, W) or RGB (H, W, 3) uint8 image as PNG, atomically."""
    if image.ndim == 3:
        image = image[..., ::-1]  # OpenCV writes BGR
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_write(path) as tmp:
        Path(tmp).write_bytes(data.tobytes())


def overlay(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The photograph with the segmented pixels tinted in ``OVERLAY_COLOUR``."""
    # One 256-entry table per channel: no float copy of a possibly 12-megapixel photograph.
    levels = np.arange(256, dtype=np.float32)[None, :]
    tables = np.round((1 - OVERLAY_ALPHA) * levels + OVERLAY_ALPHA * OVERLAY_COLOUR[:, None]).astype(np.uint8)
    result = rgb.copy()
    result[mask] = tables[np.arange(3), rgb[mask]]
    return result


def write_outputs(out_dir: Path, stem: str, rgb: np.ndarray, prob: np.ndarray, threshold: float) -> None:
    """``stem_prob.png``, ``stem_mask.png`` and ``stem_overlay.png`` in ``out_dir``."""
    mask = prob >= threshold
    write_png(out_dir / f"{stem}_prob.png", np.round(np.clip(prob, 0, 1) * 255).astype(np.uint8))
    write_png(out_dir / f"{stem}_mask.png", mask.astype(np.uint8) * 255)
    write_png(out_dir / f"{stem}_overlay.png", overlay(rgb, mask))


# --------------------------------------------------------------------------- the two halves around the network


def prepare_file(path: Path, preparer: Segmenter) -> tuple[np.ndarray, np.ndarray]:
    """Read a photograph: (its RGB, the network's input). ``preparer.model`` is not used."""
    from patch2image.data import read_image

    rgb = read_image(path)
    return rgb, preparer.prepare(rgb)


def finish_file(out_dir: Path, stem: str, rgb: np.ndarray, prob: np.ndarray, threshold: float) -> None:
    """Bring the network's probabilities back to the photograph's size and write the three outputs."""
    write_outputs(out_dir, stem, rgb, Segmenter.finish(prob, rgb.shape[:2]), threshold)


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


def segment_files(
    files: list[Path], segmenter: Segmenter, out_dir: Path, threshold: float, report: Report, workers: int = 0
) -> None:
    """Segment ``files`` into ``out_dir``, in this process (``workers=0``) or with worker processes.

    Every file is reported through ``report`` in input order; an exception in one file never stops the others.
    """
    if workers <= 0:
        for path in files:
            try:
                rgb, grey = prepare_file(path, segmenter)
                finish_file(out_dir, output_stem(path), rgb, segmenter.predict(grey), threshold)
            except Exception as exc:  # one bad file must not stop the others; KeyboardInterrupt still does
                report(path, exc)
            else:
                report(path, None)
        return
    _segment_in_workers(files, segmenter, out_dir, threshold, report, min(workers, len(files)))


def _segment_in_workers(
    files: list[Path], segmenter: Segmenter, out_dir: Path, threshold: float, report: Report, workers: int
) -> None:
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
                done = pool.submit(finish_file, out_dir, output_stem(path), rgb, prob, threshold)
                del rgb, grey, prob  # only the pending task holds them now, until a worker takes it
            writing.append((path, done))
            while len(writing) > workers:
                _collect(*writing.popleft(), report)
        while writing:
            _collect(*writing.popleft(), report)
    finally:
        pool.shutdown()


def _collect(path: Path, future: Future, report: Report) -> None:
    try:
        future.result()
    except Exception as exc:
        report(path, exc)
    else:
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


# --------------------------------------------------------------------------- command


def add_segment_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``patch2image segment``; sets ``run`` to :func:`cmd_segment`."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument(
        "--model", required=True, metavar="NAME_OR_WEIGHTS", help="a shipped model, a .safetensors or a .onnx file"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for NAME_{prob,mask,overlay}.png")
    parser.add_argument(
        "--network",
        metavar="MODULE:CLASS",
        help="a user network module:Class the weights were trained with (imported only when named here)",
    )
    parser.add_argument(
        "--mode", choices=["image", "patch"], default="image",
        help="image: whole image (tiles if large); patch: the paper's patch-level segmentation (slow)",
    )  # fmt: skip
    parser.add_argument("--stride", type=int, default=2, help="patch mode: stride between patches (default 2)")
    parser.add_argument(
        "--threshold", type=float, help="mask threshold on the probability (default: the model's, else 0.5)"
    )
    parser.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    parser.add_argument(
        "--backend", choices=["torch", "onnxruntime"], default=None,
        help="default: onnxruntime for .onnx models, torch otherwise",
    )  # fmt: skip
    parser.add_argument(
        "--max-megapixels", type=float, default=DEFAULT_MAX_PIXELS / 1e6,
        help=f"larger images (at the model's scale) go in tiles (default {DEFAULT_MAX_PIXELS / 1e6:g})",
    )  # fmt: skip
    parser.add_argument("--tile", type=int, default=None, help="largest tile side in pixels (default: from the budget)")
    parser.add_argument(
        "--overlap", type=int, default=DEFAULT_OVERLAP, help=f"tile overlap (default {DEFAULT_OVERLAP})"
    )
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="torch backend: bf16 autocast")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the network (default: all)")
    parser.add_argument(
        "--workers", type=int, default=0, metavar="N",
        help="processes that read and pre-process ahead and write the outputs, while the network runs here "
        "(default 0: everything in this process)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=cmd_segment)


def _check_arguments(args: argparse.Namespace) -> None:
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise UserError(f"--threshold {args.threshold}: must be between 0 and 1")
    if args.stride < 1:
        raise UserError(f"--stride {args.stride}: must be at least 1")
    if args.max_megapixels <= 0:
        raise UserError(f"--max-megapixels {args.max_megapixels}: must be positive")
    if args.tile is not None and args.tile < 8:
        raise UserError(f"--tile {args.tile}: must be at least 8")
    if args.overlap < 0:
        raise UserError(f"--overlap {args.overlap}: must be at least 0")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads {args.threads}: must be at least 1")
    if args.workers < 0:
        raise UserError(f"--workers {args.workers}: must be at least 0")


def cmd_segment(args: argparse.Namespace) -> int:
    """Segment every input; 0 when all succeeded, 1 when any input failed."""
    _check_arguments(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    files, problems = expand_inputs(args.inputs, args.out)
    _check_stems(files)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not files:
        return 1
    model, metadata, backend = load_segmentation_model(args.model, args.backend, args.threads, args.network)
    patch_size = int(metadata.get("patch_size") or 32)
    if args.mode == "patch" and args.stride > patch_size:
        raise UserError(f"--stride {args.stride}: must not exceed the patch size ({patch_size})")
    segmenter = Segmenter(
        model,
        metadata,
        mode=args.mode,
        stride=args.stride,
        tta=args.tta,
        tile=args.tile,
        overlap=args.overlap,
        max_pixels=int(args.max_megapixels * 1e6),
        precision=args.precision,
    )
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None

    failed = len(problems)
    started = time.perf_counter()
    bar = tqdm(total=len(files), desc="segment", unit="image", disable=args.quiet or len(files) == 1, file=sys.stderr)

    def report(path: Path, exc: Exception | None) -> None:
        nonlocal failed
        if exc is not None:
            failed += 1
            tqdm.write(f"error: {_describe_failure(path, exc)}", file=sys.stderr)
        bar.update(1)

    with bar:
        threshold = args.threshold if args.threshold is not None else metadata.get("threshold", 0.5)
        segment_files(files, segmenter, out, threshold, report, args.workers)
    done = len(files) - (failed - len(problems))
    seconds = (time.perf_counter() - started) / max(1, len(files))
    print(
        f"segmented {done} of {len(files)} images into {out} ({backend}, {args.mode} mode, {seconds:.2f} s per image)"
    )
    return 1 if failed else 0


def _describe_failure(path: Path, exc: Exception) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, UserError):
        message = f"{type(exc).__name__}: {message}"
    return message if str(path) in message else f"{path}: {message}"
