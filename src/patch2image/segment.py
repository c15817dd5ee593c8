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
:func:`finish_file`), only in other processes. SIGTERM (``timeout``, a scheduler) starts no new photograph, lets the
workers finish the ones in flight, and exits 143; workers whose main process was killed outright
(SIGKILL) notice within a second and exit.

``segment`` never replaces a file it did not write: ``--out`` keeps the names of its outputs in
``.patch2image-outputs.json`` (:class:`OutputRecord`), a file already there under another name is refused
up front (``--overwrite`` replaces it), and an input is never overwritten. When a folder given as input
is ``--out`` itself, only the files that record names are skipped as earlier outputs.
"""

import contextlib
import ctypes
import dataclasses
import glob
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cv2
import numpy as np

from patch2image.atomic_files import write_text
from patch2image.data import field_of_view_mask, read_image
from patch2image.data.io import write_png
from patch2image.data.pairing import is_image_file, without_image_extension
from patch2image.errors import UserError
from patch2image.fundus_check import check_photograph
from patch2image.inference import Segmenter, working_size
from patch2image.parameters import THRESHOLD, Interval, OneOf, check
from patch2image.postprocessing import disc_measurement, overlay, probability_png

OUTPUTS = ("prob", "mask", "overlay")
_WRITE_THREADS = len(OUTPUTS)  # threads encoding a photograph's PNGs: 1 in worker processes (_init_worker)
DISC_COLUMNS = ("image", "centre_x", "centre_y", "diameter")
"""``optic_disc.csv``: the disc's centroid and its equivalent diameter (of a circle of the same area),
in pixels of the original photograph."""


# --------------------------------------------------------------------------- inputs


def output_stem(path: Path) -> str:
    """``01_test.tif`` -> ``01_test``; ``im0001.ppm.gz`` -> ``im0001``."""
    return without_image_extension(path.name)


def expand_inputs(specs: list[str], out_dir: str | Path | None = None) -> tuple[list[Path], list[str]]:
    """Files to segment from paths, folders and glob patterns, in order, without duplicates.

    A file named explicitly is always taken (its content decides whether it is an image). Folders
    (not recursive) and glob patterns give their files with an image extension, except hidden files and,
    inside ``out_dir``, the files its manifest lists as earlier outputs of this command (no guess from a
    name: a user's ``eye_mask.png`` is an input).

    Returns
    -------
    files : list of Path
    problems : list of str
        One message per input that gave no file.
    """
    out = Path(out_dir).resolve() if out_dir is not None else None
    own = read_manifest(out) if out is not None else set()
    files, problems, seen = [], [], set()

    def wanted(path: Path) -> bool:
        if not path.is_file() or not is_image_file(path):
            return False
        return not (out is not None and path.name in own and path.parent.resolve() == out)

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


# --------------------------------------------------------------------------- what --out holds

MANIFEST = ".patch2image-outputs.json"
"""In ``--out``: the names of the files ``segment`` wrote there, in this run or an earlier one."""


def output_names(path: Path) -> list[str]:
    """The files one input gives: ``NAME_prob.png``, ``NAME_mask.png``, ``NAME_overlay.png``."""
    stem = output_stem(path)
    return [f"{stem}_{kind}.png" for kind in OUTPUTS]


def planned_outputs(files: list[Path], task: str = "vessels", tables: tuple[str, ...] = ()) -> dict[str, Path]:
    """Every file a run writes into ``--out`` (name -> the input it comes from), in input order.

    ``tables``: files of the whole run besides the optic disc's table (``measurements.csv``).
    """
    planned = {name: path for path in files for name in output_names(path)}
    if task == "optic_disc" and files:
        planned["optic_disc.csv"] = files[0]
    for name in tables if files else ():
        planned[name] = files[0]
    return planned


def read_manifest(out_dir: str | Path) -> set[str]:
    """The names ``out_dir``'s manifest lists (none without one)."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return set()
    try:
        names = json.loads(path.read_text())["outputs"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise TypeError("outputs is not a list of names")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{path}: not segment's list of its outputs ({exc}); delete it, and rerun with --overwrite "
            "to replace the earlier outputs"
        ) from None
    return {n for n in names if n and n not in (".", "..") and "/" not in n and "\\" not in n}


def write_manifest(out_dir: str | Path, names: set[str]) -> None:
    record = {"written_by": "patch2image segment", "outputs": sorted(names)}
    write_text(Path(out_dir) / MANIFEST, json.dumps(record, indent=1) + "\n")


def _identity(path: Path) -> tuple | None:
    """What tells a file replaced from the same file left alone (a write renames a new file in)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size


class OutputRecord:
    """The manifest of ``--out`` around one run: check before, claim, then settle after.

    ``check`` refuses (one line) a run that would overwrite one of its inputs, or a file the manifest
    does not list (unless ``overwrite``). ``claim`` adds this run's names before the first write (so a
    run killed outright leaves them claimed); ``settle`` keeps the names of the files this run did
    write, and those of earlier runs still there.
    """

    def __init__(self, out_dir: str | Path, files: list[Path], task: str = "vessels", tables: tuple[str, ...] = ()):
        self.out = Path(out_dir)
        self.files = files
        self.planned = planned_outputs(files, task, tables)
        self.owned = read_manifest(self.out)
        self.before = {name: _identity(self.out / name) for name in self.planned}

    def check(self, overwrite: bool = False) -> None:
        inputs = {os.path.realpath(path) for path in self.files}  # links followed, as a write follows them
        for name, source in self.planned.items():
            target = self.out / name
            if os.path.realpath(target) in inputs:
                raise UserError(
                    f"{target}: is an input, and the outputs of {source} would overwrite it; choose another --out"
                )
        for name in self.planned:
            target = self.out / name
            if os.path.lexists(target) and not (name in self.owned or overwrite):
                raise UserError(
                    f"{target}: exists and was not written by patch2image segment; pass --overwrite to replace it, "
                    "or choose another --out"
                )

    def claim(self) -> None:
        write_manifest(self.out, self.owned | set(self.planned))

    def settle(self) -> None:
        written = {n for n, before in self.before.items() if _identity(self.out / n) not in (None, before)}
        kept = {n for n in self.owned if os.path.lexists(self.out / n)}  # earlier outputs still there
        write_manifest(self.out, kept | written)


# --------------------------------------------------------------------------- outputs


@dataclasses.dataclass(frozen=True)
class Outputs:
    """What ``segment`` writes for each photograph."""

    threshold: float | None = None  # None: the model's
    prob_bits: int = 16  # 16-bit probability maps, or 8-bit for viewing
    task: str = "vessels"  # optic_disc: its overlay in amber, and its centre and size measured

    def __post_init__(self):
        check({"threshold": THRESHOLD.but_optional(), "prob_bits": OneOf((16, 8))}, vars(self))


def disc_table(measured: "Measured") -> str:
    """``optic_disc.csv``: one row per photograph (``DISC_COLUMNS``), in input order."""
    lines = [",".join(DISC_COLUMNS)]
    for path, found in measured.items():
        lines.append(",".join(str(v) for v in (path.name, found["centre_x"], found["centre_y"], found["diameter"])))
    return "\n".join(lines) + "\n"


def write_outputs(
    out_dir: Path, stem: str, rgb: np.ndarray, prob: np.ndarray, mask: np.ndarray, outputs: Outputs, about: dict
):
    """``stem_prob.png``, ``stem_mask.png`` and ``stem_overlay.png`` in ``out_dir``; the disc's measurement.

    ``about`` (:func:`working_scale`) goes into each PNG as a ``patch2image`` text chunk (JSON).
    """
    text = {"patch2image": json.dumps(about)}
    images = {
        "prob": lambda: probability_png(prob, outputs.prob_bits),
        "mask": lambda: mask.astype(np.uint8) * 255,
        "overlay": lambda: overlay(rgb, mask, outputs.task),
    }

    def write(name: str) -> None:
        write_png(out_dir / f"{stem}_{name}.png", images[name](), text)

    # PNG encoding is most of what a large photograph costs after the network, and OpenCV's encoder
    # releases the GIL: the three files are encoded side by side (a worker process, which shares the
    # cores with the network by design, writes them one after another).
    with ThreadPoolExecutor(_WRITE_THREADS) as pool:
        list(pool.map(write, images))
    return disc_measurement(mask) if outputs.task == "optic_disc" else None


def working_scale(rgb: np.ndarray, fov: np.ndarray, segmenter: Segmenter) -> dict:
    """The size a photograph is segmented at and the rule that chose it: printed, and kept in each output."""
    (height, width), rule = working_size(rgb, segmenter.metadata, segmenter.size, fov, segmenter.scale)
    return {
        "photograph": [int(rgb.shape[1]), int(rgb.shape[0])],
        "working_size": [width, height],
        "rule": rule,
        "scale": segmenter.scale,
        "model": segmenter.metadata.model_name(),
    }


# --------------------------------------------------------------------------- the two halves around the network


def prepare_file(path: Path, preparer: Segmenter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a photograph: (its RGB, its field-of-view mask, the network's input). ``preparer.model`` is not used.

    The mask is found once here for both its uses: the working scale and clearing outside the eye.
    """
    rgb = read_image(path)
    fov = field_of_view_mask(rgb)
    return rgb, fov, preparer.prepare(rgb, fov)


