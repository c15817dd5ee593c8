"""``patch2image serve``: a local web page and HTTP API that segment photographs with the shipped models.

The page (``static/``) takes photographs by drag and drop or a file picker, sends each to
``POST /api/segment`` and shows the photograph beside the segmentation. The threshold slider works in
the browser on the probability map it fetched once (``preview.u16``), so moving it never runs the
network again; the downloads (``prob.png``, ``mask.png``, ``overlay.png``, ``zip``) carry the slider's
threshold as ``?threshold=`` and the server re-thresholds its cached probability map, at the
photograph's original size, exactly as ``patch2image segment`` would (``probability >= threshold``).

Files: everything is written under one folder made by :func:`tempfile.mkdtemp` (uploads, cached
arrays, rendered PNGs, ZIPs), removed when the server stops. Each result lives in a sub-folder named
by a random token; user input (file names, ids) never becomes a path: ids are looked up in a dict,
file names are only shown and put, sanitised, into download names.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import math
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from patch2image.data import field_of_view_mask, read_image
from patch2image.data.io import write_png
from patch2image.errors import UserError
from patch2image.fundus_check import check_photograph
from patch2image.inference import Segmenter, working_size
from patch2image.parameters import THRESHOLD
from patch2image.postprocessing import OVERLAY_ALPHA, OVERLAY_COLOURS, disc_measurement, overlay, probability_png
from patch2image.segment import output_stem
from patch2image.serve import folders, guard
from patch2image.serve.guard import is_loopback
from patch2image.weights import (
    WeightsMetadata,
    default_model,
    load_model,
    read_weights,
    resolve_weights,
    shipped_models,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MAX_UPLOAD_BYTES = 50_000_000
"""Largest photograph accepted, in bytes (50 MB)."""
MAX_MEGAPIXELS = 40.0
"""Largest photograph accepted, in megapixels (width x height), checked on the header before decoding."""
MAX_STORED_BYTES = 2_000_000_000
"""Disk the cached results may take; beyond it the oldest results are forgotten (their links then give 404)."""
MAX_JOBS = 2
"""Photographs read and segmented at once; more requests wait their turn."""
PREVIEW_SIDE = 1600
"""Longest side of the photograph and probability map the page draws (downloads are at full size)."""

STATIC = Path(__file__).parent / "static"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
_BODY_SLACK = 64_000  # multipart boundaries and the small form fields around the photograph
_HEAD_KEEP = 16_384  # bytes of the request body kept to name the file when it is refused as too large
KINDS = {
    "photo.png": "image/png",
    "prob.png": "image/png",
    "mask.png": "image/png",
    "overlay.png": "image/png",
    "preview.png": "image/png",
    "preview.u16": "application/octet-stream",
    "optic_disc.json": "application/json",
    "zip": "application/zip",
}


class _TooLarge(Exception):
    pass


# --------------------------------------------------------------------------- models


@dataclass
class ModelEntry:
    name: str
    source: str  # a shipped model's name or a weights path given by whoever started the server
    metadata: WeightsMetadata
    segmenter: Segmenter | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # one forward pass at a time per model

    @property
    def threshold(self) -> float:
        """The threshold the model was scored at (the CLI's default), else 0.5."""
        return round(float(self.metadata.threshold), 4)

    def describe(self) -> dict:
        metrics = self.metadata.metrics.get("whole") or {}
        return {
            "name": self.name,
            "task": self.metadata.task,
            "dataset": self.metadata.dataset or "",
            "network": self.metadata.network or "",
            "threshold": self.threshold,
            "metrics": {k: metrics[k] for k in ("auc", "dice") if k in metrics},
        }


class ModelCache:
    """The models the server offers, each loaded once, on first use."""

    def __init__(self, models: Sequence[str] | None = None):
        if models is None:
            found = shipped_models()
            entries = [ModelEntry(name, name, metadata) for name, metadata in found]
        else:
            entries = []
            for spec in models:
                path = resolve_weights(spec)  # a shipped model's name, else a path
                _, metadata = read_weights(path)
                name = path.stem if path == Path(spec) else spec
                entries.append(ModelEntry(name, str(spec), metadata))
        names = [e.name for e in entries]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UserError(f"model {duplicates[0]}: named twice; give the weights files different names")
        self.entries = {e.name: e for e in entries}
        self.explicit = models is not None
        self._load_lock = threading.Lock()

    def describe(self) -> list[dict]:
        return [e.describe() for e in self.entries.values()]

    def default(self) -> str | None:
        """The first model named when the models were chosen, else the first of ``DEFAULT_MODELS`` shipped."""
        first = next(iter(self.entries), None)
        return first if self.explicit else (default_model() or first)

    def get(self, name: str, filename: str) -> ModelEntry:
        entry = self.entries.get(name)
        if entry is None:
            offered = ", ".join(self.entries) or "none"
            raise UserError(f"{filename}: model {name!r} is not offered by this server (models: {offered})")
        with self._load_lock:
            if entry.segmenter is None:
                model, metadata = load_model(entry.source)
                entry.segmenter = Segmenter(model, metadata)
        return entry


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    token: str
    folder: Path
    filename: str  # as shown: the upload's base name, sanitised
    stem: str  # for download names: ASCII letters, digits, ".", "_", "-"
    width: int
    height: int
    model: str
    task: str  # "vessels" or "optic_disc", as the weights metadata names it
    threshold: float
    seconds: float
    warning: str | None = None  # when the photograph does not look like a fundus photograph
    optic_disc: dict | None = None  # centre and diameter at ``threshold``, as segment's optic_disc.csv has them
    nbytes: int = 0
    deleted: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> dict:
        base = f"/api/results/{self.token}"
        return {
            "id": self.token,
            "name": self.filename,
            "width": self.width,
            "height": self.height,
            "model": self.model,
            "task": self.task,
            "threshold": self.threshold,
            "seconds": round(self.seconds, 3),
            "looks_like_fundus": self.warning is None,
            "warning": self.warning,
            "optic_disc": self.optic_disc,
            "urls": {
                "prob": f"{base}/prob.png",
                "mask": f"{base}/mask.png",
                "overlay": f"{base}/overlay.png",
                "zip": f"{base}/zip",
                "photo": f"{base}/photo.png",
                "preview": f"{base}/preview.png",
                "preview_prob": f"{base}/preview.u16",
                **({"optic_disc": f"{base}/optic_disc.json"} if self.task == "optic_disc" else {}),
            },
        }


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def display_name(name: str | None) -> str:
    """The base name of an uploaded file, as shown in messages: no folders, no control characters."""
    base = PurePosixPath(str(name or "").replace("\\", "/")).name
    base = "".join(c for c in base if c.isprintable()).strip()
    return base[:200] or "upload"


def safe_stem(name: str) -> str:
    """A file-name stem made of ASCII letters, digits, '.', '_' and '-' only (for download names)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", output_stem(Path(name))).strip("._") or "photograph"
    return stem[:100]


def parse_threshold(value: object, filename: str) -> float:
    """A threshold from a form field or a query: a number in [0, 1], rounded to 4 decimal places."""
    try:
        threshold = float(str(value).strip())
    except ValueError:
        threshold = math.nan
    if threshold not in THRESHOLD:  # NaN fails too
        raise UserError(f"{filename}: threshold {str(value)[:40]!r}: must be a number {THRESHOLD}")
    return round(threshold, 4)


class ServeState:
    """The server's models, its temporary folder and the results in it."""

    def __init__(
        self,
        models: Sequence[str] | None = None,
        *,
        default_model: str | None = None,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        max_megapixels: float = MAX_MEGAPIXELS,
        max_stored_bytes: int = MAX_STORED_BYTES,
        max_jobs: int = MAX_JOBS,
        log: Callable[[str], None] | None = None,
    ):
        self.models = ModelCache(models)
        if not self.models.entries:
            raise UserError("no models to serve: this installation ships none; train one with `patch2image train`")
        if default_model is not None and default_model not in self.models.entries:
            raise UserError(f"model {default_model!r}: not among the served models ({', '.join(self.models.entries)})")
        self.default_model = default_model or self.models.default()
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_megapixels = float(max_megapixels)
        self.max_stored_bytes = int(max_stored_bytes)
        self.jobs = threading.BoundedSemaphore(max(1, max_jobs))
        self.log = log or (lambda line: None)
        self.root = folders.make_root()
        self.results: OrderedDict[str, Result] = OrderedDict()
        self.stored_bytes = 0
        self.zip_bytes = 0  # of the ZIPs being built or sent, counted against max_stored_bytes too
        self._lock = threading.Lock()
        self._closed = False
        atexit.register(self.close)

    # ----------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Forget every result and remove the temporary folder (idempotent)."""
        with self._lock:
            self._closed = True
            self.results.clear()
        shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.close)

    # ----------------------------------------------------------------- segmenting

    def segment(self, filename: str, data: bytes, model: str | None, threshold: float | None) -> Result:
        """Segment one uploaded photograph; a bad one raises a one-line ``UserError`` naming ``filename``."""
        if len(data) > self.max_upload_bytes:
            raise _TooLarge(self.too_large_message(filename, len(data)))
        entry = self.models.get(model or self.default_model, filename)
        if threshold is None:
            threshold = entry.threshold
        token = secrets.token_urlsafe(16)
        folder = self.root / token
        with self.jobs:
            started = time.perf_counter()
            folder.mkdir()
            upload = folder / "upload"
            try:
                upload.write_bytes(data)
                self._check_pixels(filename, data)
                rgb = self._read(upload, filename)
                segmenter = entry.segmenter
                fov = field_of_view_mask(rgb)  # once, for the working scale and for clearing outside the eye
                self._check_working_size(filename, rgb, segmenter, fov)
                warning = check_photograph(rgb, fov).warning
                network_input = segmenter.prepare(rgb, fov)
                with entry.lock:
                    raw = segmenter.predict(network_input)
                prob = segmenter.finish(raw, fov)
                seconds = time.perf_counter() - started
                upload.unlink()
                np.save(folder / "prob.npy", prob)
                np.save(folder / "rgb.npy", rgb)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        height, width = prob.shape
        result = Result(
            token, folder, filename, safe_stem(filename), width, height, entry.name,
            entry.metadata.task, threshold, seconds, warning, self._measure_disc(entry.name, prob, threshold),
        )  # fmt: skip
        if warning:
            self.log(f"warning: {filename}: {warning}")
        self._add(result)
        return result

    def too_large_message(self, filename: str, size: int | None) -> str:
        """The one line that refuses an upload of ``size`` bytes (None: unknown) as over the limit."""
        limit = f"this server's limit of {self.max_upload_bytes / 1e6:g} MB"
        if size is None:
            return f"{filename}: upload is over {limit}"
        return f"{filename}: {size / 1e6:.1f} MB is over {limit}"

    def _check_pixels(self, filename: str, data: bytes) -> None:
        """Refuse a photograph whose header claims too many pixels, before decoding it."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as img:
                    width, height = img.size
        except Image.DecompressionBombError as exc:  # Pillow's own limit, far above ours
            match = re.search(r"\((\d+) pixels\)", str(exc))
            self._check_size(filename, int(match[1]) if match else math.inf)
            return
        except Exception:  # not an image Pillow identifies on its own (gzip, or bad): read_image says why
            return
        self._check_size(filename, width * height, f"{width}x{height} = ")

    def _check_size(self, filename: str, pixels: float, size: str = "") -> None:
        if pixels > self.max_megapixels * 1e6:
            raise _TooLarge(
                f"{filename}: {size}{pixels / 1e6:.3g} megapixels; "
                f"this server accepts at most {self.max_megapixels:g} megapixels"
            )

    def _check_working_size(self, filename: str, rgb: np.ndarray, segmenter: Segmenter, fov: np.ndarray) -> None:
        """Refuse a photograph the scale rule would enlarge past the pixel limit (an image that is no fundus
        photograph can seem to hold a tiny field of view), rather than keep the server busy for minutes."""
        (height, width), rule = working_size(rgb, segmenter.metadata, segmenter.size, fov)
        if width * height > self.max_megapixels * 1e6:
            raise _TooLarge(
                f"{filename}: the model would segment it at {width}x{height} = {width * height / 1e6:.3g} megapixels "
                f"({rule}); this server accepts at most {self.max_megapixels:g} megapixels; "
                "is it a fundus photograph?"
            )

    def _read(self, upload: Path, filename: str) -> np.ndarray:
        try:
            rgb = read_image(upload)
        except UserError as exc:
            raise UserError(str(exc).replace(str(upload), filename)) from None
        height, width = rgb.shape[:2]
        self._check_size(filename, width * height, f"{width}x{height} = ")  # gzipped files are checked only here
        return rgb

    def _add(self, result: Result) -> None:
        result.nbytes = _folder_bytes(result.folder)
        victims = []
        with self._lock:
            if self._closed:
                shutil.rmtree(result.folder, ignore_errors=True)
                raise UserError(f"{result.filename}: the server is stopping")
            self.results[result.token] = result
            self.stored_bytes += result.nbytes
            while self.stored_bytes > self.max_stored_bytes and len(self.results) > 1:
                _, victim = self.results.popitem(last=False)
                self.stored_bytes -= victim.nbytes
                victims.append(victim)
        for victim in victims:
            with victim.lock:
                victim.deleted = True
                shutil.rmtree(victim.folder, ignore_errors=True)

    # ----------------------------------------------------------------- outputs

    def result(self, token: str) -> Result | None:
        if not _TOKEN.fullmatch(token):
            return None
        with self._lock:
            return self.results.get(token)

    def render(self, result: Result, kind: str, threshold: float | None) -> bytes | None:
        """The bytes of one output of ``result`` (None if it has been forgotten meanwhile)."""
        threshold = result.threshold if threshold is None else threshold
        added = 0
        with result.lock:
            if result.deleted:
                return None
            if kind == "preview.u16":
                return self._preview_probabilities(result)
            path = result.folder / self._file_name(kind, threshold)
            if not path.is_file():
                write_png(path, self._image(result, kind, threshold))
                added = path.stat().st_size
            data = path.read_bytes()
        if added:
            with self._lock:
                result.nbytes += added
                if result.token in self.results:
                    self.stored_bytes += added
        return data

    @staticmethod
    def _file_name(kind: str, threshold: float) -> str:
        name = kind.removesuffix(".png")
        if name in ("mask", "overlay"):
            return f"{name}-{round(threshold * 10_000):05d}.png"
        return f"{name}.png"

    def _image(self, result: Result, kind: str, threshold: float) -> np.ndarray:
        folder = result.folder
        if kind == "prob.png":
            return probability_png(np.load(folder / "prob.npy"))
        if kind in ("photo.png", "preview.png"):
            rgb = np.load(folder / "rgb.npy")
            return rgb if kind == "photo.png" else _shrink(rgb, result, cv2.INTER_AREA)
        mask = self.models.entries[result.model].segmenter.mask_of(np.load(folder / "prob.npy"), threshold)
        if kind == "mask.png":
            return mask.astype(np.uint8) * 255
        if kind == "overlay.png":
            return overlay(np.load(folder / "rgb.npy"), mask, result.task)
        raise ValueError(kind)

    def optic_disc(self, result: Result, threshold: float) -> dict | None:
        """The disc's centre and diameter at ``threshold`` (None for a vessel model or a forgotten result)."""
        if threshold == result.threshold:
            return result.optic_disc
        with result.lock:
            if result.deleted:
                return None
            return self._measure_disc(result.model, np.load(result.folder / "prob.npy"), threshold)

    def _measure_disc(self, model: str, prob: np.ndarray, threshold: float) -> dict | None:
        """For an optic disc model, the disc's centre (x, y) and diameter in pixels of the photograph, as
        ``segment`` writes them to ``optic_disc.csv`` (empty values when nothing reaches the threshold)."""
        segmenter = self.models.entries[model].segmenter
        if segmenter.metadata.task != "optic_disc":
            return None
        return disc_measurement(segmenter.mask_of(prob, threshold))

    @staticmethod
    def _preview_probabilities(result: Result) -> bytes:
        prob = _shrink(np.load(result.folder / "prob.npy"), result, cv2.INTER_AREA)
        return probability_png(prob).astype("<u2").tobytes()

    def zip(self, results: list[Result], threshold: float | None) -> tempfile.SpooledTemporaryFile | None:
        """A ZIP of the three outputs (and a small JSON of settings) of each result, in this server's folder."""
        spool = _ZipSpool(self)
        used: set[str] = set()
        with _closed_on_error(spool), zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED) as archive:
            for result in results:
                stem, n = result.stem, 1
                while stem in used:
                    n += 1
                    stem = f"{result.stem}-{n}"
                used.add(stem)
                used_threshold = result.threshold if threshold is None else threshold
                for kind in ("prob.png", "mask.png", "overlay.png"):
                    data = self.render(result, kind, used_threshold)
                    if data is None:
                        spool.close()
                        return None
                    archive.writestr(f"{stem}_{kind.removesuffix('.png')}.png", data)
                    spool.count(len(results))
                info = {
                    "photograph": result.filename, "width": result.width, "height": result.height,
                    "model": result.model, "task": result.task, "threshold": used_threshold,
                    "seconds": round(result.seconds, 3),
                    **({"optic_disc": self.optic_disc(result, used_threshold)} if result.task == "optic_disc" else {}),
                    "prob": "16-bit grey PNG, probability x 65535",
                    "mask": "8-bit PNG, 255 where probability >= threshold",
                    "overlay": "RGB PNG, the mask tinted over the photograph",
                }  # fmt: skip
                archive.writestr(f"{stem}_info.json", json.dumps(info, indent=2), zipfile.ZIP_DEFLATED)
        spool.count(len(results))
        spool.seek(0)
        return spool

    def _count_zip(self, nbytes: int, results: int) -> None:
        with self._lock:
            if nbytes > 0 and self.stored_bytes + self.zip_bytes + nbytes > self.max_stored_bytes:
                raise _TooLarge(
                    f"ZIP of {results} result{'s' * (results != 1)}: over this server's storage limit of "
                    f"{self.max_stored_bytes / 1e6:g} MB with the results it keeps; download fewer at once"
                )
            self.zip_bytes += nbytes


