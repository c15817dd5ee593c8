"""The paper's phases, one function each, in the order they run.

1. patch database (:mod:`patch2image.patch_database`)
2. patch training: the network trained on patches; row Patch
3. transfer: the patch-trained weights applied to whole images as they are; row Image/Frozen
4. fine-tuning: the transferred weights trained further on whole images; row Image/Fine-tuned
and the baseline, scratch training: whole images from random weights; row Image/Scratch.
"""

import torch

from patch2image.config import Config
from patch2image.inference import predict_image, predict_patches
from patch2image.patch_database import patch_database
from patch2image.training.augmentation import augment
from patch2image.training.fit import TrainingData
from patch2image.training.images import PreparedImages
from patch2image.training.run_directory import RunDirectory


def patch_training(run: RunDirectory) -> None:
    """Phases 1-2: the patch database, and the network trained on its patches; row Patch."""
    config = run.config
    if config.augmentation.level == "image":
        model = run.trained("patch", _augmented_patches(run.train, config), None)
    else:
        model = run.trained("patch", run.train.patches(config), config.augmentation)
    run.score("patch", lambda g: predict_patches(model, g, config.patches.size, config.evaluation.patch_stride))


def transfer(run: RunDirectory) -> None:
    """Phase 3: the patch-trained network applied to whole images as it is; row Image/Frozen.

    ``patch.safetensors`` is written here, with this row's threshold: a segmenter uses it on whole images.
    """
    model = run.network("patch")
    run.keep("patch", run.score("frozen", lambda g: predict_image(model, g)))


def fine_tune(run: RunDirectory) -> None:
    """Phase 4: the transferred weights trained further on whole images; row Image/Fine-tuned."""
    model = run.trained("finetune", run.train.training_data(), run.config.augmentation, start_from="patch")
    run.keep("finetune", run.score("finetuned", lambda g: predict_image(model, g)))


def scratch_training(run: RunDirectory) -> None:
    """The baseline: the same network trained on whole images from random weights; row Image/Scratch."""
    model = run.trained("scratch", run.train.training_data(), run.config.augmentation)
    run.keep("scratch", run.score("scratch", lambda g: predict_image(model, g)))


PHASE_STEPS = {"patch": (patch_training, transfer), "finetune": (fine_tune,), "scratch": (scratch_training,)}
"""What each phase a configuration names (``phases:``) runs, in order."""


def _augmented_patches(images: PreparedImages, config: Config):
    """Each epoch's patches, cut from whole training images augmented afresh (the reference code's order)."""
    whole = images.training_data()

    def epoch_patches(generator: torch.Generator) -> TrainingData:
        x, y = augment(whole.x, whole.y, generator, config.augmentation)
        seed = int(torch.randint(2**31, (1,), generator=generator))  # balanced sampling: new centres each epoch
        return TrainingData(*patch_database(x.numpy(), y[:, 0].numpy(), config.patches, seed))

    return epoch_patches
