"""Reading images and binary labels from any common format, with one-line errors for bad files.

Formats: whatever Pillow decodes (PNG, JPEG, TIFF, GIF, PPM/PGM, BMP, ...), optionally gzipped
(``.ppm.gz``: the official STARE files). The content decides the format, not the extension.
"""

import gzip
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import (
    Image,
    TiffImagePlugin,  # noqa: F401 - registered now, a TIFF does not make Pillow load its 40 other formats
    UnidentifiedImageError,
)

from patch2image.atomic_files import atomic_write
from patch2image.errors import UserError

MAX_MEGAPIXELS = 200
"""Images whose header claims more pixels than this are refused before any decoding."""

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB.

    Parameters
    ----------
    path : str or Path
        Any format Pillow reads, optionally gzipped. 16-bit data keeps its high byte; grey is
        replicated to three channels; alpha is dropped; palette images are expanded.

    Returns
    -------
    image : ndarray of shape (H, W, 3), dtype uint8

    Raises
    ------
    UserError
        The file is missing, empty, truncated, not an image, or claims more than
        ``MAX_MEGAPIXELS`` megapixels.
    """
    path = Path(path)
    with _open(path) as img:
        if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
            grey = _to_uint8(np.asarray(img), path)
            return np.repeat(grey[..., None], 3, axis=2)
        if img.mode != "RGB":
            img = img.convert("RGB")
        return np.asarray(img, dtype=np.uint8).copy()


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a grey (H, W) uint8 or uint16 image, or an RGB (H, W, 3) uint8 one, as PNG, atomically."""
    if image.ndim == 3:
        image = image[..., ::-1]  # OpenCV writes BGR
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_write(path) as tmp:
        Path(tmp).write_bytes(data.tobytes())


def read_label_values(path: str | Path) -> np.ndarray:
    """The grey values a label or mask file holds, before binarising.

    Palette images give, per pixel, the brightest channel of the pixel's palette colour (so a red
    foreground on black, as in IDRiD's optic-disc TIFFs, is bright), or the palette indices when all
    the indices used have the same colour (a label saved without a palette); colour images give the
    brightest channel; grey images their values (uint8, or uint16 for 16-bit files); 1-bit images 0/1.

    Returns
    -------
    values : ndarray of shape (H, W), dtype uint8 or uint16
    """
    path = Path(path)
    with _open(path) as img:
        if img.mode == "1":
            return np.asarray(img, dtype=np.uint8).copy()
        if img.mode in ("P", "PA"):
            indices = np.asarray(img.convert("P") if img.mode == "PA" else img)
            palette = np.asarray(img.getpalette("RGB") or list(range(256)) * 3, dtype=np.uint8)
            palette = palette.reshape(-1, 3).max(axis=1)
            palette = np.concatenate([palette, np.zeros(256, np.uint8)])[:256]
            used = label_value_set(np.ascontiguousarray(indices, dtype=np.uint8))
            if used.size > 1 and label_value_set(palette[used]).size == 1:
                # Every colour looks the same (a label saved without its palette): the indices are the label.
                return np.asarray(indices, dtype=np.uint8).copy()
            return palette[indices]
        if img.mode in _SIXTEEN_BIT_MODES:
            return np.asarray(img).astype(np.uint16)
        if img.mode in ("I", "F"):
            array = np.asarray(img)
            if array.min() >= 0 and array.max() <= 65535 and np.all(array == np.round(array)):
                return array.astype(np.uint16)
            return _to_uint8(array, path)
        if img.mode in ("L", "LA"):
            return np.asarray(img.convert("L")).copy()
        return np.asarray(img.convert("RGB")).max(axis=2)


def binarise_label(values: np.ndarray, path: str | Path = "label") -> np.ndarray:
    """Binarise label values: foreground is ``> 0`` when the largest value is 1, else ``> 127``.

    16-bit labels whose values exceed 255 use ``> 32767``. A label with more than two distinct values
    (noise, JPEG artefacts) is still binarised by this rule, with a warning naming ``path``.
    """
    present = label_value_set(values)
    top = int(present[-1]) if present.size else 0
    if present.size > 2:
        warnings.warn(
            f"{path}: label has {present.size} distinct values, not 2; binarised by the usual rule", stacklevel=2
        )
    if top <= 1:
        return values > 0
    if top <= 255:
        return values > 127
    return values > 32767