class _ZipSpool(tempfile.SpooledTemporaryFile):
    """A ZIP being built and sent; its bytes count against the server's storage limit until it is closed."""

    def __init__(self, state: ServeState):
        super().__init__(max_size=32_000_000, dir=state.root)
        self.state = state
        self.counted = 0

    def count(self, results: int) -> None:
        size = self.tell()
        self.state._count_zip(size - self.counted, results)
        self.counted = size

    def close(self) -> None:
        self.state._count_zip(-self.counted, 0)
        self.counted = 0
        super().close()


@contextlib.contextmanager
def _closed_on_error(spool):
    try:
        yield
    except BaseException:
        spool.close()
        raise


def preview_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the page's preview: the photograph's, shrunk to at most ``PREVIEW_SIDE`` pixels."""
    scale = PREVIEW_SIDE / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrink(image: np.ndarray, result: Result, interpolation: int) -> np.ndarray:
    size = preview_size(result.width, result.height)
    if size == (result.width, result.height):
        return image
    return cv2.resize(image, size, interpolation=interpolation)


# --------------------------------------------------------------------------- HTTP


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"error": " ".join(str(message).split())}, status_code=status, headers={"Cache-Control": "no-store"}
    )


def _content_disposition(kind: str, filename: str) -> str:
    return f'{"attachment" if kind.endswith("zip") else "inline"}; filename="{filename}"'


class _UploadParser(MultiPartParser):
    """Starlette's multipart parser, holding the photograph in memory (within the upload limit), never in /tmp."""

    def __init__(self, headers, stream, spool_max_size: int):
        super().__init__(headers, stream, max_files=1, max_fields=8, max_part_size=4096)
        self.spool_max_size = spool_max_size


