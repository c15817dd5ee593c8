"""A command loads only what it runs: no backend, tool or library it does not use is imported.

Each case runs in a fresh interpreter, since this test session has imported everything already.
"""

import json
import os
import subprocess
import sys

import cv2
import numpy as np

from patch2image.runtime.export import export_onnx
from patch2image.weights import load_model, resolve_weights

UNUSED = ("onnx", "onnxruntime", "openvino", "scipy", "skimage", "matplotlib", "dask", "starlette", "uvicorn")


def imported_after(code: str, tmp_path, modules: tuple[str, ...] = UNUSED) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {modules!r} if m in sys.modules]))"
    env = os.environ | {"PATCH2IMAGE_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def a_photograph(tmp_path):
    photo = tmp_path / "photo.png"
    rgb = np.zeros((96, 128, 3), np.uint8)
    cv2.circle(rgb, (64, 48), 40, (180, 90, 40), -1)
    cv2.imwrite(str(photo), rgb)
    return photo


def test_segment_with_pytorch_imports_no_other_backend_nor_scipy(tmp_path):
    photo = a_photograph(tmp_path)
    argv = ["segment", str(photo), "--model", "drive-light", "--out", str(tmp_path / "out"), "--backend", "torch"]
    code = f"from patch2image import cli\nassert cli.main({argv!r}) == 0"
    assert imported_after(code, tmp_path) == []
    assert (tmp_path / "out" / "photo_mask.png").is_file()


def test_openvino_reads_the_exported_metadata_without_the_onnx_package(tmp_path):
    model, metadata = load_model(resolve_weights("drive-light"))
    path = tmp_path / "light.onnx"
    export_onnx(model, path, metadata)
    code = (
        "from patch2image.runtime.openvino_model import OpenVinoModel\n"
        f"runner = OpenVinoModel({str(path)!r})\n"
        "assert runner.metadata.network == 'light' and runner.size_divisor == 4, runner.metadata"
    )
    assert imported_after(code, tmp_path) == ["openvino"]
    assert list((tmp_path / "cache" / "openvino").iterdir())  # the compiled graph, kept for the next start


def test_segment_on_an_export_made_before_never_imports_pytorch(tmp_path):
    """PyTorch's import is most of a short run's start-up: OpenVINO needs it only to make the export."""
    photo = a_photograph(tmp_path)
    argv = ["segment", str(photo), "--model", "drive-light", "--out", str(tmp_path / "out"), "--overwrite",
            "--backend", "openvino", "--precision", "fp32"]  # fmt: skip
    code = f"from patch2image import cli\nassert cli.main({argv!r}) == 0"
    assert imported_after(code, tmp_path, ("torch", "openvino")) == ["torch", "openvino"]  # the first run exports
    assert imported_after(code, tmp_path, ("torch", "openvino")) == ["openvino"]  # the next reads the export
    assert (tmp_path / "out" / "photo_mask.png").is_file()


def test_listing_the_models_reads_their_headers_without_pytorch(tmp_path):
    code = "from patch2image import cli\nassert cli.main(['models']) == 0"
    assert imported_after(code, tmp_path, ("torch",)) == []
