"""ONNX export of a trained network, and an onnxruntime runner that segments like the torch model.

The exported graph maps a batch of pre-processed images (N, C, H, W), C the channels the metadata's
pre-processing gives (1 for grey, 3 for colour), H and W multiples of the network's size divisor and
otherwise free, to probabilities (N, 1, H, W) (the sigmoid is inside the graph). The weights'
metadata travels in the ONNX model's ``metadata_props`` under the key ``patch2image``, so the
``.onnx`` file alone is enough to segment photographs at the right scale.

Uses the dynamo-based exporter of ``torch.onnx``: with torch 2.13 the TorchScript exporter
(``dynamo=False``) mis-exports Dense's nearest up-sampling under dynamic sizes. torch is imported by
the export alone: running an export already made (the cache, :func:`cached_onnx_bytes`) needs none.
"""

import contextlib
import dataclasses
import importlib.util
import io
import json
import logging
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from patch2image.atomic_files import atomic_write
from patch2image.errors import UserError
from patch2image.networks import NETWORKS, size_divisor
from patch2image.preprocessing import preprocessing_from
from patch2image.weights import METADATA_KEY, WeightsMetadata

if TYPE_CHECKING:
    from torch import nn

OPSET, MIN_OPSET = 18, 17
INPUT_NAME, OUTPUT_NAME = "image", "probability"


def check_opset(opset: int) -> None:
    if opset < MIN_OPSET:
        raise UserError(f"--opset {opset}: patch2image exports opset {MIN_OPSET} or later")


def _with_sigmoid(network: "nn.Module") -> "nn.Module":
    from torch import nn

    class WithSigmoid(nn.Module):
        def __init__(self):
            super().__init__()
            self.network = network

        def forward(self, x):
            return self.network(x).sigmoid()

    return WithSigmoid()


def onnx_bytes(model: "nn.Module", metadata: WeightsMetadata | dict, opset: int = OPSET) -> bytes:
    """The serialised ONNX model of ``model`` (logits network) with a sigmoid and ``metadata`` embedded."""
    import torch

    check_opset(opset)
    wrapped = _with_sigmoid(model).eval()
    divisor = size_divisor(model)
    metadata = dataclasses.replace(WeightsMetadata.coerce(metadata), size_divisor=divisor)
    parts_h = torch.export.Dim("height_parts", min=1)
    parts_w = torch.export.Dim("width_parts", min=1)
    # Multiples of the divisor only: any other size would change the network's output size.
    shapes = {"x": {0: torch.export.Dim("batch"), 2: divisor * parts_h, 3: divisor * parts_w}}
    side = divisor * max(2, -(-64 // divisor))
    example = (torch.rand(2, input_channels(metadata), side, side),)
    was_training = model.training
    model.eval()
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                wrapped,
                example,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=shapes,
                verbose=False,
            )
    finally:
        model.train(was_training)
    proto = program.model_proto
    for value in (*proto.graph.input, *proto.graph.output):
        # The exporter names the sides "4*height_parts"; tools that show the graph read better names.
        for dim, name in zip(value.type.tensor_type.shape.dim, ("batch", None, "height", "width"), strict=True):
            if name and dim.HasField("dim_param"):
                dim.dim_param = name
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata.to_dict())
    return proto.SerializeToString()