def _filename_in(head: bytes) -> str | None:
    """The file name in the first multipart headers of a request body, to name a refused upload."""
    match = re.search(rb'content-disposition:[^\r\n]*?filename="([^"\r\n]*)"', head, re.IGNORECASE)
    return display_name(match[1].decode("utf-8", "replace")) if match else None


def _state(request: Request) -> ServeState:
    return request.app.state.serve


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


async def models(request: Request) -> Response:
    return JSONResponse(_state(request).models.describe())


async def config(request: Request) -> Response:
    state = _state(request)
    return JSONResponse(
        {
            "models": state.models.describe(),
            "default_model": state.default_model,
            "max_upload_bytes": state.max_upload_bytes,
            "max_megapixels": state.max_megapixels,
            "preview_side": PREVIEW_SIDE,
            "overlay": {
                "colour": [int(c) for c in OVERLAY_COLOURS["vessels"]],
                "colours": {task: [int(c) for c in colour] for task, colour in OVERLAY_COLOURS.items()},
                "alpha": float(OVERLAY_ALPHA),
            },
        }
    )


async def segment(request: Request) -> Response:
    """``POST /api/segment``: the photograph in the form field ``image``; its result's description."""
    state = _state(request)
    if "multipart/form-data" not in request.headers.get("content-type", ""):
        return _error("request: send the photograph as multipart/form-data in the field 'image'", 400)
    head = bytearray()
    # The stream stops at the limit plus the slack, so the spooled file never rolls over to the disk.
    parser = _UploadParser(request.headers, _limited(request, state, head), state.max_upload_bytes + _BODY_SLACK + 1)
    try:
        form = await parser.parse()
    except _TooLarge:
        declared = request.headers.get("content-length")
        declared = int(declared) if declared and declared.isdigit() else None
        message = state.too_large_message(_filename_in(bytes(head)) or "upload", declared)  # the request's size
        state.log(f"error: {message}")
        return _error(message, 413)
    except MultiPartException as exc:
        return _error(f"request: {exc.message}", 400)
    try:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            return _error("request: no photograph in the form field 'image'", 400)
        filename = display_name(upload.filename)
        data = await upload.read()
        try:
            threshold = form.get("threshold")
            threshold = parse_threshold(threshold, filename) if threshold not in (None, "") else None
            model = str(form.get("model") or "") or None
            result = await run_in_threadpool(state.segment, filename, data, model, threshold)
        except _TooLarge as exc:
            state.log(f"error: {exc}")
            return _error(str(exc), 413)
        except UserError as exc:
            state.log(f"error: {exc}")
            return _error(str(exc), 400)
        except Exception as exc:  # a bug or a resource problem: still one line, naming the file
            message = f"{filename}: {type(exc).__name__}: {' '.join(str(exc).split())}"
            state.log(f"error: {message}")
            return _error(message.replace(str(state.root), "<temporary folder>"), 500)
    finally:
        await form.close()
    state.log(f"segmented {result.filename} ({result.width}x{result.height}, {result.model}, {result.seconds:.2f} s)")
    return JSONResponse(result.describe())


