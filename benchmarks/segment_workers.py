"""Batch segmentation with worker processes: ``patch2image segment --workers N`` over DRIVE's test images.

For each N in ``--workers`` (default 0 1 2), in the same run and in turn, a fresh Python process runs
``patch2image segment`` on the 20 DRIVE test images with the Light model (the shipped ``drive-light``
when there is one, else Light with its reference initialisation and DRIVE metadata: weights do not
change the time) and reports:

- images per second over the whole command (model loading and worker start-up included, Python's
  imports excluded), and in the steady state (between the first and the last image written, from the
  outputs' modification times), which is what a folder of thousands of images sees;
- peak memory: ``ru_maxrss`` of the command's process (``os.wait4``: its own peak, or a reaped child's if
  larger), and the peak of the summed proportional set size (PSS) of the command and all its descendants
  (the forkserver and the workers, which ``ru_maxrss`` cannot see), sampled every 50 ms from ``/proc``.

It writes ``benchmarks/results/segment_workers.json`` and the section "Batch segmentation with workers"
of ``docs/benchmarks.md``.

    .venv/bin/python -m benchmarks.segment_workers [--workers 0 1 2] [--threads N] [--rounds 1]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.machine import describe_machine
from benchmarks.segmentation_time import DOCS, DRIVE_METADATA, DRIVE_TEST, ROOT, run_command, write_docs_section

JSON_OUT = ROOT / "benchmarks" / "results" / "segment_workers.json"
HEADING = "## Batch segmentation with workers"


# --------------------------------------------------------------------------- the measured process


def child(args: argparse.Namespace) -> None:
    """Run the command in this process and print one JSON line: its time and this process's peak RSS."""
    import resource

    from patch2image import cli

    cli.build_parser()  # imports every sub-command's modules, so that they are not timed
    images = sorted(DRIVE_TEST.glob("*.tif"))[: args.images]
    argv = ["segment", *map(str, images), "--model", args.model, "--out", str(args.out), "--quiet"]
    argv += ["--workers", str(args.child)] + (["--threads", str(args.threads)] if args.threads else [])
    started = time.perf_counter()
    code = cli.main(argv)
    seconds = time.perf_counter() - started
    written = sorted(p.stat().st_mtime for p in Path(args.out).glob("*_overlay.png"))
    steady = (len(written) - 1) / (written[-1] - written[0]) if len(written) > 1 and written[-1] > written[0] else None
    report = {
        "exit_status": code,
        "images": len(images),
        "written": len(written),
        "seconds": seconds,
        "steady_images_per_s": steady,
        "self_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(report))


# --------------------------------------------------------------------------- memory of a process tree


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])  # the name in parentheses may hold spaces
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB; (0, 0) once it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    values = {
        line.split(":")[0]: int(line.split()[1]) for line in text.splitlines() if line.startswith(("Pss:", "Rss:"))
    }
    return values.get("Pss", 0), values.get("Rss", 0)


class TreeMemory(threading.Thread):
    """Samples the summed PSS and RSS of a process and its descendants until stopped; keeps the peaks.

    The process list is scanned every 10th sample only: the sampler shares the cores with what it measures.
    """

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_pss = self.peak_rss = 0
        self.peak_processes = 0
        self.done = threading.Event()

    def run(self) -> None:
        pids: list[int] = []
        for sample in range(sys.maxsize):
            if self.done.is_set():
                return
            if sample % 10 == 0:
                pids = _descendants(self.pid)
            pss, rss = map(sum, zip(*(_memory_kib(p) for p in pids), strict=True))
            self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)
            self.peak_processes = max(self.peak_processes, len(pids))
            self.done.wait(self.interval)


# --------------------------------------------------------------------------- one setting


