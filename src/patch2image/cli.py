"""patch2image: patch-to-image training and fast segmentation of retinal images.

One sub-command per job, each a thin call into the library.

Every ``UserError`` becomes one line on stderr and exit status 2; no traceback reaches the user.
"""

import argparse
import json
import sys
import warnings

from patch2image.data.datasets import DATASETS
from patch2image.errors import UserError


def _add_dataset_args(parser: argparse.ArgumentParser) -> None:
    """--kind and the --images/--labels/--masks form of a user's own data (data check, evaluate)."""
    parser.add_argument("--kind", choices=list(DATASETS))
    parser.add_argument("--images", help="folder of images (your own data)")
    parser.add_argument("--labels", help="folder of labels, paired with the images by name")
    parser.add_argument("--masks", help="folder of field-of-view masks (optional)")


def _open_dataset(args):
    from patch2image.data import folder_dataset, open_dataset

    if args.images:
        return folder_dataset(args.images, args.labels, args.masks)
    if args.labels or args.masks:
        raise UserError("--labels and --masks go with --images DIR")
    if not args.path:
        raise UserError("give a dataset PATH or --images DIR --labels DIR")
    return open_dataset(args.path, args.kind)


def cmd_nets(args) -> int:
    from patch2image.networks import NETWORKS, count_parameters, create_network

    rows = [{"name": n, "parameters": count_parameters(create_network(n))} for n in NETWORKS]
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print(f"{row['name']:<10} {row['parameters']:>10,} parameters")
    return 0


def cmd_models(args) -> int:
    from patch2image.weights import shipped_models

    models = shipped_models()
    if args.json:
        print(json.dumps([{"name": name, **metadata} for name, metadata in models]))
        return 0
    if not models:
        print("no shipped models in this installation")
    for name, metadata in models:
        metrics = metadata.get("metrics", {}).get("whole", {})
        scores = " ".join(f"{k} {metrics[k]:.4f}" for k in ("auc", "dice") if k in metrics)
        print(
            f"{name:<18} {metadata.get('network', '?'):<10} {metadata.get('dataset', '?'):<8} "
            f"{metadata.get('protocol', '?'):<8} {scores}"
        )
    return 0


def cmd_demo(args) -> int:
    """The main job: segment scikit-image's sample fundus photograph with a shipped model."""
    from pathlib import Path

    import cv2
    from skimage.data import retina

    from patch2image.weights import shipped_models

    shipped = [name for name, _ in shipped_models()]
    model = args.model or next((m for m in ("drive-mini-unet", "drive-light") if m in shipped), None)
    if model is None:
        raise UserError("no shipped model in this installation; train one with `patch2image train`")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photo = out / "retina.png"
    cv2.imwrite(str(photo), retina()[..., ::-1])
    print(f"segmenting scikit-image's sample fundus photograph ({photo}) with {model}")
    code = main(["segment", str(photo), "--model", model, "--out", str(out)])
    if code == 0:
        print(f"wrote {out}/retina_prob.png, retina_mask.png and retina_overlay.png")
    return code


def cmd_data_check(args) -> int:
    from patch2image.data import check_dataset

    report, problems = check_dataset(_open_dataset(args))
    print(report)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def cmd_train(args) -> int:
    from patch2image.config import load_config
    from patch2image.experiment import format_results, run_experiment

    config = load_config(args.config, args.fold)
    summary = run_experiment(config, args.out, args.resume, args.quiet, args.device)
    if not summary:  # a torchrun process other than rank 0
        return 0
    threshold = config.evaluation.threshold
    scored = "thresholds chosen on validation images" if threshold == "validation" else f"threshold {threshold:g}"
    print(f"results in {args.out} (whole image, {scored}, mean over test images)")
    print(format_results(summary))
    return 0