async def _limited(request: Request, state: ServeState, head: bytearray):
    """The request body, its first bytes kept in ``head``; :class:`_TooLarge` past the upload limit."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if len(head) < _HEAD_KEEP:
            head.extend(chunk[: _HEAD_KEEP - len(head)])
        if received > state.max_upload_bytes + _BODY_SLACK:
            raise _TooLarge()
        yield chunk


def _threshold_query(request: Request, name: str) -> float | None:
    value = request.query_params.get("threshold")
    return None if value in (None, "") else parse_threshold(value, name)


async def output(request: Request) -> Response:
    """``GET /api/results/{token}/{kind}``: one output of a result, at the query's threshold."""
    state = _state(request)
    result = state.result(request.path_params["token"])
    kind = request.path_params["kind"]
    if kind not in KINDS:
        return _error(f"{kind[:40]!r}: no such output (one of {', '.join(KINDS)})", 404)
    if result is None:
        return _error("no such result (the server forgot it or was restarted); segment the photograph again", 404)
    try:
        threshold = _threshold_query(request, result.filename)
    except UserError as exc:
        return _error(str(exc), 400)
    headers = {"Cache-Control": "private, max-age=3600"}
    if kind == "optic_disc.json":
        return await _optic_disc_response(state, result, threshold, headers)
    if kind == "zip":
        try:
            spool = await run_in_threadpool(state.zip, [result], threshold)
        except _TooLarge as exc:
            return _error(str(exc), 413)
        if spool is None:
            return _error("no such result (the server forgot it); segment the photograph again", 404)
        name = f"{result.stem}_segmentation.zip"
        headers["Content-Disposition"] = _content_disposition(kind, name)
        return StreamingResponse(_chunks(spool), media_type=KINDS[kind], headers=headers)
    data = await run_in_threadpool(state.render, result, kind, threshold)
    if data is None:
        return _error("no such result (the server forgot it); segment the photograph again", 404)
    if kind == "preview.u16":
        width, height = preview_size(result.width, result.height)
        headers["X-Width"], headers["X-Height"] = str(width), str(height)
    else:
        headers["Content-Disposition"] = _content_disposition(kind, f"{result.stem}_{kind}")
    return Response(data, media_type=KINDS[kind], headers=headers)


