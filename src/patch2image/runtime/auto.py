"""``--backend auto``: run whichever backend is fastest on this machine, for this network and input size.

Why measure rather than rule: which of PyTorch, onnxruntime and OpenVINO is fastest depends on the
processor (AVX-512, bf16), the network and the image size, and the margins are large (1.5-3x on the
same ONNX graph, docs/benchmarks.md). So the first input of each size class (sides rounded to
``SIZE_STEP`` pixels: photographs from one camera differ by a few pixels at the model's scale) is run a
few times by each backend available, in alternation (a busy machine slows all alike), and the lowest
median is kept. Its output for that input is the result, so the measurement costs only the others' passes.

One exception: a backend whose first use costs seconds (onnxruntime and OpenVINO need an ONNX export of
weights not exported before) is not tried for inputs under ``SMALL_PIXELS`` (thumbnails, tests): a pass
on them takes milliseconds in any backend, so the export could not pay for itself, and PyTorch in
float32 runs them, unmeasured and unannounced (a rule of size, not of timing, so that a busy machine
cannot make two runs choose differently). Nothing is kept for them.

The choice is kept in ``backend-choice.json`` in the user's cache folder (:mod:`patch2image.runtime.cache`),
keyed by processor, threads, network, size class, precision and the backends' versions; later runs
read it and measure nothing. The choice is printed once per size class, with the timings behind it.

Every backend gives the same probabilities within 1e-4 in float32 (tests/test_openvino.py,
tests/test_export.py), so the choice changes the speed, not the result.
"""

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from patch2image.errors import UserError
from patch2image.runtime.cache import cache_dir, cached_choice, update_json
from patch2image.runtime.race import race

CHOICES_FILE = "backend-choice.json"
ROUNDS = 3
"""Timed rounds of each candidate (see :func:`patch2image.runtime.race.race`)."""
SMALL_PIXELS = 256 * 256
"""Inputs with fewer pixels (batch included) are not worth a first ONNX export (seconds) to another backend."""
SIZE_STEP = 64
"""Input sides are rounded to multiples of this for the choice: the backends' ranking does not change within it."""


def processor() -> str:
    """The processor's model name and core count: what the timings belong to."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def size_class(shape) -> tuple[int, int, int]:
    """(batch, height, width) with the sides rounded to the nearest multiple of ``SIZE_STEP`` (at least one)."""
    batch, height, width = int(shape[0]), int(shape[-2]), int(shape[-1])
    return batch, *(max(SIZE_STEP, round(side / SIZE_STEP) * SIZE_STEP) for side in (height, width))


def package_version(package: str) -> str:
    """An installed package's version, read from its metadata (importing nothing); "absent" when not installed."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