def cmd_evaluate(args) -> int:
    from patch2image.evaluation import PROTOCOLS, evaluate_cases, read_evaluation, write_evaluation
    from patch2image.experiment import ROWS, TABLE_METRICS

    if args.run_dir:
        from pathlib import Path

        rows = {
            row: read_evaluation(p)
            for row in [*ROWS, "second_observer"]
            if (p := Path(args.run_dir) / "metrics" / f"{row}.json").exists()
        }
        if not rows:
            raise UserError(f"{args.run_dir}: no metrics/<row>.json; is it a run directory of patch2image train?")
        if args.json:
            from patch2image.files import write_text

            write_text(args.json, json.dumps(rows, indent=1, default=lambda v: None))
    else:
        from patch2image.data import load_sample
        from patch2image.inference import TRAINING_SIZE, Segmenter
        from patch2image.weights import load_model

        if not args.model:
            raise UserError("give a RUN_DIR, or --model NAME_OR_WEIGHTS with a dataset")
        model, metadata = load_model(args.model, args.network)
        args.path = args.path or args.dataset
        dataset = _open_dataset(args)
        split = "all" if dataset.kind == "folder" and not dataset.folds() and args.split == "test" else args.split
        files = dataset.files(split, fold=args.fold)
        if not files:
            raise UserError(dataset.problems[0] if dataset.problems else f"{dataset.root}: no {split} images")
        # Same dataset as in training: its training size exactly (as training scores its test images),
        # not the camera-independent scale rule, nor the 2% aspect-ratio tolerance, which STARE (2.1%)
        # and CHASE_DB1 (4.3%) exceed.
        size = TRAINING_SIZE if metadata.get("dataset") == dataset.kind and metadata.get("input_size") else None
        segmenter = Segmenter(model, metadata, mode=args.mode, stride=args.stride, size=size)
        samples = (load_sample(f) for f in files)
        result = evaluate_cases(((s.name, segmenter(s.image), s.label, s.fov) for s in samples), args.threshold)
        if args.json:
            write_evaluation(result, args.json)
        rows = {"model": result}
    for protocol in PROTOCOLS:
        print(f"{protocol} ({'whole image' if protocol == 'whole' else 'inside the field of view'}), mean over images")
        print(f"{'row':<18}" + "".join(f"{m:>9}" for m in TABLE_METRICS))
        for row, result in rows.items():
            print(f"{row:<18}" + "".join(f"{result[protocol]['mean'][m]:>9.4f}" for m in TABLE_METRICS))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="patch2image", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    nets = commands.add_parser("nets", help="list the registered networks and their parameter counts")
    nets.add_argument("--json", action="store_true")
    nets.set_defaults(run=cmd_nets)

    demo = commands.add_parser("demo", help="segment a sample fundus photograph with a shipped model")
    demo.add_argument("--out", default="runs/demo", help="folder for the photograph and its segmentation")
    demo.add_argument("--model", help="a shipped model's name or a weights file (default: the best shipped)")
    demo.set_defaults(run=cmd_demo)

    models = commands.add_parser("models", help="list the trained models shipped with the package")
    models.add_argument("--json", action="store_true")
    models.set_defaults(run=cmd_models)

    train = commands.add_parser("train", help="run an experiment: patch training, transfer, fine-tuning, scratch")
    train.add_argument("config", help="experiment configuration (YAML), e.g. configs/smoke.yaml")
    train.add_argument("--out", required=True, help="run directory for weights, history, metrics")
    train.add_argument("--fold", type=int, help="the cross-validation fold to run (STARE 1-5, CHASE_DB1 1-4)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    train.add_argument("--quiet", action="store_true", help="one log line per epoch instead of progress bars")
    train.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda or cuda:N")
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("evaluate", help="score a run directory, or a model on a dataset")
    evaluate.add_argument("run_dir", nargs="?", help="a run directory of `patch2image train`")
    evaluate.add_argument("--model", help="a shipped model's name or a .safetensors file")
    evaluate.add_argument(
        "--network",
        metavar="MODULE:CLASS",
        help="a user network module:Class the weights were trained with (imported only when named here)",
    )
    evaluate.add_argument("--dataset", help="dataset root (DRIVE, STARE, CHASE_DB1, IDRiD or a folder)")
    _add_dataset_args(evaluate)  # with --images, all images are test images
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    evaluate.add_argument("--fold", type=int, help="STARE and CHASE_DB1: the fold whose split to score")
    evaluate.add_argument("--mode", default="image", choices=["image", "patch"])
    evaluate.add_argument("--stride", type=int, default=2, help="patch mode: distance between patches")
    evaluate.add_argument("--threshold", type=float, default=0.5)
    evaluate.add_argument("--json", help="write the metrics here (and the per-image CSV beside it)")
    evaluate.set_defaults(run=cmd_evaluate, path=None)

    from patch2image.export import add_export_arguments
    from patch2image.report import add_report_arguments, cmd_report
    from patch2image.segment import add_segment_arguments

    add_segment_arguments(commands.add_parser("segment", help="segment photographs: probability maps, masks, overlays"))
    add_export_arguments(commands.add_parser("export", help="export a model as ONNX with dynamic height and width"))

    report = commands.add_parser("report", help="the paper's tables and figures from run directories")
    add_report_arguments(report)
    report.set_defaults(run=cmd_report)

    data = commands.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="check a dataset's layout and files")
    check.add_argument("path", nargs="?", help="dataset root (DRIVE, STARE, CHASE_DB1, IDRiD or a folder)")
    _add_dataset_args(check)
    check.set_defaults(run=cmd_data_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)
    try:
        return args.run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused: a path that is a file, no permission, a full disk
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = "; rerun with --resume to continue from the last finished epoch" if args.command == "train" else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
