"""The training loop shared by patch training, fine-tuning and the scratch baseline.

The paper's training: AdaDelta with Keras' defaults, learning rate x0.2 after 5 epochs without
validation improvement (floor 1e-5), early stopping, and the weights with the best validation
loss kept. After every epoch the whole state goes to a safetensors checkpoint (written atomically),
and every epoch draws its randomness from (seed, epoch) alone, so a run killed at any point and
resumed ends with the same weights as a run never interrupted.
"""

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from patch2image.config import AugmentationConfig, PhaseConfig
from patch2image.errors import UserError
from patch2image.runtime.precision import autocast
from patch2image.training import distributed
from patch2image.training.augmentation import augment
from patch2image.training.auto_settings import TrainingSettings, candidates, choose_settings
from patch2image.training.checkpoint import START_OVER, check_tensors, checked_state
from patch2image.training.loss import bce_dice_loss
from patch2image.weights import read_safetensors, write_safetensors

LR_FACTOR, LR_PATIENCE, LR_FLOOR = 0.2, 5, 1e-5


@dataclass
class TrainingData:
    """Inputs (N, C, H, W) and 0/1 targets (N, 1, H, W), float32: patches, or whole images of one size."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)


EpochData = Callable[[torch.Generator], TrainingData]
"""A training set drawn afresh each epoch from the epoch's generator: patches cut from augmented images."""


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto" is the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: not a device; give auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is available on this machine")
        if (device.index or 0) >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def fit(
    model: torch.nn.Module,
    train: TrainingData | EpochData,
    val: TrainingData,
    phase: str,
    config: PhaseConfig,
    checkpoint: Path,
    *,
    seed: int = 0,
    augmentation: AugmentationConfig | None = None,
    precision: str = "auto",
    layout: str = "auto",
    quiet: bool = False,
    device: torch.device | str = "cpu",
) -> list[dict]:
    """Train ``model`` in place, resuming from ``checkpoint`` when it exists; return the epoch rows.

    ``train`` is a fixed set, augmented batch by batch with ``augmentation`` (none when it is None),
    or a function that draws each epoch's set from the epoch's generator, already augmented.
    On return the model holds the weights of the epoch with the best validation loss. Under
    torchrun the model is wrapped in DistributedDataParallel and rank 0 validates and checkpoints.

    ``precision`` ("fp32", "bf16" autocast or "auto") and ``layout`` ("channels_last", "contiguous"
    or "auto"): ``auto`` times a few steps of each candidate and keeps the fastest
    (:mod:`patch2image.training.auto_settings`); the choice is kept in the checkpoint, so a resumed
    phase trains as it started.

    A NaN or infinite loss (training or validation) stops training with a ``UserError`` naming the
    phase and the epoch; the checkpoint keeps the last good epoch. Ctrl-C propagates as it comes:
    an unfinished epoch is never saved, so that a resumed run draws the same randomness as one never
    interrupted, and the checkpoint holds the last finished epoch.
    """
    device = torch.device(device)
    # Denormal floats appear as the weights settle and slow CPU kernels by an order of magnitude.
    torch.set_flush_denormal(True)
    model.to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=config.lr, rho=0.95, eps=1e-7)
    state = {"epoch": 0, "best_val": math.inf, "best_epoch": 0, "bad_epochs": 0, "finished": False, "rows": []}
    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if checkpoint.exists():
        state, best = _load_checkpoint(checkpoint, model, optimizer, device)
    if state.get("settings"):
        settings = TrainingSettings(**state["settings"])
    else:
        settings = _choose(model, val, config.batch_size, precision, layout, device, phase)
        state["settings"] = {"precision": settings.precision, "layout": settings.layout}
    model.to(memory_format=settings.memory_format)
    trained = model
    if distributed.world_size() > 1:
        trained = torch.nn.parallel.DistributedDataParallel(model)

    epoch = state["epoch"]
    while not state["finished"] and epoch < config.epochs:
        epoch += 1
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        data = train(generator) if callable(train) else train
        loss = _train_epoch(
            trained, optimizer, data, config, generator, augmentation, settings, device, f"{phase} {epoch}", quiet
        )
        _check_finite(loss, "training", phase, epoch, state, checkpoint)
        if config.batchnorm == "precise":
            _recompute_batchnorm(model, data, config.batch_size, settings, device)
        val_loss = validation_loss(model, val, config.batch_size, settings, device) if distributed.is_main() else 0.0
        val_loss = distributed.broadcast_from_main(val_loss, device)
        _check_finite(val_loss, "validation", phase, epoch, state, checkpoint)
        lr = optimizer.param_groups[0]["lr"]
        row = {"phase": phase, "epoch": epoch, "loss": loss, "val_loss": val_loss, "lr": lr}
        row["seconds"] = round(time.perf_counter() - started, 3)
        row["settings"] = state["settings"]
        state["rows"].append(row)
        best = _schedule(state, model, optimizer, val_loss, epoch, config) or best
        state["epoch"] = epoch
        state["finished"] = state["finished"] or epoch >= config.epochs
        if distributed.is_main():
            _save_checkpoint(checkpoint, model, optimizer, best, state)
            remaining = (config.epochs - epoch) * row["seconds"]
            tqdm.write(
                f"{phase} epoch {epoch}/{config.epochs}: loss {loss:.4f} val_loss {val_loss:.4f} lr {lr:.2g} "
                f"{row['seconds']:.1f}s (at most {remaining / 60:.0f} min left)"
            )
            sys.stdout.flush()  # logs redirected to a file show every epoch as it ends
        distributed.barrier()
    model.load_state_dict(best)
    return state["rows"]


