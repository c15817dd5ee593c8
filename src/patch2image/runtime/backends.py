"""The backends a model can segment with, behind one interface: PyTorch, onnxruntime, OpenVINO, or ``auto``.

A backend is one module with ``build(source, precision, layout) -> Runner`` and one line in
:data:`BACKENDS`; a :class:`Runner` is what
:func:`patch2image.inference.predict_image` calls. :func:`load_backend` turns ``--model``,
``--backend`` and ``--precision`` into a runner: weights files run with PyTorch as they are, and with
onnxruntime and OpenVINO through their ONNX export, made once and cached
(:func:`patch2image.runtime.export.cached_onnx_bytes`); ``.onnx`` files run with onnxruntime or OpenVINO.

``auto`` (backend or precision) makes candidates of every backend and precision allowed, and
:class:`patch2image.runtime.auto.AutoModel` keeps the fastest. bfloat16 exists for PyTorch (autocast)
and OpenVINO (its inference precision); onnxruntime runs float32 only.
"""

import functools
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from patch2image.errors import UserError
from patch2image.parameters import COUNT, check
from patch2image.runtime.precision import LAYOUTS, PRECISIONS

if TYPE_CHECKING:
    import numpy as np
    from torch import nn


class Runner(Protocol):
    """What runs a network: pre-processed images in, probabilities out, as NumPy arrays.

    NumPy rather than tensors, so that a run on onnxruntime or OpenVINO never imports PyTorch (a second
    of every start).
    """

    precision: str  # "fp32" or "bf16"
    size_divisor: int  # what the input sides must be multiples of

    def probabilities(self, x: "np.ndarray") -> "np.ndarray":
        """(N, C, H, W) float32 pre-processed images -> (N, 1, H, W) float32 probabilities."""


@dataclass(frozen=True)
class Backend:
    """One way to run a model: the module that builds its :class:`Runner`, and what it can run."""

    module: str  # imported only when the backend is chosen: each pulls a large runtime (start-up time)
    package: str  # the runtime it needs, found (not imported) to tell whether the backend is available
    reads_weights: bool  # runs a weights file's network itself (else an ONNX file or export)
    precisions: tuple[str, ...] = ("fp32",)
    layouts: tuple[str, ...] = LAYOUTS[:1]  # memory layouts ``auto`` tries; the others choose their own

    def build(self, source: "ModelSource", precision: str, layout: str = "channels_last") -> Runner:
        return importlib.import_module(self.module).build(source, precision, layout)

    def available(self) -> bool:
        """Whether its runtime is installed: found, not imported (a package found that then fails to import
        is refused when the backend is built, with a ``UserError``)."""
        return importlib.util.find_spec(self.package) is not None


BACKENDS = {
    "torch": Backend("patch2image.runtime.torch_runner", "torch", True, PRECISIONS, LAYOUTS),
    "onnxruntime": Backend("patch2image.runtime.export", "onnxruntime", reads_weights=False),
    "openvino": Backend("patch2image.runtime.openvino_model", "openvino", reads_weights=False, precisions=PRECISIONS),
}
"""Every backend, in the order ``auto`` tries them."""
CHOICES = (*BACKENDS, "auto")
PRECISION_CHOICES = ("auto", *PRECISIONS)


def _is_onnx(name_or_path: str | Path) -> bool:
    return str(name_or_path).lower().endswith(".onnx")


def candidate_name(backend: str, precision: str, layout: str = "channels_last") -> str:
    """``openvino``, ``openvino bf16``, ``torch bf16 contiguous``: float32 and channels-last go without saying."""
    parts = [backend, "" if precision == "fp32" else precision, "" if layout == "channels_last" else layout]
    return " ".join(part for part in parts if part)


