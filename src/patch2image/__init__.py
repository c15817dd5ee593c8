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
        ``.onnx`` file exported by ``patch2image export`` (run with onnxruntime unless ``backend`` says).
    network : str, optional
        The ``module:Class`` of a user network the weights were trained with: imported only when
        named here, never from the file.
    **options
        Passed to the segmenter: ``mode`` ("image" or "patch"), ``tta``, ``precision``, ``size``...; and
        ``backend`` ("torch", "onnxruntime", "openvino", "auto"; PyTorch for weights by default) and ``threads``.

    Returns
    -------
    segmenter : Segmenter
        Callable on an (H, W, 3) uint8 RGB array or an image path; returns float32 (H, W)
        probabilities at the photograph's size. ``.threshold`` and ``.metadata`` describe the model.
    """
    from patch2image.inference import Segmenter
    from patch2image.segment import load_segmentation_model

    backend, threads = options.pop("backend", None), options.pop("threads", None)
    precision = options.get("precision", "fp32")
    model, metadata, _ = load_segmentation_model(str(name_or_path), backend, threads, network, precision=precision)
    if not hasattr(model, "parameters"):  # not PyTorch's network: the runner applies the precision itself
        options.pop("precision", None)
    return Segmenter(model, metadata, **options)


def train(config: str | Path, out: str | Path, *, fold: int | None = None, resume: bool = False, quiet: bool = True):
    """Run an experiment's phases into the run directory ``out``; return ``{row: evaluation result}``."""
    from patch2image.config import load_config
    from patch2image.experiment import run_experiment

    return run_experiment(load_config(config, fold), out, resume=resume, quiet=quiet)


def evaluate(model, dataset: str | Path, split: str = "test", fold: int | None = None, threshold: float = 0.5):
    """Score a model (a name, weights file or :func:`load` result) on a dataset folder; an evaluation result."""
    from patch2image.data import open_dataset
    from patch2image.evaluation import evaluate_model

    return evaluate_model(model, open_dataset(dataset), split, fold, threshold)


__all__ = ["evaluate", "load", "train"]
