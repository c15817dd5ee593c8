"""``precision: auto`` and ``layout: auto``: train in whichever numeric precision and memory layout is fastest here.

Why measure rather than rule: bfloat16 autocast with channels-last halves training time on a 2-core
AMD EPYC and is slower than float32 on a 2-core Intel Xeon of the same kind (docs/benchmarks.md), and
the ranking changes with the network and the batch's shape. So before a phase trains, a few training
steps (forward, backward, optimiser step) of each candidate run on a copy of the network and a batch of
the phase's shape, in alternating rounds (a busy machine slows all alike) of at least a quarter of a
second each; candidates far behind after the first round drop out, and the lowest median of the rest
is kept.

Accuracy: bfloat16 autocast is mixed precision (weights, gradients and the optimiser's state stay
float32; only the convolutions' inputs are rounded), and the paper's three networks reproduce the
paper's figures trained so (docs/results/). Layout changes the speed only.

The measurement touches neither the network nor the random streams (it runs on a copy, inside a forked
RNG), so a run is the same whichever candidate wins, up to rounding. The choice is printed, kept in the
phase's checkpoint (a resumed phase keeps it) and in the user's cache folder, keyed by processor,
threads, network, batch shape and PyTorch's version: later runs on the machine measure nothing.
"""

import copy
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from patch2image.runtime.auto import processor
from patch2image.runtime.cache import cache_dir, cached_choice, update_json
from patch2image.runtime.precision import LAYOUTS, PRECISIONS, autocast
from patch2image.runtime.race import race
from patch2image.training.loss import bce_dice_loss

CHOICES_FILE = "training-choice.json"
ROUNDS = 5
"""Timed rounds of each candidate (see :func:`patch2image.runtime.race.race`): the median
of five holds against a busy machine's noise where three did not (docs/benchmarks.md)."""


@dataclass(frozen=True)
class TrainingSettings:
    """How the training steps run: autocast precision and the memory layout of the network and inputs."""

    precision: str = "fp32"
    layout: str = "channels_last"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.layout == "channels_last" else torch.contiguous_format

    def __str__(self) -> str:
        return f"{self.precision}, {self.layout.replace('_', '-')}"


def candidates(precision: str, layout: str) -> list[TrainingSettings]:
    """The settings ``auto`` chooses among; a fixed value is the only candidate for its part."""
    precisions = PRECISIONS if precision == "auto" else (precision,)
    layouts = LAYOUTS if layout == "auto" else (layout,)
    return [TrainingSettings(p, m) for p in precisions for m in layouts]


def choose_settings(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    precision: str = "auto",
    layout: str = "auto",
    device: torch.device | str = "cpu",
    label: str = "",
    announce=print,
) -> TrainingSettings:
    """The fastest training settings for ``model`` on batches shaped like ``(x, y)``.

    Parameters
    ----------
    model : torch.nn.Module
        The network; not modified (the steps are timed on a copy).
    x, y : torch.Tensor
        A batch of inputs and targets of the phase's shape.
    precision : {"auto", "fp32", "bf16"}
    layout : {"auto", "channels_last", "contiguous"}
        ``auto`` measures; a fixed value is used as given.
    label : str
        What the choice is for, in the announcement (``patch``, ``finetune``).
    announce : callable
        Receives the one-line report of the choice.
    """
    options = candidates(precision, layout)
    if len(options) == 1:
        return options[0]
    device = torch.device(device)
    key = _key(model, x, device)
    remembered = cached_choice(CHOICES_FILE, key, "seconds_per_step")
    if remembered is not None and remembered.get("choice") in [asdict(o) for o in options]:
        chosen = TrainingSettings(**remembered["choice"])
        announce(f"{label} training settings auto: {chosen} (measured earlier; {_seconds(remembered)})")
        return chosen
    seconds = _time_steps(model, x, y, options, device)
    medians = {str(o): round(float(np.median(s)), 4) for o, s in zip(options, seconds, strict=True) if s}
    finalists = [o for o, s in zip(options, seconds, strict=True) if len(s) == ROUNDS]
    chosen = min(finalists, key=lambda o: medians[str(o)])
    entry = {"choice": asdict(chosen), "seconds_per_step": medians, "measured": time.strftime("%Y-%m-%d %H:%M")}
    kept = update_json(CHOICES_FILE, key, entry)
    where = f"kept in {cache_dir() / CHOICES_FILE}" if kept else "not kept: the cache folder is not writable"
    announce(f"{label} training settings auto: {chosen}, the fastest ({_seconds(entry)}; {where})")
    return chosen


def _time_steps(model, x, y, options: list[TrainingSettings], device) -> list[list[float]]:
    """Seconds per training step of each option, measured in alternating rounds on copies of the model."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        copies = [copy.deepcopy(model).to(device, memory_format=o.memory_format).train() for o in options]
        optimisers = [torch.optim.Adadelta(m.parameters()) for m in copies]

        def step(i: int):
            return lambda: _step(copies[i], optimisers[i], x, y, options[i], device)

        # RuntimeError: a precision this device cannot run (bf16 on an old GPU)
        seconds = race({i: step(i) for i in range(len(options))}, ROUNDS, failures=(RuntimeError,))
    return [seconds.get(i, []) for i in range(len(options))]


def _step(model, optimiser, x, y, settings: TrainingSettings, device) -> None:
    x = x.to(device, memory_format=settings.memory_format)
    with autocast(settings.precision, device):
        logits = model(x)
    loss = bce_dice_loss(logits, y.to(device))
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _key(model, x, device) -> str:
    """A readable key of what the timings depend on."""
    parameters = sum(p.numel() for p in model.parameters())
    network = f"{type(model).__module__}.{type(model).__qualname__} ({parameters} parameters)"
    where = processor() if device.type == "cpu" else torch.cuda.get_device_name(device)
    shape = "x".join(map(str, x.shape))
    return f"{where} | {torch.get_num_threads()} threads | {network} | {shape} | torch {torch.__version__}"


def _seconds(entry: dict) -> str:
    timings = sorted(entry.get("seconds_per_step", {}).items(), key=lambda item: item[1])
    return "s per step: " + "; ".join(f"{name} {s:.3g}" for name, s in timings)