def label_value_set(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of a label array (a histogram for uint8: much faster than ``np.unique``)."""
    if values.dtype == np.uint8 and values.size:
        counts = cv2.calcHist([np.ascontiguousarray(values)], [0], None, [256], [0, 256]).ravel()
        return np.flatnonzero(counts)
    return np.unique(values)


def inspect_image(path: str | Path) -> tuple[int, int]:
    """Check that ``path`` decodes completely and return its (width, height), without keeping the pixels.

    JPEGs are decoded at 1/8 scale: the whole compressed stream is still read, so truncation is
    still caught, at a fraction of the cost.
    """
    opener = _open(Path(path), draft=True)
    with opener:
        return opener.size


def read_mask(path: str | Path) -> np.ndarray:
    """Read a label or field-of-view mask as a boolean array.

    Rule: the file's grey values (see :func:`read_label_values`: palette colours and colour
    channels count by their brightest channel) are binarised with ``> 0`` if the largest value is 1
    (palette indices or values {0, 1}: DRIVE's 2nd_manual GIFs, IDRiD's OD TIFFs, 1-bit PNGs),
    else with ``> 127``. More than two distinct values still binarise by that rule, with a warning.

    Returns
    -------
    mask : ndarray of shape (H, W), dtype bool
    """
    return binarise_label(read_label_values(path), path)


def _to_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    """16-bit or float grey data to uint8: 16-bit keeps its high byte; floats in [0, 1] are scaled."""
    if array.dtype.kind == "f":
        top = float(np.nanmax(array)) if array.size else 0.0
        scale = 255.0 if top <= 1.0 else (255.0 / top if top > 255 else 1.0)
        return np.clip(np.nan_to_num(array) * scale + 0.5, 0, 255).astype(np.uint8)
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise UserError(f"{path}: negative pixel values; not an image this program reads")
    top = int(array.max()) if array.size else 0
    if top <= 255:
        return array.astype(np.uint8)
    if top <= 65535:
        return (array >> 8).astype(np.uint8)
    return (array * 255 // top).astype(np.uint8)


class _open:
    """Context manager: the decoded, checked Pillow image of ``path`` (gzip handled)."""

    def __init__(self, path: Path, draft: bool = False):
        self.path = path
        self.draft = draft
        self.size = (0, 0)
        self.handles = []

    def __enter__(self) -> Image.Image:
        path = self.path
        if not path.exists():
            raise UserError(f"{path}: no such file")
        if not path.is_file():
            raise UserError(f"{path}: not a file")
        if path.stat().st_size == 0:
            raise UserError(f"{path}: empty file (0 bytes)")
        try:
            stream = path.open("rb")
            self.handles.append(stream)
            if stream.read(2) == b"\x1f\x8b":
                stream.seek(0)
                # Pillow reads through the gzip stream, so the header is checked before the data is inflated.
                stream = gzip.GzipFile(fileobj=stream, mode="rb")
                self.handles.append(stream)
            stream.seek(0)
            head = stream.read(64)
            stream.seek(0)
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"{path}: unreadable ({_reason(exc)})") from None
        img = self._identify(stream, head)
        width, height = img.size
        _check_pixels(path, width, height)
        self.size = (width, height)
        if self.draft and img.format == "JPEG":
            img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        try:
            img.load()  # decode everything now: truncated files fail here, not later
        except (OSError, EOFError, SyntaxError, ValueError, zlib.error) as exc:
            raise UserError(f"{path}: truncated or corrupt {img.format or 'image'} file ({_reason(exc)})") from None
        return img

    def _identify(self, stream, head: bytes) -> Image.Image:
        path = self.path
        try:
            try:
                with warnings.catch_warnings():
                    # Our own size limit (MAX_MEGAPIXELS, checked by the caller) replaces Pillow's bomb
                    # warning; its other warnings (corrupt EXIF) end in an error of ours or do not matter.
                    warnings.simplefilter("ignore")
                    img = Image.open(stream)
            except Image.DecompressionBombError:
                stream.seek(0)
                img = _open_without_pillow_limit(stream)
            self.handles.append(img)
            return img
        except UnidentifiedImageError:
            kind = _image_signature(head)
            if kind:  # TIFFs keep their directory at the end: a cut one is not even identified
                raise UserError(f"{path}: truncated or corrupt {kind} file (its header cannot be read)") from None
            raise UserError(f"{path}: not an image that can be read ({_describe(head)})") from None
        except (OSError, EOFError, SyntaxError, ValueError, zlib.error) as exc:
            kind = _image_signature(head)
            if kind:  # the same words as a file cut after its header: the user's remedy is the same
                raise UserError(
                    f"{path}: truncated or corrupt {kind} file (its header cannot be read: {_reason(exc)})"
                ) from None
            raise UserError(f"{path}: corrupt image header ({_describe(head)}; {_reason(exc)})") from None

    def __exit__(self, *exc_info) -> None:
        for handle in reversed(self.handles):
            handle.close()


def _open_without_pillow_limit(stream) -> Image.Image:
    """Open only the header of an image Pillow calls a decompression bomb, so our limit decides.

    Pillow's limit is a module global; it is lifted only for this header read (no pixels are decoded).
    """
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        return Image.open(stream)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise UserError(f"{path}: header gives an empty image ({width}x{height})")
    pixels = width * height
    if pixels > MAX_MEGAPIXELS * 1e6:
        raise UserError(
            f"{path}: header claims {width}x{height} = {pixels / 1e6:,.0f} megapixels, "
            f"about {pixels * 3 / 2**30:,.1f} GiB as RGB; refusing images over {MAX_MEGAPIXELS} megapixels"
        )


_SIGNATURES = [
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"RIFF", "a RIFF container"),
]


def _image_signature(head: bytes) -> str | None:
    """The image format the first bytes announce, if any."""
    for magic, name in _SIGNATURES:
        if head.startswith(magic) and " " not in name:
            return name
    if len(head) > 2 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "PPM/PGM/PBM"
    return None


def _describe(head: bytes) -> str:
    """What the first bytes of a file look like, for an error message."""
    kind = _image_signature(head)
    if kind:
        return f"content starts like {kind} but does not decode"
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return f"content looks like {name}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        snippet = " ".join(text.split())[:30]
        return f"content is text: {snippet!r}"
    return "unrecognised content, first bytes " + head[:8].hex(" ")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:120]