class AutoModel:
    """A probability runner that delegates to the backend fastest for each input size class.

    Parameters
    ----------
    factories : dict
        Candidate name (``BACKEND`` or ``BACKEND PRECISION``, the backend being its package's name) -> a
        function building its runner, an object with ``probabilities``. Called only when measured or
        chosen; one that raises ``UserError`` (a backend that cannot run this model) is left out.
    metadata : WeightsMetadata
    precision : {"fp32", "bf16", "auto"}
        What the candidates were made for (part of the cached choice's key).
    threads : int, optional
        The threads the runners were given (part of the key).
    announce : callable, optional
        Receives the one-line report of each choice; by default it is printed on stderr.
    slow_to_build : set of str, optional
        Candidates whose first build costs seconds (an ONNX export not cached yet): not tried for inputs
        under ``SMALL_PIXELS``, which the first PyTorch candidate (float32) runs.
    choosing : str
        What the user left to it, as its lines name it: ``"backend auto"``, or ``"torch, precision auto"``
        when the backend was given and only the precision and layout are chosen.
    source : str
        The model's file, for messages.
    """

    def __init__(
        self,
        factories: dict[str, Callable[[], object]],
        metadata,
        precision: str = "fp32",
        threads: int | None = None,
        announce: Callable[[str], None] | None = None,
        slow_to_build: set[str] | frozenset = frozenset(),
        choosing: str = "backend auto",
        source: str = "model",
    ):
        self.factories = dict(factories)
        self.metadata = metadata
        self.size_divisor = metadata.size_divisor
        self.precision = precision
        self.threads = threads
        self.announce = announce or (lambda line: print(line, file=sys.stderr))
        self.slow_to_build = set(slow_to_build)
        self.choosing = choosing
        self.source = source
        self.chosen: dict[tuple, str] = {}  # size class -> backend
        self.measuring_seconds = 0.0  # building and timing the candidates, beyond the chosen one's own pass
        self.remembered = True  # every choice made was kept in the cache folder (False: measured again next run)
        self._runners: dict[str, object] = {}

    @property
    def description(self) -> str:
        """``auto: NAME`` (``auto: A, B`` when size classes chose differently; ``torch, precision auto: NAME``
        when only the precision was left to choose), for the command's last line."""
        names = sorted(set(self.chosen.values()))
        what = self.choosing.removeprefix("backend ")
        return f"{what}: {', '.join(names)}" if names else what

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """As every runner's: (N, C, H, W) pre-processed images -> probabilities, by the chosen backend."""
        size = size_class(x.shape)
        if size in self.chosen:
            return self._runner(self.chosen[size]).probabilities(x)
        remembered = cached_choice(CHOICES_FILE, self._key(size), "seconds_per_pass")
        if remembered is not None and remembered.get("choice") in self.factories:
            name = remembered["choice"]
            self.chosen[size] = name
            self.announce(f"{self.choosing}: {name} for {self._where(size)} (measured earlier; {_seconds(remembered)})")
            return self._runner(name).probabilities(x)
        return self._measure(x, size)

    def _measure(self, x: np.ndarray, size: tuple) -> np.ndarray:
        started = time.perf_counter()
        torch_name = next((n for n in self.factories if n.split()[0] == "torch"), None)
        if self.slow_to_build and torch_name is not None and x.size < SMALL_PIXELS:
            self.chosen[size] = torch_name  # the default, not a choice: nothing is measured, nothing said
            return self._runner(torch_name).probabilities(x)
        runners, outputs, reasons = {}, {}, {}
        for name in list(self.factories):
            try:
                runners[name] = self._runner(name)  # built outside the race: an export or compilation takes seconds
            except UserError as exc:
                del self.factories[name]  # a backend that cannot run this model
                reasons.setdefault(name.split()[0], str(exc).removeprefix(f"{self.source}: "))
        if not runners:
            why = "; ".join(f"{backend}: {reason}" for backend, reason in reasons.items())
            raise UserError(f"{self.source}: {self.choosing}: no backend can run this model ({why})")

        def run(name: str):
            return lambda: outputs.__setitem__(name, runners[name].probabilities(x))

        seconds = race({name: run(name) for name in runners}, ROUNDS, failures=(UserError,))
        for name in set(runners) - set(seconds):
            del self.factories[name], self._runners[name]
        medians = {name: round(float(np.median(s)), 4) for name, s in seconds.items()}
        name = min((n for n, s in seconds.items() if len(s) == ROUNDS), key=medians.get)
        self.chosen[size] = name
        self.slow_to_build.clear()  # built now: later size classes try every candidate
        for other in set(self._runners) - set(self.chosen.values()):
            del self._runners[other]  # the losers' memory back; rebuilt if another size class chooses them
        entry = {"choice": name, "seconds_per_pass": medians, "measured": time.strftime("%Y-%m-%d %H:%M")}
        kept = update_json(CHOICES_FILE, self._key(size), entry)
        self.remembered = self.remembered and kept
        where = f"kept in {cache_dir() / CHOICES_FILE}" if kept else "not kept: the cache folder is not writable"
        self.announce(f"{self.choosing}: {name}, the fastest for {self._where(size)} ({_seconds(entry)}; {where})")
        self.measuring_seconds += time.perf_counter() - started - medians[name]
        return outputs[name]

    def _runner(self, name: str):
        if name not in self._runners:
            self._runners[name] = self.factories[name]()
        return self._runners[name]

    def _where(self, size: tuple) -> str:
        network = self.metadata.network or "this network"
        return f"{network} at about {size[1]}x{size[2]}" + (f", batch {size[0]}" if size[0] != 1 else "")

    def _key(self, size: tuple) -> str:
        """A readable key of what the timings depend on."""
        network = self.metadata.network or "?"
        if self.metadata.network_arguments:
            network += " " + json.dumps(self.metadata.network_arguments, sort_keys=True)
        backends = sorted({name.split()[0] for name in self.factories})
        versions = ", ".join(f"{name} {package_version(name)}" for name in backends)
        threads = self.threads or _default_threads()
        shape = "x".join(map(str, size))
        return f"{processor()} | {threads} threads | {network} | {shape} | {self.precision} | {versions}"


def _default_threads() -> int:
    """The threads a runner given none uses, as PyTorch counts them, without importing PyTorch: those of the
    cores this process may run on, or ``OMP_NUM_THREADS``."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _seconds(entry: dict) -> str:
    timings = sorted(entry.get("seconds_per_pass", {}).items(), key=lambda item: item[1])
    return "s per pass: " + ", ".join(f"{name} {s:.3g}" for name, s in timings)