async def _optic_disc_response(state: ServeState, result: Result, threshold: float | None, headers: dict) -> Response:
    if result.task != "optic_disc":
        return _error(f"{result.filename}: segmented by a vessel model; it has no optic disc", 404)
    at = result.threshold if threshold is None else threshold
    disc = await run_in_threadpool(state.optic_disc, result, at)
    if disc is None:
        return _error("no such result (the server forgot it); segment the photograph again", 404)
    return JSONResponse(disc, headers=headers)


async def zip_all(request: Request) -> Response:
    """``GET /api/zip?ids=ID,ID``: the outputs of several results in one ZIP."""
    state = _state(request)
    tokens = list(dict.fromkeys(t for t in request.query_params.get("ids", "").split(",") if t))[:1000]
    results = [state.result(t) for t in tokens]
    if not tokens:
        return _error("request: no ids given (?ids=ID,ID,...)", 400)
    if any(r is None for r in results):
        return _error("some results are gone (the server forgot them); segment those photographs again", 404)
    try:
        threshold = _threshold_query(request, "request")
    except UserError as exc:
        return _error(str(exc), 400)
    try:
        spool = await run_in_threadpool(state.zip, results, threshold)
    except _TooLarge as exc:
        return _error(str(exc), 413)
    if spool is None:
        return _error("some results are gone (the server forgot them); segment those photographs again", 404)
    headers = {"Content-Disposition": _content_disposition("zip", "segmentations.zip"), "Cache-Control": "no-store"}
    return StreamingResponse(_chunks(spool), media_type="application/zip", headers=headers)