def finish_file(
    out_dir: Path, stem: str, rgb: np.ndarray, fov: np.ndarray, prob: np.ndarray, outputs: Outputs, finisher: Segmenter
) -> dict | None:
    """Post-process the network's probabilities (``finisher``'s, whose model is not used); write the three outputs."""
    about = working_scale(rgb, fov, finisher)
    prob = finisher.finish(prob, fov)
    return write_outputs(out_dir, stem, rgb, prob, finisher.mask_of(prob, outputs.threshold), outputs, about)


# --------------------------------------------------------------------------- worker processes
#
# Why a ProcessPoolExecutor rather than torch's DataLoader(num_workers=N): the work to take off the
# network's process lies on both sides of it (read + pre-process before, resize back + PNG encoding
# after), while a DataLoader only feeds the first half; futures also carry each file's exception back
# as that file's error, in order. Processes, not threads: pre-processing and PNG encoding hold the GIL
# for part of their time, and a decoder that crashes takes down a worker, not the command (see
# _Workers). Workers start from a forkserver (spawn where there is none), never by plain
# fork, because forking a process whose OpenMP runtime has started threads can hang the child; the
# forkserver imports patch2image once, so a worker starts in milliseconds.


def _start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _init_worker(main_pid: int | None = None) -> None:
    """One thread per worker: N workers plus the network's threads must share the cores, not each take all.

    A worker also dies with the process that runs the command (``main_pid``), even when that one is
    killed outright (see :func:`_exit_with`).
    """
    global _WRITE_THREADS
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle; it shuts us down
    _exit_with(main_pid)
    cv2.setNumThreads(1)
    _WRITE_THREADS = 1
    if "torch" in sys.modules:  # the workers' steps need no torch; a user's pre-processing might
        sys.modules["torch"].set_num_threads(1)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_SECONDS = 1.0


