"""SPEC section 4: binary cross-entropy plus a soft Dice term.

The reference code's form: mean BCE + 1 - Dice with smoothing 1, Dice over the whole batch.
Written here rather than taken from MONAI because MONAI's DiceCELoss smooths differently and
averages Dice per sample, which would not reproduce the reference.
"""

import torch
import torch.nn.functional as F


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Loss of logits (computed in float32 whatever the autocast dtype) against a 0/1 target."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    dice = (2 * (prob * target).sum() + smooth) / (prob.sum() + target.sum() + smooth)
    return bce + 1 - dice