async def http_error(request: Request, exc: HTTPException) -> Response:
    return _error(f"{request.url.path[:80]}: {exc.detail}", exc.status_code)


ROUTES = [
    Route("/", index),
    Route("/api/models", models),
    Route("/api/config", config),
    Route("/api/segment", segment, methods=["POST"]),
    Route("/api/results/{token}/{kind}", output),
    Route("/api/zip", zip_all),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]


def create_app(
    state: ServeState | None = None,
    *,
    allowed_hosts: Sequence[str] | None = None,
    limits: guard.Limits = guard.DEFAULT_LIMITS,
    **options,
) -> Starlette:
    """The ASGI application. ``state`` (or ``ServeState(**options)``) is closed when the app shuts down.

    ``allowed_hosts``: values of the ``Host`` header to accept (without the port), e.g. the loopback names
    when serving on 127.0.0.1 (``guard.allowed_hosts``), so that a web page elsewhere cannot reach the
    server by DNS rebinding. ``limits``: the body's timeout (the others are the HTTP server's, ``guard``).
    """
    state = state or ServeState(**options)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            state.close()

    middleware = [
        Middleware(guard.Guard, hosts=allowed_hosts, limits=limits, log=state.log),
        Middleware(_SecurityHeaders),
    ]
    app = Starlette(
        routes=ROUTES, middleware=middleware, exception_handlers={HTTPException: http_error}, lifespan=lifespan
    )
    app.state.serve = state
    return app