def export_onnx(model: "nn.Module", path: str | Path, metadata: WeightsMetadata, opset: int = OPSET) -> float:
    """Write ``model`` as ONNX (probabilities out, dynamic batch, height and width) to ``path`` atomically.

    Parameters
    ----------
    model : torch.nn.Module
        A network returning logits, such as those of ``patch2image.networks``.
    path : str or Path
    metadata : WeightsMetadata
        The weights' metadata, embedded in the model's ``metadata_props``.
    opset : int
        ONNX opset, ``MIN_OPSET`` or later.

    Returns
    -------
    difference : float
        The largest difference between onnxruntime's and PyTorch's probabilities on a random image.
    """
    import torch

    data = onnx_bytes(model, metadata, opset)
    with atomic_write(path) as tmp:
        Path(tmp).write_bytes(data)
    divisor = size_divisor(model)
    x = torch.rand(1, input_channels(metadata), divisor * max(1, 96 // divisor), divisor * max(1, 128 // divisor),
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    with torch.inference_mode():
        expected = torch.sigmoid(model.eval()(x))
    return float(np.abs(OnnxModel(data).probabilities(x.numpy()) - expected.numpy()).max())


def input_channels(metadata: WeightsMetadata | dict) -> int:
    """The channels of the network's input, as the weights' pre-processing makes it."""
    return preprocessing_from(WeightsMetadata.coerce(metadata).preprocessing).channels


def cached_onnx_bytes(load: "Callable[[], nn.Module]", metadata: WeightsMetadata, name: str | None) -> bytes:
    """:func:`onnx_bytes` of the network ``load`` gives, kept in the user's cache folder as ``name``.

    An export takes 4-7 s on 2 cores, longer than segmenting a few images, and the onnxruntime and
    OpenVINO backends need one at every start. ``load`` is called only when the export is not cached,
    so that running a cached one needs no torch. ``name``: :func:`onnx_cache_name` (None: not cached).
    """
    from patch2image.runtime.cache import cached_bytes

    def export() -> bytes:
        return onnx_bytes(load(), metadata)

    return export() if name is None else cached_bytes(name, export)


def onnx_cache_name(metadata: WeightsMetadata, weights: str | Path, network: str | None = None) -> str | None:
    """The export's name in the cache folder; None when the sources cannot be read (then nothing is cached).

    The key covers what the graph depends on: the weights file's bytes, the metadata, the source of the
    network's package (``patch2image.networks``, or a user network's) and of this module, torch's
    version and the opset; a change in any makes a new entry, never a stale hit. Nothing here imports
    torch or the network.
    """
    from patch2image.runtime.auto import package_version
    from patch2image.runtime.cache import digest

    network = network or metadata.network or ""
    try:
        sources = _network_sources(NETWORKS.get(network, network)) + [Path(__file__)]
        parts = [Path(weights).read_bytes(), *(path.read_bytes() for path in sources)]
    except (OSError, ImportError, ValueError):
        return None
    described = json.dumps(WeightsMetadata.coerce(metadata).to_dict(), sort_keys=True)
    parts += [described, package_version("torch"), str(OPSET)]
    return f"onnx/{digest(*parts)}.onnx"


def _network_sources(path: str) -> list[Path]:
    """The source files of the package of the network class ``module:Class`` (its module alone at top level)."""
    module = path.partition(":")[0]
    package = module.rpartition(".")[0]
    spec = importlib.util.find_spec(package or module)
    if spec is None or spec.origin is None:
        raise ImportError(f"no module {package or module}")
    if not package:
        return [Path(spec.origin)]
    return sorted(p for folder in spec.submodule_search_locations or () for p in Path(folder).rglob("*.py"))


@contextlib.contextmanager
def _quiet_exporter():
    # The exporter logs its steps and torchvision's absence; users only need errors.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def build(source, precision: str = "fp32", layout: str = "channels_last") -> "OnnxModel":
    """The backend registry's entry (:data:`patch2image.runtime.backends.BACKENDS`): onnxruntime on the model's ONNX
    (float32 whatever ``precision`` says)."""
    return OnnxModel(source.onnx_source(), source.threads)


class OnnxModel:
    """An exported model run by onnxruntime, usable wherever ``predict_image`` takes a model.

    Parameters
    ----------
    source : str, Path or bytes
        An ``.onnx`` file written by :func:`export_onnx`, or its bytes.
    threads : int, optional
        onnxruntime's intra-op threads; its default (all cores) when None.

    Attributes
    ----------
    metadata : WeightsMetadata
        The weights' metadata embedded at export (the defaults if none).
    size_divisor : int
        What the input sides must be multiples of.
    """

    precision = "fp32"  # onnxruntime's CPU kernels: float32 only

    def __init__(self, source: str | Path | bytes, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        source, name = read_onnx(source)
        try:
            self.session = ort.InferenceSession(source, options, providers=_providers(ort))
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise UserError(f"{name}: not an ONNX model onnxruntime can run ({first_line(exc)})") from None
        custom = self.session.get_modelmeta().custom_metadata_map
        self.metadata = parse_metadata(custom.get(METADATA_KEY), name)
        self.size_divisor = self.metadata.size_divisor
        self.input_name = self.session.get_inputs()[0].name

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 pre-processed images, sides multiples of the divisor -> (N, 1, H, W) probabilities."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def read_onnx(source: str | Path | bytes) -> tuple[bytes, str]:
    """(the model's bytes, a name for messages) of an ``.onnx`` file or of bytes already read."""
    if isinstance(source, bytes):
        return source, "ONNX model"
    path = Path(source)
    if not path.is_file():
        raise UserError(f"{path}: no such ONNX file")
    data = path.read_bytes()
    if not data:
        raise UserError(f"{path}: empty file (0 bytes), not an ONNX model")
    return data, str(path)


def parse_metadata(text: str | None, name: str) -> WeightsMetadata:
    """The weights' metadata from the JSON stored under ``metadata_props[METADATA_KEY]`` (defaults if none)."""
    try:
        return WeightsMetadata.from_dict(json.loads(text or "{}"), name)
    except json.JSONDecodeError:
        raise UserError(f"{name}: metadata {METADATA_KEY!r} is not valid JSON") from None
    except RecursionError:
        raise UserError(f"{name}: metadata {METADATA_KEY!r} is nested too deeply to read") from None


def onnx_metadata(data: bytes, name: str = "ONNX model") -> WeightsMetadata:
    """The weights' metadata embedded in serialised ONNX ``data``, for runners that do not expose it."""
    import onnx

    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and onnx's own errors
        raise UserError(f"{name}: not an ONNX model ({first_line(exc)})") from None
    return parse_metadata(next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), None), name)


def _providers(ort) -> list[str]:
    available = ort.get_available_providers()
    preferred = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return preferred or available


def first_line(exc: BaseException) -> str:
    """The gist of an exception's message on one line, at most 200 characters: runtimes' errors run to pages,
    and OpenVINO's open with lines that only say where in its sources it failed."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = [line for line in lines if not re.search(r"\.(cpp|cc|h|hpp):\d+|^Check '|https?://", line)] or lines
    return (" ".join(said) if said else type(exc).__name__)[:200]
