"""The paper's loss: binary cross-entropy plus a soft Dice term.

The reference code's form: mean BCE + 1 - Dice with smoothing 1, Dice over the whole batch.
Written here rather than taken from MONAI because MONAI's DiceCELoss smooths differently and
averages Dice per sample, which would not reproduce the reference. The loss is computed from
sums, which are added across processes in distributed training so the batch Dice stays exact.
"""

import torch
import torch.nn.functional as F

from patch2image.training.distributed import sum_across_ranks


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Loss of logits (computed in float32 whatever the autocast dtype) against a 0/1 target."""
    logits = logits.float()
    prob = torch.sigmoid(logits)
    sums = torch.stack(
        [
            F.binary_cross_entropy_with_logits(logits, target, reduction="sum"),
            (prob * target).sum(),
            prob.sum(),
            target.sum(),
            torch.tensor(float(target.numel()), device=logits.device),
        ]
    )
    bce_sum, intersection, predicted, actual, count = sum_across_ranks(sums)
    dice = (2 * intersection + smooth) / (predicted + actual + smooth)
    return bce_sum / count + 1 - dice
