"""``patch2image cohort`` at 1,000 and 10,000 small photographs: speed, memory, overhead, kill and resume.

Small synthetic photographs (48 x 48 px, a textured disc on black, 100 per folder) and a Light network
with no scale information (each photograph segmented at its own size), so that a photograph costs a few
milliseconds and the cohort machinery's own cost per photograph shows as much as it ever can.

- ``--photos N... --workers W...``: for each N and W, a Dask cluster of its own (``dask scheduler`` and
  ``dask worker --nworkers W --nthreads 1``, as on a real cluster) and ``patch2image cohort --scheduler
  --save-masks``; photographs per second (the command's own figure, from its first stat to its results
  table; and in the steady state, between the first and the last mask written), and the peak resident
  memory of the client, the scheduler and each worker (sampled every 0.25 s). With W = 1, in the same run
  and in turn, ``patch2image segment --threads 1`` on the same photographs: the overhead per photograph
  of the cohort against plain ``segment``, both in the steady state.
- ``--kill-and-resume N``: ``patch2image cohort --workers 2`` (a local cluster) killed outright (SIGKILL,
  its whole process group) once half the photographs are in its batches, then rerun; the rerun's table
  against an uninterrupted run's, every column but the time each photograph took.
- ``--drive-overhead``: the 20 DRIVE test photographs with ``drive-light`` (PyTorch, float32), ``patch2image cohort
  --workers 1 --save-masks`` (a local cluster: one worker, the network on all cores) and ``patch2image
  segment`` (the network on all cores), in turn, ``--rounds`` times: the overhead per photograph at the
  size the issue is about, in the steady state.
- ``--cost``: ``patch2image segment`` with the default model on DRIVE-sized (DRIVE test) and
  12-megapixel (IDRiD test) photographs: seconds per photograph, from which the paper estimate for
  100,000 photographs on 10 and 100 workers.

It writes ``benchmarks/results/cohort.json`` (each stage replaces its own figures; a throughput run replaces
the earlier ones of the same cohort sizes) and prints them.

    nice -n 5 .venv/bin/python -m benchmarks.cohort --photos 1000 --workers 1 2 --cost
    nice -n 5 .venv/bin/python -m benchmarks.cohort --kill-and-resume 10000
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
JSON_OUT = ROOT / "benchmarks" / "results" / "cohort.json"
BIN = Path(sys.executable).parent
SIZE = 48
PER_FOLDER = 100
DATASETS = ROOT.parent / "shared" / "datasets"
DRIVE_TEST = DATASETS / "DRIVE" / "test" / "images"
IDRID_TEST = DATASETS / "IDRiD" / "A. Segmentation" / "1. Original Images" / "b. Testing Set"


# --------------------------------------------------------------------------- data


def make_photos(folder: Path, count: int) -> Path:
    from PIL import Image

    y, x = np.mgrid[:SIZE, :SIZE]
    inside = (y - SIZE / 2) ** 2 + (x - SIZE / 2) ** 2 <= (0.45 * SIZE) ** 2
    for i in range(count):
        path = folder / f"f{i // PER_FOLDER:03d}" / f"p{i:05d}.png"
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
        rgb[inside] = np.array([170, 80, 30]) + np.random.default_rng(i).integers(0, 60, (int(inside.sum()), 1))
        Image.fromarray(rgb).save(path)
    return folder


def make_model(path: Path) -> str:
    import torch

    from patch2image.networks import create_network
    from patch2image.weights import save_weights

    torch.manual_seed(0)
    metadata = {"network": "light", "preprocessing": {"order": "clahe-gamma", "gamma": 1.7, "clahe": "opencv"}}
    save_weights(path, create_network("light"), metadata)
    return str(path)


def photo_set(work: Path, count: int) -> Path:
    """A folder of ``count`` photographs (the first ``count`` of the largest set made, by links)."""
    folder = work / f"photos-{count}"
    if not folder.is_dir():
        make_photos(folder, count)
    return folder


# --------------------------------------------------------------------------- processes and memory


class PeakMemory:
    """Peak resident memory (MiB) of named processes and of their descendants, sampled every 0.25 s."""

    def __init__(self):
        self.peaks: dict[str, float] = {}
        self.watched: dict[str, psutil.Process] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def watch(self, name: str, pid: int) -> None:
        self.watched[name] = psutil.Process(pid)

    def _sample(self) -> None:
        while not self.stop.is_set():
            for name, process in list(self.watched.items()):
                try:
                    self._note(name, process)
                    for i, child in enumerate(sorted(process.children(recursive=True), key=lambda p: p.pid)):
                        self._note(f"{name} child {i}", child)
                except psutil.Error:
                    continue
            time.sleep(0.25)

    def _note(self, name: str, process: psutil.Process) -> None:
        try:
            rss = process.memory_info().rss / 2**20
        except psutil.Error:
            return
        self.peaks[name] = round(max(self.peaks.get(name, 0.0), rss), 1)

    def close(self) -> dict:
        self.stop.set()
        self.thread.join()
        return dict(sorted(self.peaks.items()))


def start_cluster(work: Path, workers: int, memory: PeakMemory) -> tuple[str, list[subprocess.Popen]]:
    """``dask scheduler`` and ``dask worker --nworkers W --nthreads 1``; the scheduler's address."""
    file = work / f"scheduler-{time.time_ns()}.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([BIN / "dask", "scheduler", "--scheduler-file", file, "--no-dashboard"], **quiet)
    while not file.is_file():
        time.sleep(0.2)
    address = json.loads(file.read_text())["address"]
    worker = subprocess.Popen(
        [BIN / "dask", "worker", "--scheduler-file", file, "--nworkers", str(workers), "--nthreads", "1",
         "--no-dashboard"], **quiet,
    )  # fmt: skip
    memory.watch("scheduler", scheduler.pid)
    memory.watch("workers", worker.pid)  # the nannies' process; each worker is one of its children
    from distributed import Client

    with Client(address) as client:
        client.wait_for_workers(workers, timeout=300)
    return address, [worker, scheduler]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(argv: list, memory: PeakMemory | None = None, name: str = "client") -> str:
    process = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if memory is not None:
        memory.watch(name, process.pid)
    out, err = process.communicate()
    if process.returncode not in (0, 1):
        raise RuntimeError(f"{argv[:3]} exited {process.returncode}: {err[-2000:]}")
    return out