def load_backend(
    name_or_path: str | Path,
    backend: str = "auto",
    threads: int | None = None,
    network: str | None = None,
    precision: str = "fp32",
    announce: Callable[[str], None] | None = None,
):
    """(runner, metadata, backend name) for a shipped model's name, a weights file or an ``.onnx`` file.

    Parameters
    ----------
    backend : {"torch", "onnxruntime", "openvino", "auto"}
        ``auto``: every backend available, the fastest kept.
    threads : int, optional
        Each backend's threads (PyTorch's: ``torch.set_num_threads``, for the whole process).
    network : str, optional
        A user network's ``module:Class`` for weights files (imported only when named).
    precision : {"fp32", "bf16", "auto"}
        What the runner computes in; onnxruntime runs float32 whatever it is. ``auto``: both, the faster kept.
    announce : callable, optional
        ``auto``: receives the line that reports its choice.

    Returns
    -------
    runner : a :class:`Runner`, an ``AutoModel`` when there is a choice
    metadata : WeightsMetadata
    backend : str
    """
    if backend not in CHOICES:
        raise UserError(f"--backend {backend}: choose one of {', '.join(CHOICES)}")
    if precision not in PRECISION_CHOICES:
        raise UserError(f"--precision {precision}: choose one of {', '.join(PRECISION_CHOICES)}")
    check({"threads": COUNT.but_optional()}, {"threads": threads})
    if _is_onnx(name_or_path) and backend == "torch":
        raise UserError(f"{name_or_path}: an ONNX model runs only with --backend onnxruntime, openvino or auto")
    source = ModelSource(name_or_path, threads, network)
    if backend != "auto" and (precision != "auto" or backend == "onnxruntime"):
        runner = BACKENDS[backend].build(source, "fp32" if precision == "auto" else precision)
        return runner, getattr(runner, "metadata", None) or source.metadata, backend
    from patch2image.runtime.auto import AutoModel

    names = [
        name
        for name in (BACKENDS if backend == "auto" else (backend,))
        if (source.has_weights or not BACKENDS[name].reads_weights) and BACKENDS[name].available()
    ]
    precisions = PRECISIONS if precision == "auto" else (precision,)
    factories = {
        candidate_name(name, p, layout): functools.partial(BACKENDS[name].build, source, p, layout)
        for name in names
        for p in precisions
        if p in BACKENDS[name].precisions
        for layout in BACKENDS[name].layouts
    }
    slow = set() if source.exported() else {n for n in factories if not BACKENDS[n.split()[0]].reads_weights}
    choosing = "backend auto" if backend == "auto" else f"{backend}, precision auto"
    auto = AutoModel(factories, source.metadata, precision, threads, announce, slow, choosing, str(source.path))
    return auto, source.metadata, backend


class ModelSource:
    """What a backend builds its runner from: a weights file's network, or ONNX (a file, or a weights file's export).

    ``model`` is the PyTorch network, loaded on first use (None for an ``.onnx`` file); :meth:`onnx` the
    ONNX bytes, exported from the weights once and cached. A run whose backend reads a cached export
    reads only the weights' metadata, and never imports PyTorch.
    """

    def __init__(self, name_or_path: str | Path, threads: int | None = None, network: str | None = None):
        from patch2image.runtime.export import onnx_metadata, read_onnx
        from patch2image.weights import network_to_build, read_metadata, resolve_weights

        self.threads = threads
        self.network = network
        self.has_weights = not _is_onnx(name_or_path)
        if self.has_weights:
            self.path = resolve_weights(name_or_path)
            self.metadata = read_metadata(self.path)
            network_to_build(self.path, self.metadata, network)  # refused before any backend is tried
            if not self.exported():
                self.model  # noqa: B018 - loaded now, so that damaged weights are refused before any backend runs
        else:
            self._onnx_bytes, name = read_onnx(name_or_path)
            self.path, self.metadata = Path(name_or_path), onnx_metadata(self._onnx_bytes, name)

    @functools.cached_property
    def model(self) -> "nn.Module | None":
        if not self.has_weights:
            return None
        from patch2image.weights import load_model

        return load_model(self.path, self.network)[0]

    @functools.cache  # noqa: B019 - one export per loaded model, which lives as long as the command
    def onnx(self) -> bytes:
        if not self.has_weights:
            return self._onnx_bytes
        from patch2image.runtime.export import cached_onnx_bytes

        return cached_onnx_bytes(lambda: self.model, self.metadata, self._cache_name)

    def onnx_source(self) -> "Path | bytes":
        """The ONNX a runner reads: an ``.onnx`` file's path (so that its messages name the file), else the export."""
        return self.onnx() if self.has_weights else self.path

    def exported(self) -> bool:
        """Whether the ONNX is at hand already (so onnxruntime and OpenVINO start fast)."""
        if not self.has_weights:
            return True
        from patch2image.runtime.cache import is_cached

        return self._cache_name is not None and is_cached(self._cache_name)

    @functools.cached_property
    def _cache_name(self) -> str | None:
        from patch2image.runtime.export import onnx_cache_name

        return onnx_cache_name(self.metadata, self.path, self.network)
