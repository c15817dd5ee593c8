"""Pre-processing speed: OpenCV's CLAHE (the default) against scikit-image's, on DRIVE-sized images.

.venv/bin/python -m benchmarks.preprocessing [--out benchmarks/results/preprocessing.json]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from skimage.data import retina

from benchmarks.machine import describe_machine
from patch2image.preprocessing import Preprocessing, resize


def seconds_per_image(preprocessing: Preprocessing, rgb: np.ndarray, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        preprocessing(rgb)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="benchmarks/results/preprocessing.json")
    args = parser.parse_args()
    rgb = resize(retina(), (584, 568))
    opencv = seconds_per_image(Preprocessing(clahe="opencv"), rgb, args.repeats)
    skimage = seconds_per_image(Preprocessing(clahe="skimage"), rgb, args.repeats)
    result = {
        "machine": describe_machine(),
        "image": "skimage.data.retina() resized to 584x568",
        "opencv_s": round(opencv, 4),
        "skimage_s": round(skimage, 4),
        "speedup": round(skimage / opencv, 1),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