def _exit_with(main_pid: int | None) -> None:
    """Make this worker exit when its parent or the main process ends, however it ends.

    A worker's queue never reaches end-of-file while the other workers live (each holds both ends of
    the pipes), so without this, workers whose main process was SIGKILLed would wait forever, and keep
    the forkserver and the resource tracker alive with them. On Linux the kernel sends SIGTERM when the
    parent (the forkserver, or the main process under spawn) dies; a watchdog thread also checks the
    parent and the main process every second, for the forkserver outliving the main process and for
    systems without ``prctl``.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    main = (main_pid, _started(main_pid)) if main_pid is not None else None
    if main is not None and main[1] is None and not _alive(main_pid, None):
        os._exit(143)
    threading.Thread(target=_watch, args=(parent, main), name="patch2image-watchdog", daemon=True).start()


def _watch(parent: int, main: tuple[int, int | None] | None) -> None:
    while True:
        if os.getppid() != parent or (main is not None and not _alive(*main)):
            os._exit(143)  # what SIGTERM would give; nothing is waiting for this worker's result any more
        time.sleep(WATCH_SECONDS)


def _started(pid: int) -> int | None:
    """Linux: when ``pid`` started (clock ticks after boot), which tells it from a later process of that number."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, started: int | None) -> bool:
    """Whether process ``pid`` (the one that started at ``started``, where known) is running, not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
        return fields[0] not in ("Z", "X") and (started is None or int(fields[19]) == started)
    except FileNotFoundError:
        return False
    except (OSError, ValueError, IndexError):  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True


def _new_executor(workers: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context(_start_method())
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(["patch2image.segment", "patch2image.data"])
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(os.getpid(),))


class Terminated(SystemExit):
    """SIGTERM arrived while segmenting: the workers are stopped, the exit status is 143 (128 + SIGTERM)."""

    def __init__(self):
        super().__init__(128 + signal.SIGTERM)


_TERMINATION = threading.Event()


@contextlib.contextmanager
def _sigterm_raises_terminated():
    """Turn SIGTERM into :class:`Terminated` while segmenting, so that the workers are stopped first.

    The handler only takes note; :func:`_stop_if_terminated` raises between images, so that the
    exception never unwinds through a network pass in flight (a runtime's threads still at work). Only
    in the main thread, and only where nobody handles SIGTERM already (a server embedding this). A
    second SIGTERM ends the process at once.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def terminated(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _TERMINATION.set()

    _TERMINATION.clear()
    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _TERMINATION.clear()


def _stop_if_terminated() -> None:
    """Raise :class:`Terminated` if SIGTERM arrived: called between images, where nothing is in flight."""
    if _TERMINATION.is_set():
        raise Terminated()


STOP_SECONDS = 20.0
"""On SIGTERM, how long the photographs in flight may take to finish before their workers are killed."""


class _Workers:
    """A process pool that replaces itself when a worker dies (a decoder crash, the OOM killer).

    The files in flight at that moment fail with ``BrokenProcessPool`` (there is no telling which one
    killed the worker); the files after them go to a fresh pool.
    """

    def __init__(self, workers: int):
        self.workers = workers
        self.others = set(multiprocessing.active_children())  # child processes that are not this pool's workers
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

    def terminate(self, out_dir: Path) -> None:
        """Stop: no new file starts, the workers finish the ones in flight (for ``STOP_SECONDS`` at most) and exit.

        Why not kill them at once: a worker killed while it sends a result leaves half a message in the
        pool's result pipe, and the pool's manager thread then waits for the rest forever, so that the
        command never exits (seen under heavy load). A worker still busy after ``STOP_SECONDS`` (a
        decoder stuck on a damaged file) is killed, and the temporary files of its writes removed.
        """
        processes = [p for p in multiprocessing.active_children() if p not in self.others]
        self.executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + STOP_SECONDS
        for process in processes:
            with contextlib.suppress(OSError, ValueError, AssertionError):
                process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            with contextlib.suppress(OSError, ValueError, AssertionError):
                if process.is_alive():
                    process.terminate()
                    process.join(5)
            for tmp in Path(out_dir).glob(f".*.{process.pid}.tmp"):  # atomic_files.atomic_write's temporary names
                tmp.unlink(missing_ok=True)


Report = Callable[[Path, Exception | None], None]
"""Called once per file when it is done: with None on success, else with what went wrong."""
Measured = dict[Path, dict]
"""Optic disc: each segmented file's measurement (``DISC_COLUMNS``)."""


def claim_outputs(
    files: list[Path], out_dir: Path, task: str, overwrite: bool = False, tables: tuple[str, ...] = ()
) -> OutputRecord:
    """``--out`` made ready for ``files``: checked, created, this run's names claimed; nothing written on refusal.

    Refused (one line) when an output would replace an input, or a file ``segment`` did not write
    (unless ``overwrite``; :class:`OutputRecord`). ``tables``: other files the run writes there
    (``measurements.csv``).
    """
    check_stems(files)
    record = OutputRecord(out_dir, files, task, tables)
    record.check(overwrite)  # before anything is written: never an input, never a file segment did not write
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot create the output folder ({exc.strerror or exc})") from None
    record.claim()
    return record


def segment_photographs(
    record: OutputRecord,
    segmenter: Segmenter,
    outputs: Outputs,
    report: Report,
    workers: int = 0,
    warn: Callable[[Path, str], None] | None = None,
    note: Callable[[Path, str], None] | None = None,
    then: Callable[[], None] | None = None,
) -> Path | None:
    """``patch2image segment``: the files of a :func:`claim_outputs` record into its folder; the record settled.

    Each file is reported, warned about and noted as :func:`segment_files` does; ``then`` writes the
    record's other tables after the photographs. Returns the optic disc's table (``optic_disc.csv``),
    None for vessels.
    """
    out_dir = record.out
    try:
        measured = segment_files(record.files, segmenter, out_dir, outputs, report, workers, warn, note)
        if then is not None:
            then()
        if not measured:
            return None
        write_text(out_dir / "optic_disc.csv", disc_table(measured))
        return out_dir / "optic_disc.csv"
    finally:
        with contextlib.suppress(UserError):  # the claim stays: names of files this run may have written
            record.settle()


def segment_files(
    files: list[Path],
    segmenter: Segmenter,
    out_dir: Path,
    outputs: Outputs,
    report: Report,
    workers: int = 0,
    warn: Callable[[Path, str], None] | None = None,
    note: Callable[[Path, str], None] | None = None,
) -> Measured:
    """Segment ``files`` into ``out_dir``, in this process (``workers=0``) or with worker processes.

    Every file is reported through ``report`` in input order; an exception in one file never stops the
    others. ``warn(path, line)`` hears of a photograph that does not look like a fundus photograph, ``note(path,
    line)`` of the size each is segmented at and why.
    Returns the optic disc's measurement of each file segmented (empty for vessels).

    Raises
    ------
    Terminated
        SIGTERM arrived (where the caller leaves SIGTERM to its default): the workers are stopped and no
        temporary file is left behind. A ``SystemExit(143)``.
    """
    check({"workers": Interval(0, integer=True)}, {"workers": workers})
    measured: Measured = {}
    with _sigterm_raises_terminated():
        if workers <= 0:
            for path in files:
                _stop_if_terminated()
                try:
                    rgb, fov, network_input = prepare_file(path, segmenter)
                    _look_at(path, rgb, fov, segmenter, warn, note)
                    prob = segmenter.predict(network_input)
                    found = finish_file(out_dir, output_stem(path), rgb, fov, prob, outputs, segmenter)
                except Exception as exc:  # one bad file must not stop the others; KeyboardInterrupt still does
                    report(path, exc)
                else:
                    if found is not None:
                        measured[path] = found
                    report(path, None)
            return measured
        _segment_in_workers(
            files, segmenter, out_dir, outputs, report, min(workers, len(files)), measured, (warn, note)
        )
    return measured


def _look_at(path: Path, rgb: np.ndarray, fov: np.ndarray, segmenter, warn: Callable | None, note: Callable | None):
    """In the main process, in input order: a photograph that is no fundus photograph; the size it is segmented at."""
    if warn is not None and (warning := check_photograph(rgb, fov).warning):
        warn(path, warning)
    if note is not None:
        about = working_scale(rgb, fov, segmenter)
        note(path, "segmented at {}x{} ({})".format(*about["working_size"], about["rule"]))


def _segment_in_workers(files, segmenter: Segmenter, out_dir, outputs, report, workers, measured, listeners) -> None:
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
            _stop_if_terminated()
            path, future = reading.popleft()
            read_next()  # before waiting, so a worker reads ahead while the network runs
            try:
                rgb, fov, network_input = _result(future)
                _look_at(path, rgb, fov, segmenter, *listeners)
                prob = segmenter.predict(network_input)
            except Exception as exc:
                # Queued with the writes, so that files are reported in input order whatever finishes first.
                done = Future()
                done.set_exception(exc)
            else:
                done = pool.submit(finish_file, out_dir, output_stem(path), rgb, fov, prob, outputs, preparer)
                del rgb, fov, network_input, prob  # only the pending task holds them now, until a worker takes it
            writing.append((path, done))
            while len(writing) > workers:
                _collect(*writing.popleft(), report, measured)
        while writing:
            _stop_if_terminated()
            _collect(*writing.popleft(), report, measured)
    except Terminated:
        pool.terminate(out_dir)
        raise
    finally:
        pool.shutdown()


def _result(future: Future):
    """The future's result, waiting in short steps so that SIGTERM is noticed while a worker is busy."""
    while True:
        try:
            return future.result(timeout=0.1)
        except TimeoutError:
            _stop_if_terminated()


def _collect(path: Path, future: Future, report: Report, measured: Measured) -> None:
    try:
        found = _result(future)
    except Exception as exc:
        report(path, exc)
    else:
        if found is not None:
            measured[path] = found
        report(path, None)


def describe_failure(path: Path, exc: Exception) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, UserError):
        message = f"{type(exc).__name__}: {message}"
    return message if str(path) in message else f"{path}: {message}"