def _schedule(state: dict, model, optimizer, val_loss: float, epoch: int, config: PhaseConfig) -> dict | None:
    """After an epoch: the best weights so far (None: no better), the learning rate cut on a plateau, early stopping."""
    best = None
    if val_loss < state["best_val"]:
        state.update(best_val=val_loss, best_epoch=epoch, bad_epochs=0)
        best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        state["bad_epochs"] += 1
        if state["bad_epochs"] % LR_PATIENCE == 0:
            for group in optimizer.param_groups:
                group["lr"] = max(group["lr"] * LR_FACTOR, LR_FLOOR)
    if config.patience is not None and state["bad_epochs"] >= config.patience:
        state["finished"] = True
    return best


def _choose(model, val: TrainingData, batch_size: int, precision, layout, device, phase) -> TrainingSettings:
    """The settings to train with: measured on rank 0 (a batch of the validation set has the phase's shape)."""
    options = candidates(precision, layout)
    index = 0
    if len(options) > 1 and distributed.is_main():
        x, y = val.x[:batch_size], val.y[:batch_size]
        with distributed.alone():  # the timed steps' loss must not wait for the other processes
            chosen = choose_settings(model, x, y, precision, layout, device, phase, announce=tqdm.write)
        index = options.index(chosen)
    return options[int(distributed.broadcast_from_main(float(index), device))]


def _check_finite(loss: float, kind: str, phase: str, epoch: int, state: dict, checkpoint: Path) -> None:
    """Stop on a NaN or infinite loss: the weights are ruined, and the checkpoint still holds the last good ones."""
    if math.isfinite(loss):
        return
    kept = f"{checkpoint} keeps epoch {state['epoch']}" if state["epoch"] else "no epoch was saved"
    raise UserError(
        f"phase {phase}, epoch {epoch}: the {kind} loss is {loss}; stopped, {kept} (try a lower phases.{phase}.lr)"
    )


def _train_epoch(model, optimizer, data, config, generator, augmentation, settings, device, label, quiet) -> float:
    model.train()
    if config.batchnorm == "frozen":
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    batch_size = config.batch_size
    order = torch.randperm(len(data), generator=generator)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    total, count = 0.0, 0
    bar = tqdm(batches, desc=label, disable=quiet or not distributed.is_main(), leave=False, unit="batch")
    for index in bar:
        # Every process draws the whole batch and its augmentation, then keeps its own share.
        x, y = data.x[index], data.y[index]
        if augmentation is not None:
            x, y = augment(x, y, generator, augmentation)
        x = distributed.shard(x).to(device, memory_format=settings.memory_format)
        y = distributed.shard(y).to(device)
        with autocast(settings.precision, device):
            logits = model(x)
        loss = bce_dice_loss(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(index)
        count += len(index)
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / count


def _recompute_batchnorm(model, data: TrainingData, batch_size: int, settings: TrainingSettings, device) -> None:
    """BatchNorm's running statistics set to their plain average over ``data`` with the current weights."""
    batches = (
        data.x[start : start + batch_size].to(device, memory_format=settings.memory_format)
        for start in range(0, len(data), batch_size)
    )
    with autocast(settings.precision, device):
        torch.optim.swa_utils.update_bn(batches, model)


@torch.inference_mode()
def validation_loss(
    model, data: TrainingData, batch_size: int, settings: TrainingSettings | None = None, device="cpu"
) -> float:
    settings = settings or TrainingSettings()
    model.eval()
    total = 0.0
    for start in range(0, len(data), batch_size):
        x = data.x[start : start + batch_size].to(device, memory_format=settings.memory_format)
        with autocast(settings.precision, device):
            logits = model(x)
        y = data.y[start : start + batch_size].to(device)
        total += _local_loss(logits, y).item() * len(x)
    return total / len(data)


def _local_loss(logits, y):
    # Validation runs on rank 0 alone: its loss must not wait for the other processes.
    with distributed.alone():
        return bce_dice_loss(logits, y)


def _save_checkpoint(path: Path, model, optimizer, best: dict, state: dict) -> None:
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors |= {f"best.{k}": v.contiguous().cpu() for k, v in best.items()}
    for i, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        for key, value in optimizer.state.get(param, {}).items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{i}.{key}"] = value.detach().contiguous().cpu()
    state = state | {"lr": optimizer.param_groups[0]["lr"]}
    write_safetensors(path, tensors, {"state": json.dumps(state)})


def _load_checkpoint(path: Path, model, optimizer, device) -> tuple[dict, dict]:
    try:
        tensors, metadata = read_safetensors(path, str(device))
    except Exception as exc:  # any damage to the file means the same thing to the user
        raise UserError(f"{path}: unreadable checkpoint ({exc}); {START_OVER}") from None
    state = checked_state(path, metadata)
    check_tensors(path, tensors, model, optimizer)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    for i, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        entries = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"optimizer.{i}.")}
        if entries:
            optimizer.state[param] = entries
    for group in optimizer.param_groups:
        group["lr"] = state["lr"]
    return state, best
