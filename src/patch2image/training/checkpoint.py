"""What a training checkpoint must hold to be resumed, checked before any of it is used.

A checkpoint (``checkpoints/PHASE.safetensors``) holds the network's weights (``model.*``), the best epoch's
(``best.*``), the optimiser's state (``optimizer.I.NAME``) and, in its metadata, the training state as JSON
(``state``: epochs done, the best validation loss, the learning rate, the history rows). A file that is not
one, belongs to another network, or holds values of the wrong kind is refused with its path, the reason, and
how to start the phase over.
"""

import json
import math
from pathlib import Path

import torch
from torch import nn

from patch2image.errors import UserError
from patch2image.runtime.precision import LAYOUTS, PRECISIONS
from patch2image.weights import check_finite, check_state

START_OVER = "delete it to restart this phase (earlier phases are kept)"
ROW_NUMBERS = ("loss", "val_loss", "lr", "seconds")
OPTIMIZER_STATE = {"step": "scalar", "square_avg": "parameter", "acc_delta": "parameter"}
"""AdaDelta's state per parameter, and the shape of each entry."""


def checked_state(path: Path, metadata: dict[str, str]) -> dict:
    """The training state a checkpoint's metadata holds, when it has the shape training writes."""
    if "state" not in metadata:
        raise UserError(f"{path}: not a training checkpoint (its metadata holds no training state); {START_OVER}")
    try:
        state = json.loads(metadata["state"])
    except (ValueError, RecursionError):
        raise UserError(f"{path}: damaged checkpoint (its training state is not JSON); {START_OVER}") from None
    problem = _state_problem(state)
    if problem:
        raise UserError(f"{path}: damaged checkpoint (training state {problem}); {START_OVER}")
    return state


def check_tensors(path: Path, tensors: dict[str, torch.Tensor], model: nn.Module, optimizer) -> None:
    """Refuse tensors that are not finite, or do not fit the network being trained and its optimiser."""
    try:
        check_finite(tensors, str(path))
        for prefix in ("model.", "best."):
            part = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
            check_state(model, part, f"{prefix.rstrip('.')} weights")
    except UserError as exc:
        raise UserError(f"{path}: not a checkpoint of this phase's network ({exc}); {START_OVER}") from None
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    for key, value in tensors.items():
        if key.startswith(("model.", "best.")):
            continue
        problem = _optimizer_problem(key, value, parameters)
        if problem:
            raise UserError(f"{path}: damaged checkpoint ({key}: {problem}); {START_OVER}")


def _optimizer_problem(key: str, value: torch.Tensor, parameters: list) -> str | None:
    kind, _, rest = key.partition(".")
    index, _, name = rest.partition(".")
    if kind != "optimizer" or not index.isdigit() or name not in OPTIMIZER_STATE:
        return "not a tensor training writes"
    if int(index) >= len(parameters):
        return f"the network has {len(parameters)} parameters"
    expected = () if OPTIMIZER_STATE[name] == "scalar" else tuple(parameters[int(index)].shape)
    if tuple(value.shape) != expected or not value.is_floating_point():
        return f"shape {tuple(value.shape)} {value.dtype}, not {expected} floating point"
    return None


def _state_problem(state) -> str | None:
    """What is wrong with a training state, in words; None when nothing is."""
    if not isinstance(state, dict):
        return f"is a {type(state).__name__}, not an object"
    for key in ("epoch", "best_epoch", "bad_epochs"):
        if not _whole(state.get(key)):
            return f"{key}: {state.get(key)!r} is not a whole number of epochs, 0 or more"
    if state["best_epoch"] > state["epoch"]:
        return f"best_epoch {state['best_epoch']} is after epoch {state['epoch']}"
    if not _number(state.get("best_val")) or math.isnan(state["best_val"]):
        return f"best_val: {state.get('best_val')!r} is not a loss"
    if not isinstance(state.get("finished"), bool):
        return f"finished: {state.get('finished')!r} is not true or false"
    if not _number(state.get("lr")) or not 0 < state["lr"] < math.inf:
        return f"lr: {state.get('lr')!r} is not a positive learning rate"
    settings = state.get("settings")
    if settings is not None and not (
        isinstance(settings, dict) and settings.get("precision") in PRECISIONS and settings.get("layout") in LAYOUTS
    ):
        return f"settings: {settings!r} is not a precision and a layout"
    rows = state.get("rows")
    if not isinstance(rows, list):
        return f"rows: {rows!r} is not a list of epochs"
    for row in rows:
        if not (isinstance(row, dict) and isinstance(row.get("phase"), str) and _whole(row.get("epoch"))):
            return f"rows: {row!r} is not an epoch's row"
        if not all(_number(row.get(key)) for key in ROW_NUMBERS):
            return f"rows: {row!r} lacks a number among {', '.join(ROW_NUMBERS)}"
    return None


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