def steady_rate(files: list[Path]) -> float:
    """Photographs per second between the first and the last mask written: start-up and the end left out."""
    times = sorted(path.stat().st_mtime for path in files)
    return round((len(times) - 1) / (times[-1] - times[0]), 2)


def cohort_rate(output: str) -> float:
    return float(re.search(r"\(([\d.]+) per second\)", output).group(1))


def segment_seconds(output: str) -> float:
    return float(re.search(r"([\d.]+) s per image", output).group(1))


# --------------------------------------------------------------------------- stages


def throughput(work: Path, model: str, counts: list[int], workers: list[int], rounds: int) -> list[dict]:
    records = []
    for count in counts:
        photos = photo_set(work, count)
        for _ in range(rounds):
            for w in workers:
                memory = PeakMemory()
                address, cluster = start_cluster(work, w, memory)
                out = work / f"out-{count}-{w}-{time.time_ns()}"
                started = time.monotonic()
                try:
                    output = run([BIN / "patch2image", "cohort", photos, "--out", out, "--model", model, "--backend",
                                  "torch", "--precision", "fp32", "--save-masks", "--scheduler", address, "--quiet"],
                                 memory)  # fmt: skip
                finally:
                    stop(cluster)
                peaks = memory.close()
                record = {
                    "photos": count, "workers": w, "photos_per_second": cohort_rate(output),
                    "steady_photos_per_second": steady_rate(list(out.glob("masks/*/*_vessels_mask.png"))),
                    "whole_command_seconds": round(time.monotonic() - started, 1), "peak_rss_mib": peaks,
                }  # fmt: skip
                if w == 1:  # plain segment on the same photographs, in turn
                    seg_out = work / f"seg-{count}-{time.time_ns()}"
                    run([BIN / "patch2image", "segment", photos / "f*" / "*.png", "--out", seg_out, "--model", model,
                         "--backend", "torch", "--precision", "fp32", "--threads", "1", "--quiet"])  # fmt: skip
                    segment_rate = steady_rate(list(seg_out.glob("*_mask.png")))
                    record["segment_steady_photos_per_second"] = segment_rate
                    record["overhead"] = round(segment_rate / record["steady_photos_per_second"] - 1, 3)
                print(json.dumps(record), flush=True)
                records.append(record)
    return records


