"""The runners a model can segment with: PyTorch, onnxruntime, OpenVINO, or the fastest of them (``auto``).

One function, :func:`load_backend`, turns ``--model``, ``--backend`` and ``--precision`` into a model
that :func:`patch2image.inference.predict_image` takes. Weights files run with PyTorch as they are; for
onnxruntime and OpenVINO they are exported to ONNX once and the export is cached
(:func:`patch2image.runtime.export.cached_onnx_bytes`). ``.onnx`` files run with onnxruntime or OpenVINO.

``auto`` (backend or precision) makes candidates of every backend and precision allowed, and
:class:`patch2image.runtime.auto.AutoModel` keeps the fastest. bfloat16 exists for PyTorch (autocast)
and OpenVINO (its inference precision); onnxruntime runs float32 only.
"""

import functools
from collections.abc import Callable
from pathlib import Path

from patch2image.errors import UserError
from patch2image.runtime.precision import LAYOUTS, PRECISIONS

BACKENDS = ("torch", "onnxruntime", "openvino")
CHOICES = (*BACKENDS, "auto")
PRECISION_CHOICES = ("auto", *PRECISIONS)


def default_backend(name_or_path: str | Path) -> str:
    """The backend when none is named: what the Python API has always used (``auto`` is the commands')."""
    return "onnxruntime" if _is_onnx(name_or_path) else "torch"


def _is_onnx(name_or_path: str | Path) -> bool:
    return str(name_or_path).lower().endswith(".onnx")


BACKEND_LAYOUTS = {"torch": LAYOUTS}
"""Memory layouts ``auto`` tries per backend; the others choose their own."""


def candidate_name(backend: str, precision: str, layout: str = "channels_last") -> str:
    """``openvino``, ``openvino bf16``, ``torch bf16 contiguous``: float32 and channels-last go without saying."""
    parts = [backend, "" if precision == "fp32" else precision, "" if layout == "channels_last" else layout]
    return " ".join(part for part in parts if part)


def load_backend(
    name_or_path: str | Path,
    backend: str | None = None,
    threads: int | None = None,
    network: str | None = None,
    precision: str = "fp32",
    announce: Callable[[str], None] | None = None,
):
    """(model, metadata, backend name) for a shipped model's name, a weights file or an ``.onnx`` file.

    Parameters
    ----------
    backend : {"torch", "onnxruntime", "openvino", "auto"}, optional
        None: :func:`default_backend`. ``auto``: every backend available, the fastest kept.
    threads : int, optional
        onnxruntime's and OpenVINO's threads (PyTorch's are ``torch.set_num_threads``'s).
    network : str, optional
        A user network's ``module:Class`` for weights files (imported only when named).
    precision : {"fp32", "bf16", "auto"}
        OpenVINO compiles for it; PyTorch applies it per call (as ``Segmenter.precision`` when the
        backend is torch alone); onnxruntime runs float32 whatever it is. ``auto``: both, the faster kept.
    announce : callable, optional
        ``auto``: receives the line that reports its choice.

    Returns
    -------
    model : torch.nn.Module, a runner with ``probabilities``, or an ``AutoModel`` when there is a choice
    metadata : WeightsMetadata
    backend : str
    """
    backend = backend or default_backend(name_or_path)
    if backend not in CHOICES:
        raise UserError(f"--backend {backend}: choose one of {', '.join(CHOICES)}")
    if precision not in PRECISION_CHOICES:
        raise UserError(f"--precision {precision}: choose one of {', '.join(PRECISION_CHOICES)}")
    if _is_onnx(name_or_path) and backend == "torch":
        raise UserError(f"{name_or_path}: an ONNX model runs only with --backend onnxruntime, openvino or auto")
    source = _OnnxFile(name_or_path, threads) if _is_onnx(name_or_path) else _Weights(name_or_path, threads, network)
    if backend != "auto" and (precision != "auto" or backend == "onnxruntime"):
        runner = source.build(backend, "fp32" if precision == "auto" else precision, raw=True)
        return runner, getattr(runner, "metadata", None) or source.metadata(), backend
    from patch2image.runtime.auto import AutoModel
    from patch2image.runtime.openvino_model import openvino_available

    backends = [b for b in (BACKENDS if backend == "auto" else (backend,)) if b in source.backends]
    if "openvino" in backends and not openvino_available():
        backends.remove("openvino")
    precisions = PRECISIONS if precision == "auto" else (precision,)
    factories = {
        candidate_name(b, p, m): functools.partial(source.build, b, p, layout=m)
        for b in backends
        for p in precisions
        for m in BACKEND_LAYOUTS.get(b, LAYOUTS[:1])
        if not (b == "onnxruntime" and p == "bf16")
    }
    slow = set() if source.exported() else {n for n in factories if not n.startswith("torch")}
    metadata = source.metadata()
    choosing = "backend auto" if backend == "auto" else f"{backend}, precision auto"
    auto = AutoModel(factories, metadata, precision, threads, announce, slow, choosing, source.name)
    return auto, metadata, backend


