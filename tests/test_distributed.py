"""torchrun with 2 processes on localhost (gloo) gives the result of one process with the same batch."""

import os
import socket
import subprocess
import sys

import torch
import yaml
from safetensors.torch import load_file

from patch2image.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    config = {
        "name": "ddp",
        "network": "light",
        "precision": "fp32",
        "layout": "channels_last",  # fixed: the processes time nothing, and both runs use the same kernels
        "dataset": {"kind": "synthetic", "synthetic_images": 8, "synthetic_size": 64},
        "phases": {"patch": {"epochs": 2, "batch_size": 8}, "finetune": {"epochs": 2, "batch_size": 2}},
        "evaluation": {"patch_stride": 16},
    }
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config))
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    launch += ["--master_port", str(_free_port()), "-m", "patch2image", "train", str(path)]
    done = subprocess.run([*launch, "--out", str(tmp_path / "two"), "--quiet"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Image/Fine-tuned" in done.stdout and "Traceback" not in done.stderr

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process had
    try:
        assert main(["train", str(path), "--out", str(tmp_path / "one"), "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    for weights in ("patch", "finetuned"):
        two = load_file(str(tmp_path / "two" / f"{weights}.safetensors"))
        one = load_file(str(tmp_path / "one" / f"{weights}.safetensors"))
        for key in one:
            # Measured: at most 1.05e-5 apart after four epochs with the reference augmentation (1e-6 with
            # horizontal flips of patches only): rounding that AdaDelta's first, normalised steps amplify.
            assert torch.allclose(one[key], two[key], atol=1e-4), (weights, key)
    history = (tmp_path / "two" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 4