def kill_and_resume(work: Path, model: str, count: int) -> dict:
    photos = photo_set(work, count)
    argv = [BIN / "patch2image", "cohort", photos, "--model", model, "--backend", "torch", "--precision", "fp32",
            "--save-masks", "--workers", "2", "--quiet"]  # fmt: skip
    whole = work / f"whole-{count}"
    started = time.monotonic()
    output = run([*argv, "--out", whole])
    uninterrupted = {"seconds": round(time.monotonic() - started, 1), "photos_per_second": cohort_rate(output)}
    print(json.dumps({"uninterrupted": uninterrupted}), flush=True)

    from patch2image.cohort.store import Store

    out = work / f"killed-{count}"
    process = subprocess.Popen([str(a) for a in [*argv, "--out", out]], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    while process.poll() is None:
        batches = Store(out).read_batches(("file",))
        if batches is not None and batches.num_rows >= count // 2:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(1)
    process.wait()
    before = Store(out).read_batches(("file",)).num_rows
    started = time.monotonic()
    output = run([*argv, "--out", out])
    resumed = {"seconds": round(time.monotonic() - started, 1), "photos_per_second": cohort_rate(output)}
    files = Store(out).read_batches(("file",))["file"].to_pylist()

    def comparable(path: Path) -> dict:
        table = pq.read_table(path / "results.parquet")
        return {name: table[name].to_pylist() for name in table.column_names if name != "seconds"}

    record = {
        "photos": count, "uninterrupted": uninterrupted, "rows_before_the_kill": before,
        "rows_done_by_the_rerun": len(files) - before, "resumed": resumed,
        "rows_in_batches": len(files), "distinct_photographs_in_batches": len(set(files)),
        "table_equals_uninterrupted": comparable(out) == comparable(whole), "command_output": output.strip(),
    }  # fmt: skip
    print(json.dumps(record), flush=True)
    return record


DRIVE_MODEL = ["--model", "drive-light", "--backend", "torch", "--precision", "fp32", "--quiet"]


def drive_overhead(work: Path, rounds: int) -> dict:
    photos = sorted(DRIVE_TEST.glob("*.tif"))
    runs = []
    for round_ in range(rounds):
        out = work / f"drive-cohort-{round_}"
        run([BIN / "patch2image", "cohort", DRIVE_TEST, "--out", out, "--workers", "1", "--save-masks", *DRIVE_MODEL])
        cohort = steady_rate(list(out.glob("masks/*/*_vessels_mask.png")))
        seg_out = work / f"drive-segment-{round_}"
        run([BIN / "patch2image", "segment", *photos, "--out", seg_out, *DRIVE_MODEL])
        segment = steady_rate(list(seg_out.glob("*_mask.png")))
        runs.append({"cohort_photos_per_second": cohort, "segment_photos_per_second": segment,
                     "overhead": round(segment / cohort - 1, 3)})  # fmt: skip
        print(json.dumps(runs[-1]), flush=True)
    return {"photos": len(photos), "runs": runs}


def cost(work: Path) -> dict:
    """Seconds per photograph of ``segment`` with the default model, DRIVE-sized and 12-megapixel."""
    sets = {"drive": sorted(DRIVE_TEST.glob("*.tif"))[:3], "twelve_megapixel": sorted(IDRID_TEST.glob("*.jpg"))[:2]}
    record = {}
    for name, files in sets.items():
        output = run([BIN / "patch2image", "segment", *files, "--out", work / f"cost-{name}", "--quiet", "--overwrite"])
        record[name] = {"seconds_per_photo": segment_seconds(output), "photos": len(files), "output": output.strip()}
        print(json.dumps({name: record[name]}), flush=True)
    return record


# --------------------------------------------------------------------------- command


def machine() -> dict:
    from patch2image.runtime.auto import processor

    return {"processor": processor(), "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0],
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, nargs="*", default=[], help="cohort sizes to time (e.g. 1000)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--kill-and-resume", type=int, metavar="N", help="kill a run of N photographs and resume it")
    parser.add_argument("--drive-overhead", action="store_true", help="cohort against segment on DRIVE's test set")
    parser.add_argument("--cost", action="store_true", help="segment's seconds per DRIVE and 12 MP photograph")
    parser.add_argument("--work", help="folder for photographs and outputs (default: a temporary one)")
    args = parser.parse_args()
    record = json.loads(JSON_OUT.read_text()) if JSON_OUT.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="cohort-bench-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = make_model(work / "light.safetensors")
        command = " ".join(["nice -n 5 .venv/bin/python -m benchmarks.cohort", *sys.argv[1:]])
        if args.photos:
            runs = throughput(work, model, args.photos, args.workers, args.rounds)
            earlier = [r for r in record.get("throughput", []) if {p["photos"] for p in r["runs"]} - set(args.photos)]
            record["throughput"] = [*earlier, {"machine": machine(), "command": command, "runs": runs}]
        if args.kill_and_resume:
            record["kill_and_resume"] = {"machine": machine(), "command": command,
                                         **kill_and_resume(work, model, args.kill_and_resume)}  # fmt: skip
        if args.drive_overhead:
            record["drive_overhead"] = {"machine": machine(), "command": command, **drive_overhead(work, args.rounds)}
        if args.cost:
            record["cost"] = {"machine": machine(), "command": command, **cost(work)}
    JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(f"written {JSON_OUT}")


if __name__ == "__main__":
    main()
