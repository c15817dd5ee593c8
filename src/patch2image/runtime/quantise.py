"""Int8 post-training quantisation of an exported model: ``patch2image export WEIGHTS --onnx F --int8 PHOTOS``.

Why these settings (measured with ``benchmarks/reduced_precision.py``, docs/benchmarks.md): onnxruntime's
static quantisation in QDQ format, so that onnxruntime and OpenVINO both run the file with int8
kernels; only convolutions quantised (a quantised sigmoid would leave 256 probability levels, and the
ties cost AUC); weights int8 per output channel, symmetric; activations uint8 with zero points
(OpenVINO gave wrong probabilities, up to 0.97 off, from int8 activations; uint8 agrees with
onnxruntime); ranges from the photographs given, pre-processed as segmentation pre-processes them.
"""

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from patch2image.errors import UserError
from patch2image.preprocessing import as_channels
from patch2image.runtime.export import INPUT_NAME, first_line
from patch2image.weights import METADATA_KEY


def quantise_onnx(data: bytes, calibration: Iterable[np.ndarray], method: str = "MinMax") -> bytes:
    """The int8 model of the float32 ONNX ``data``, activation ranges calibrated on pre-processed images.

    ``calibration``: the network's inputs, each (H, W), or (C, H, W) for C channels (``Segmenter.prepare``).
    ``method``: onnxruntime's calibration method (MinMax, Entropy or Percentile).

    The weights' metadata travels along, with ``extra["int8"]`` saying how the model was quantised.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    images = list(calibration)
    if not images:
        raise UserError("--int8: no calibration image")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter({INPUT_NAME: as_channels(np.asarray(i, np.float32))[None]} for i in images)

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(data)
        try:
            quantize_static(
                str(source),
                str(target),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, method),
                op_types_to_quantize=["Conv", "ConvTranspose"],
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        except Exception as exc:  # onnxruntime's quantiser raises assorted types for graphs it cannot handle
            raise UserError(f"--int8: onnxruntime could not quantise the model ({first_line(exc)})") from None
        proto = onnx.load(str(target))
    source_props = {p.key: p.value for p in onnx.load_model_from_string(data).metadata_props}
    metadata = json.loads(source_props.get(METADATA_KEY, "{}"))
    metadata.setdefault("extra", {})["int8"] = {
        "method": "onnxruntime static QDQ: Conv and ConvTranspose, int8 weights per channel, uint8 activations, "
        + method,
        "calibration_images": len(images),
    }
    del proto.metadata_props[:]
    for key, value in {**source_props, METADATA_KEY: json.dumps(metadata)}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()
