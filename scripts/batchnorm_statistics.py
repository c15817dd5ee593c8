"""A run's weights scored with three sources of BatchNorm statistics, to tell bad weights from bad statistics.

    .venv/bin/python -m scripts.batchnorm_statistics runs/stare-dense-budget-fold1 scratch

For the phase's last epoch (``checkpoints/PHASE.safetensors``) and its kept epoch (the weights file), on the
run's test images (whole image, threshold 0.5, mean over images) and its validation loss:

- ``running``: the running statistics the phase left, the ones evaluation uses;
- ``recomputed``: their plain average over the training images with the same weights
  (``torch.optim.swa_utils.update_bn``, what ``batchnorm: precise`` does after each epoch);
- ``own``: each photograph normalised by its own statistics, as training mode does.

Then the first BatchNorm's running variance beside the recomputed one, and what is left of its starting
value 1 after the phase's batches at the network's momentum.
"""

import argparse
import copy
from pathlib import Path

import torch
from safetensors.torch import load_file

from patch2image.config import load_config
from patch2image.evaluation import evaluate_cases
from patch2image.inference import predict_image
from patch2image.networks import create_network
from patch2image.preprocessing import resize
from patch2image.training.fit import validation_loss
from patch2image.training.images import prepare_data
from patch2image.training.run_directory import WEIGHTS
from patch2image.weights import read_weights


def _batchnorms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def recomputed(model, train):
    model = copy.deepcopy(model)
    with torch.no_grad():
        torch.optim.swa_utils.update_bn((x[None] for x in train.training_data().x), model)
    return model.eval()


def own_statistics(model):
    model = copy.deepcopy(model)
    for module in _batchnorms(model):
        # without running statistics BatchNorm normalises by the batch's own, in evaluation mode too
        module.running_mean = module.running_var = None
        module.track_running_stats = False
    return model


def score(model, test, val) -> str:
    cases = [
        (name, resize(predict_image(model, image)[:h, :w], sample.original_size), sample.label, sample.fov)
        for name, image, (h, w), sample in zip(test.names, test.inputs, test.sizes, test.original, strict=True)
    ]
    mean = evaluate_cases(cases, 0.5)["whole"]["mean"]
    return f"AUC {mean['auc']:.4f}  Dice {mean['dice']:.4f}  validation loss {validation_loss(model, val, 1):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("phase", choices=("finetune", "scratch"))
    args = parser.parse_args()
    config = load_config(args.run / "config.yaml")
    train, val, test, _ = prepare_data(config, args.run)

    def network(state):
        model = create_network(config.network, **config.network_arguments)
        model.load_state_dict(state)
        return model.eval()

    checkpoint = load_file(args.run / "checkpoints" / f"{args.phase}.safetensors")
    last = network({k.removeprefix("model."): v for k, v in checkpoint.items() if k.startswith("model.")})
    kept = network(read_weights(args.run / f"{WEIGHTS[args.phase]}.safetensors")[0])
    for label, model in (("last epoch", last), ("kept epoch", kept)):
        variants = (("running", model), ("recomputed", recomputed(model, train)), ("own", own_statistics(model)))
        for source, variant in variants:
            print(f"{label:10s}  {source:10s}  {score(variant, test, val.training_data())}", flush=True)
    first, again = _batchnorms(last)[0], _batchnorms(recomputed(last, train))[0]
    batches = int(first.num_batches_tracked)
    print(
        f"first BatchNorm, last epoch: running variance {first.running_var.median():.4f} (median over channels), "
        f"recomputed {again.running_var.median():.4f}; after {batches} batches at momentum {first.momentum} "
        f"the starting value 1 still weighs {(1 - first.momentum) ** batches:.4f}"
    )


if __name__ == "__main__":
    main()
