"""ONNX export of a trained network, and an onnxruntime runner that segments like the torch model.

The exported graph maps a batch of pre-processed images (N, C, H, W), C the channels the metadata's
pre-processing gives (1 for grey, 3 for colour), H and W multiples of the network's size divisor and
otherwise free, to probabilities (N, 1, H, W) (the sigmoid is inside the graph). The weights'
metadata travels in the ONNX model's ``metadata_props`` under the key ``patch2image``, so the
``.onnx`` file alone is enough to segment photographs at the right scale.

Uses the dynamo-based exporter of ``torch.onnx``: with torch 2.13 the TorchScript exporter
(``dynamo=False``) mis-exports Dense's nearest up-sampling under dynamic sizes.
"""

import contextlib
import dataclasses
import io
import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from patch2image.atomic_files import atomic_write
from patch2image.errors import UserError
from patch2image.networks import size_divisor
from patch2image.preprocessing import preprocessing_from
from patch2image.weights import METADATA_KEY, WeightsMetadata

OPSET, MIN_OPSET = 18, 17
INPUT_NAME, OUTPUT_NAME = "image", "probability"


def check_opset(opset: int) -> None:
    if opset < MIN_OPSET:
        raise UserError(f"--opset {opset}: patch2image exports opset {MIN_OPSET} or later")


class _WithSigmoid(nn.Module):
    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x):
        return torch.sigmoid(self.network(x))


def onnx_bytes(model: nn.Module, metadata: WeightsMetadata | dict, opset: int = OPSET) -> bytes:
    """The serialised ONNX model of ``model`` (logits network) with a sigmoid and ``metadata`` embedded."""
    check_opset(opset)
    wrapped = _WithSigmoid(model).eval()
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


def export_onnx(model: nn.Module, path: str | Path, metadata: WeightsMetadata, opset: int = OPSET) -> float:
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
    data = onnx_bytes(model, metadata, opset)
    with atomic_write(path) as tmp:
        Path(tmp).write_bytes(data)
    divisor = size_divisor(model)
    x = torch.rand(1, input_channels(metadata), divisor * max(1, 96 // divisor), divisor * max(1, 128 // divisor),
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    with torch.inference_mode():
        expected = torch.sigmoid(model.eval()(x))
    return float((OnnxModel(data).probabilities(x) - expected).abs().max())


def input_channels(metadata: WeightsMetadata | dict) -> int:
    """The channels of the network's input, as the weights' pre-processing makes it."""
    return preprocessing_from(WeightsMetadata.coerce(metadata).preprocessing).channels


def cached_onnx_bytes(model: nn.Module, metadata: WeightsMetadata, weights: str | Path) -> bytes:
    """:func:`onnx_bytes` of ``model`` loaded from the file ``weights``, kept in the user's cache folder.

    An export takes 4-7 s on 2 cores, longer than segmenting a few images, and the onnxruntime and
    OpenVINO backends need one at every start.
    """
    from patch2image.runtime.cache import cached_bytes

    name = onnx_cache_name(model, metadata, weights)
    if name is None:
        return onnx_bytes(model, metadata)
    return cached_bytes(name, lambda: onnx_bytes(model, metadata))


def onnx_cache_name(model: nn.Module, metadata: WeightsMetadata, weights: str | Path) -> str | None:
    """The export's name in the cache folder; None when the sources cannot be read (then nothing is cached).

    The key covers what the graph depends on: the weights file's bytes, the metadata, the source of the
    network's package (``patch2image.networks``, or a user network's) and of this module, torch's
    version and the opset; a change in any makes a new entry, never a stale hit.
    """
    from patch2image.runtime.cache import digest

    sources = _network_sources(type(model)) + [Path(__file__)]
    try:
        parts = [Path(weights).read_bytes(), *(path.read_bytes() for path in sources)]
    except OSError:
        return None
    parts += [json.dumps(WeightsMetadata.coerce(metadata).to_dict(), sort_keys=True), torch.__version__, str(OPSET)]
    return f"onnx/{digest(*parts)}.onnx"


def _network_sources(cls: type) -> list[Path]:
    """The source files of the loaded modules of the package defining ``cls`` (its module alone at top level)."""
    import sys

    module = cls.__module__
    package = module.rpartition(".")[0]
    names = sorted(n for n in sys.modules if n in (module, package) or (package and n.startswith(package + ".")))
    files = {getattr(sys.modules[n], "__file__", None) for n in names} - {None}
    return sorted(Path(f) for f in files)


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

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float32 pre-processed images, sides multiples of the divisor -> (N, 1, H, W) probabilities."""
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


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
