"""An exported ONNX model run by OpenVINO, usable wherever ``predict_image`` takes a model.

Why a third runner: on x86 processors OpenVINO's CPU plugin fuses each convolution with its ReLU and
picks AVX-512 kernels, and runs the same ONNX graph as onnxruntime 1.5-3x faster than PyTorch's eager
float32 (docs/benchmarks.md, Table 5). It reads the file :func:`patch2image.runtime.export.export_onnx` writes,
metadata included, so nothing else is exported for it.

Precision is explicit: OpenVINO's CPU plugin infers in bfloat16 by default on processors with native
bf16, which would move probabilities by up to 0.1; ``precision="fp32"`` (the default) asks for float32,
within 1e-4 of PyTorch (``tests/test_openvino.py``).
"""

import contextlib
from pathlib import Path

import numpy as np

from patch2image.errors import UserError
from patch2image.runtime.cache import cache_dir
from patch2image.runtime.export import first_line, parse_metadata, read_onnx
from patch2image.weights import METADATA_KEY

HINTS = {"fp32": "f32", "bf16": "bf16"}
"""``precision`` -> OpenVINO's ``INFERENCE_PRECISION_HINT``."""


def build(source, precision: str, layout: str = "channels_last") -> "OpenVinoModel":
    """The backend registry's entry (:data:`patch2image.runtime.backends.BACKENDS`): OpenVINO on the model's ONNX."""
    return OpenVinoModel(source.onnx_source(), source.threads, precision)


def _embedded_metadata(graph, name: str):
    """The weights' metadata that the export stored in the ONNX file, as OpenVINO read it.

    OpenVINO keeps an ONNX file's ``metadata_props`` in the graph's runtime information; reading them
    there spares importing the onnx package, which takes about a second of every start.
    """
    key = ["framework", METADATA_KEY]
    return parse_metadata(graph.get_rt_info(key).astype(str) if graph.has_rt_info(key) else None, name)


class OpenVinoModel:
    """An ONNX model compiled by OpenVINO for the CPU, with dynamic batch, height and width.

    Parameters
    ----------
    source : str, Path or bytes
        An ``.onnx`` file written by :func:`patch2image.runtime.export.export_onnx`, or its bytes.
    threads : int, optional
        OpenVINO's inference threads; its default (all cores) when None.
    precision : {"fp32", "bf16"}
        The inference precision; bf16 is faster on processors with native bfloat16 and less exact.

    Attributes
    ----------
    metadata : WeightsMetadata
        The weights' metadata embedded at export (the defaults if none).
    size_divisor : int
        What the input sides must be multiples of.
    """

    def __init__(self, source: str | Path | bytes, threads: int | None = None, precision: str = "fp32"):
        if precision not in HINTS:
            raise ValueError(f"precision must be one of {', '.join(HINTS)}, got {precision!r}")
        try:
            import openvino as ov
        except ImportError:
            raise UserError("--backend openvino: the package openvino is not installed") from None
        data, name = read_onnx(source)
        self.precision = precision
        config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        # OpenVINO keeps the compiled graph there and reloads it at the next start instead of compiling again;
        # a folder it cannot create costs that time only (it raises at once, and a damaged entry is recompiled).
        with contextlib.suppress(RuntimeError):
            core.set_property({"CACHE_DIR": str(cache_dir() / "openvino")})
        try:
            graph = core.read_model(data, b"")
            # One dynamic-shape compilation serves every size: measured as fast as a static one per shape.
            compiled = core.compile_model(graph, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError with pages of detail for bad graphs
            raise UserError(f"{name}: not an ONNX model OpenVINO can run ({first_line(exc)})") from None
        self.metadata = _embedded_metadata(graph, name)
        self.size_divisor = self.metadata.size_divisor
        self._request = compiled.create_infer_request()

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 pre-processed images, sides multiples of the divisor -> (N, 1, H, W) probabilities."""
        # share_outputs=False (the default) copies the result out of the request's buffer, reused next call.
        return self._request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})[0]
