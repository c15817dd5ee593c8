"""patch2image: patch-to-image training of fully convolutional networks for retinal image segmentation.

From Python::

    import patch2image

    model = patch2image.load("drive-mini-unet")  # a shipped model, a .safetensors or an .onnx file
    prob = model("photo.jpg")                    # or an (H, W, 3) uint8 RGB array -> (H, W) float32 in [0, 1]
    mask = prob >= model.threshold
    print(prob.looks_like_fundus)                # False (prob.fundus.warning says why) for a portrait, say
    print(model.metadata.dataset, model.metadata.metrics["whole"]["dice"])

    rows = patch2image.train("configs/drive-light.yaml", "runs/drive-light")  # the four phases, scored
    result = patch2image.evaluate("runs/drive-light/finetuned.safetensors", "../shared/datasets/DRIVE")

The command line (``patch2image --help``) calls these same functions.
"""

from pathlib import Path


def load(name_or_path: str | Path, network: str | None = None, **options):
    """A model ready to segment photographs: :class:`patch2image.inference.Segmenter`.

    Parameters
    ----------
    name_or_path : str or Path
        A shipped model's name (``patch2image models``), a ``.safetensors`` weights file, or an
        ``.onnx`` file exported by ``patch2image export``.
    network : str, optional
        The ``module:Class`` of a user network the weights were trained with: imported only when
        named here, never from the file.
    **options
        The command line's options, with its defaults: ``backend`` ("auto", the fastest of "torch",
        "onnxruntime" and "openvino" on this machine), ``precision`` ("auto": float32 or bfloat16,
        whichever is faster; "fp32" for float32 only), ``threads``; and the segmenter's: ``mode``
        ("image" or "patch"), ``stride``, ``tta``, ``size``, ``inside_fov``, ``largest_region``...

    Returns
    -------
    segmenter : Segmenter
        Callable on an (H, W, 3) uint8 RGB array or an image path; returns float32 (H, W)
        probabilities at the photograph's size, as ``patch2image segment`` writes them.
        ``.mask(photo)`` is its mask, ``.threshold`` and ``.metadata`` describe the model.
    """
    from patch2image.inference import load_segmenter

    return load_segmenter(name_or_path, network=network, **options)


def train(config: str | Path, out: str | Path, *, fold: int | None = None, resume: bool = False, quiet: bool = True):
    """Run an experiment's phases into the run directory ``out``; return ``{row: evaluation result}``."""
    from patch2image.config import load_config
    from patch2image.experiment import run_experiment

    return run_experiment(load_config(config, fold), out, resume=resume, quiet=quiet)


def evaluate(model, dataset: str | Path, split: str = "test", fold: int | None = None, threshold: float | None = None):
    """Score a model (a name, weights file or :func:`load` result) on a dataset folder; an evaluation result.

    ``threshold``: the mask threshold, by default the model's (the one it was scored at, else 0.5).
    """
    from patch2image.data import open_dataset
    from patch2image.evaluation import evaluate_model

    return evaluate_model(model, open_dataset(dataset), split, fold, threshold)


__all__ = ["evaluate", "load", "train"]