class _OnnxFile:
    """An ``.onnx`` file's runners: onnxruntime and OpenVINO, which read its metadata themselves."""

    backends = ("onnxruntime", "openvino")

    def __init__(self, path, threads):
        from patch2image.runtime.export import read_onnx

        self.data, self.name = read_onnx(path)
        self.path = path
        self.threads = threads

    def build(self, backend: str, precision: str, raw: bool = False, layout: str = "channels_last"):
        from patch2image.runtime.export import OnnxModel
        from patch2image.runtime.openvino_model import OpenVinoModel

        if backend == "onnxruntime":  # by path: the runners' messages name the file
            return OnnxModel(self.path, self.threads)
        return OpenVinoModel(self.path, self.threads, precision)

    def metadata(self):
        from patch2image.runtime.export import onnx_metadata

        return onnx_metadata(self.data, self.name)

    def exported(self) -> bool:
        return True


class _Weights:
    """A weights file's runners: PyTorch, and onnxruntime and OpenVINO on its (cached) ONNX export."""

    backends = BACKENDS

    def __init__(self, name_or_path, threads, network):
        from patch2image.weights import load_model, resolve_weights

        self.path = resolve_weights(name_or_path)
        self.name = str(self.path)
        self.model, self._metadata = load_model(self.path, network)
        self.threads = threads

    def build(self, backend: str, precision: str, raw: bool = False, layout: str = "channels_last"):
        """The runner; with ``raw``, PyTorch's is the network itself (the caller applies ``precision``).

        ``layout`` (PyTorch only): ``channels_last`` or ``contiguous``; the latter runs a copy of the
        network, since a module has one layout at a time and ``auto`` may hold both runners.
        """
        from patch2image.inference import TorchProbabilities
        from patch2image.runtime.export import OnnxModel
        from patch2image.runtime.openvino_model import OpenVinoModel

        if backend == "torch":
            if raw:
                return self.model
            import copy

            import torch

            if layout == "contiguous":
                model = copy.deepcopy(self.model).eval().to(memory_format=torch.contiguous_format)
                return TorchProbabilities(model, precision, torch.contiguous_format)
            return TorchProbabilities(self.model.eval().to(memory_format=torch.channels_last), precision)
        if backend == "onnxruntime":
            return OnnxModel(self._onnx(), self.threads)
        return OpenVinoModel(self._onnx(), self.threads, precision)

    @functools.cache  # noqa: B019 - one export per loaded model, which lives as long as the command
    def _onnx(self) -> bytes:
        from patch2image.runtime.export import cached_onnx_bytes

        return cached_onnx_bytes(self.model, self._metadata, self.path)

    def metadata(self):
        return self._metadata

    def exported(self) -> bool:
        """Whether the ONNX export is in the cache folder already (so onnxruntime and OpenVINO start fast)."""
        from patch2image.runtime.cache import is_cached
        from patch2image.runtime.export import onnx_cache_name

        name = onnx_cache_name(self.model, self._metadata, self.path)
        return name is not None and is_cached(name)