def measure(workers: int, model: str, args: argparse.Namespace) -> dict:
    """Run the command with ``--workers workers`` in a fresh process; its figures."""
    with tempfile.TemporaryDirectory(prefix="segment-workers-") as out:
        command = [sys.executable, __file__, "--child", str(workers), "--model", model, "--out", str(out)]
        command += ["--images", str(args.images)] + (["--threads", str(args.threads)] if args.threads else [])
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        sampler = TreeMemory(process.pid)
        if Path("/proc/self/smaps_rollup").exists():
            sampler.start()
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        sampler.done.set()
        if sampler.is_alive():
            sampler.join()
    if process.returncode != 0:
        sys.exit(f"error: the command with --workers {workers} failed (exit status {process.returncode})")
    report = json.loads(output.strip().splitlines()[-1])
    return {
        "workers": workers,
        "images": report["images"],
        "seconds": round(report["seconds"], 3),
        "images_per_s": round(report["images"] / report["seconds"], 2),
        "steady_images_per_s": report["steady_images_per_s"] and round(report["steady_images_per_s"], 2),
        "process_wall_s": round(wall, 3),
        "maxrss_mib": round(usage.ru_maxrss / 1024, 1),
        "peak_pss_total_mib": round(sampler.peak_pss / 1024, 1) if sampler.peak_pss else None,
        "peak_rss_total_mib": round(sampler.peak_rss / 1024, 1) if sampler.peak_rss else None,
        "peak_processes": sampler.peak_processes or None,
    }


def light_model(folder: Path) -> tuple[str, str]:
    """(what --model gets, where the weights come from)."""
    from patch2image.weights import resolve_weights

    if resolve_weights("drive-light").is_file():
        return "drive-light", "shipped model drive-light"
    import torch

    from patch2image.networks import create_network
    from patch2image.weights import save_weights

    torch.manual_seed(0)
    path = folder / "light.safetensors"
    save_weights(path, create_network("light"), {"network": "light", **DRIVE_METADATA})
    return str(path), "Light, reference initialisation (no shipped model)"


# --------------------------------------------------------------------------- outputs


def markdown_section(results: dict) -> str:
    lines = [
        HEADING,
        "",
        f"`patch2image segment` over {results['images']} DRIVE test images with {results['weights']}, "
        "written by `benchmarks/segment_workers.py`.",
        "",
        "| --workers | images/s (whole command) | images/s (steady state) | peak RSS, main process (MiB) "
        "| peak PSS, all processes (MiB) |",
        "|---|---|---|---|---|",
    ]
    for row in results["runs"]:
        cells = [row["workers"], row["images_per_s"], row["steady_images_per_s"], row["maxrss_mib"]]
        cells.append(row["peak_pss_total_mib"])
        lines.append("| " + " | ".join("-" if c is None else f"{c:g}" for c in cells) + " |")
    lines += [
        "",
        "- whole command: from the command's start (model loading and worker start-up included, Python's imports "
        "excluded) to its end. Steady state: between the first and the last image written.",
        "- peak RSS, main process: `ru_maxrss` of the command's process. Peak PSS: the summed proportional set "
        "size of the command, the forkserver and the workers (shared pages counted once), sampled every 50 ms.",
        "",
        f"Run: {results['machine']}; --threads {results['threads']} for the network; load average "
        f"{results['load_average_at_start']} at start; {results['date']}",
    ]
    if results.get("note"):
        lines.append(f"**{results['note']}**")
    lines += ["", f"`{results['command']}`"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None, help="--threads of the command (default: all)")
    parser.add_argument("--images", type=int, default=20, help="DRIVE test images (default all 20)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every setting, in turn; the best is kept")
    parser.add_argument("--note", default=None, help="a remark printed with this run, e.g. that the machine was busy")
    parser.add_argument("--out", type=Path, default=JSON_OUT)
    parser.add_argument("--docs", type=Path, default=DOCS)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args)
        return

    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    command = run_command("benchmarks/segment_workers.py", argv)
    with tempfile.TemporaryDirectory(prefix="segment-workers-model-") as folder:
        model, weights = light_model(Path(folder))
        best: dict[int, dict] = {}
        for _ in range(args.rounds):
            for workers in args.workers:
                row = measure(workers, model, args)
                print(json.dumps(row), flush=True)
                if workers not in best or row["images_per_s"] > best[workers]["images_per_s"]:
                    best[workers] = row
    results = {
        "images": best[args.workers[0]]["images"],
        "weights": weights,
        "runs": [best[w] for w in args.workers],
        "machine": describe_machine(),
        "threads": args.threads or "all",
        "load_average_at_start": load,
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "note": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    write_docs_section(args.docs, HEADING, markdown_section(results))
    print(f"written to {args.out} and {args.docs}")


if __name__ == "__main__":
    main()
