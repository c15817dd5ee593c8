"""The patch-to-image framework end to end, as one experiment configuration describes it.

    patch database -> patch training -> transfer (Image/Frozen) -> fine-tuning (Image/Fine-tuned)
    and the baselines: Patch (patch-level segmentation) and Image/Scratch (random initialisation).

:func:`run_experiment` reads as the method does: the data prepared once
(:func:`patch2image.training.images.prepare_data`), then the phases in order
(:mod:`patch2image.training.phases`), each training its network and scoring its rows into the run
directory (:class:`patch2image.training.run_directory.RunDirectory`).

A run directory holds everything: config.yaml, the weights of each phase (.safetensors),
history.csv, metrics/<row>.json for the rows patch, frozen, finetuned and scratch, 8-bit
probability maps of the test images under predictions/, and run.json with wall times. Each step is
skipped on ``resume`` when its output exists, and an interrupted phase resumes from its checkpoint.
"""

from pathlib import Path

import yaml

from patch2image.atomic_files import read_yaml, write_text
from patch2image.config import PHASES, Config, config_from_dict
from patch2image.errors import UserError
from patch2image.evaluation import read_run_metrics
from patch2image.networks import planned_network
from patch2image.training import distributed
from patch2image.training.fit import resolve_device
from patch2image.training.images import prepare_data
from patch2image.training.phases import PHASE_STEPS
from patch2image.training.run_directory import RunDirectory


def run_experiment(
    config: Config, out_dir: str | Path, resume: bool = False, quiet: bool = False, device: str = "auto"
) -> dict[str, dict]:
    """Prepare the data, then run each phase the configuration names: train it, score its rows.

    Returns ``{row: evaluation result}`` of every scored row (:func:`patch2image.evaluation.read_run_metrics`).
    Under torchrun every process prepares the data and trains its share; rank 0 alone writes files.
    """
    out = Path(out_dir)
    device = resolve_device(device)
    planned_network(config.network, **config.network_arguments)  # refused before it runs or anything is written
    distributed.init_from_environment(device)
    stored_config = _check_run_dir(config, out, resume)
    run = RunDirectory(config, out, device, quiet, *prepare_data(config, out))
    if distributed.is_main() and not stored_config.exists():  # claimed only once the data is known to be good
        write_text(stored_config, yaml.safe_dump(config.to_dict(), sort_keys=False))
    for phase in PHASES:
        if phase in config.phases:
            for step in PHASE_STEPS[phase]:
                step(run)
    distributed.barrier()
    if not distributed.is_main():
        return {}
    run.score_second_observer()
    return read_run_metrics(out)


def _check_run_dir(config: Config, out: Path, resume: bool) -> Path:
    """The run's config.yaml, after checking that ``out`` is new, or resumable with this configuration."""
    stored = out / "config.yaml"
    exists = stored.exists()
    distributed.barrier()  # every process looks before rank 0 writes
    if exists:
        if not resume:
            raise UserError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
        # Read back through the configuration's own checks, so keys added since take their defaults.
        if config_from_dict(read_yaml(stored), str(stored)).to_dict() != config.to_dict():
            raise UserError(f"{out}: the run was made with another configuration; it cannot be resumed with this one")
    return stored