def _chunks(spool, size: int = 1 << 20):
    try:
        while chunk := spool.read(size):
            yield chunk
    finally:
        spool.close()


class _SecurityHeaders:
    """The page may load only from this server: no CDN, no network, no framing by other sites."""

    HEADERS = [
        (b"content-security-policy", b"default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


# --------------------------------------------------------------------------- running


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a busy port or an unknown host is a one-line ``UserError``."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: must be between 0 and 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: unknown address ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = "; choose another with --port" if exc.errno in (98, 48) else ""
        raise UserError(f"{host}:{port}: cannot listen ({exc.strerror or exc}){hint}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def startup_lines(host: str, url: str, state: ServeState) -> list[str]:
    """What ``run_server`` prints on start: the address, a warning when not bound to loopback, the models."""
    lines = [f"patch2image serve: open {url} in a web browser (Ctrl-C stops the server)"]
    if not is_loopback(host):
        lines.append(
            f"warning: listening on {host}, not only on this computer: anyone who can reach it on the network "
            "can upload photographs and see the results; use --host 127.0.0.1 to keep it local"
        )
    lines.append(f"models: {', '.join(state.models.entries)}; results are kept in {state.root} until it stops")
    return lines


def run_server(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    models: Sequence[str] | None = None,
    default_model: str | None = None,
    max_upload_mb: float = MAX_UPLOAD_BYTES / 1e6,
    max_megapixels: float = MAX_MEGAPIXELS,
    threads: int | None = None,
    quiet: bool = False,
) -> int:
    """Serve the page and the API until Ctrl-C (or SIGTERM); return 0.

    Parameters
    ----------
    host, port : where to listen; 127.0.0.1 (this computer only) by default. Port 0 picks a free one.
    models : shipped model names or weights files to offer (default: every shipped model); a weights
        file is offered under its file name without ``.safetensors``.
    default_model : the model the page proposes first (default: the first of ``models``, else
        the package's default model, ``patch2image.weights.DEFAULT_MODELS``).
    max_upload_mb, max_megapixels : the upload limits.
    threads : CPU threads of the network (default: torch's).
    quiet : no line per photograph.
    """
    import uvicorn

    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads {threads}: must be at least 1")
        import torch

        torch.set_num_threads(threads)
    if max_upload_mb <= 0 or max_megapixels <= 0:
        raise UserError("the upload limits must be positive")
    sock = bind(host, port)
    try:
        state = ServeState(
            models,
            default_model=default_model,
            max_upload_bytes=int(max_upload_mb * 1e6),
            max_megapixels=max_megapixels,
            log=None if quiet else _print_line,
        )
    except BaseException:
        sock.close()
        raise
    app = create_app(state, allowed_hosts=guard.allowed_hosts(host))
    for line in startup_lines(host, url_of(sock, host), state):
        print(line, flush=True)
    server = uvicorn.Server(guard.server_config(app))
    # uvicorn stops on SIGTERM as on Ctrl-C, then raises the signal again: let that end here, as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        state.close()
        sock.close()
    print("patch2image serve: stopped; temporary files removed", flush=True)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _print_line(line: str) -> None:
    stream = sys.stderr if line.startswith("error:") else sys.stdout
    print(line, file=stream, flush=True)
