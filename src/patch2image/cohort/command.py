"""``patch2image cohort INPUT --out DIR``: the command line's half of a cohort run."""

import argparse
import os
import sys
from pathlib import Path

from patch2image.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from patch2image.cohort.batches import BATCH_ROWS, BATCH_SECONDS
    from patch2image.runtime.backends import CHOICES, PRECISION_CHOICES

    parser.add_argument(
        "input", metavar="INPUT",
        help="a folder (searched with its subfolders), a glob pattern in quotes, or a manifest (.csv or .parquet) "
        "with a 'path' column; a manifest's other columns are carried into the results",
    )  # fmt: skip
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for results.parquet, its batches and masks")
    parser.add_argument("--model", metavar="NAME_OR_WEIGHTS", help="vessel model (default: the package's default)")
    parser.add_argument("--disc-model", metavar="NAME_OR_WEIGHTS", help="also segment the optic disc (e.g. optic-disc)")
    parser.add_argument(
        "--scheduler", metavar="tcp://HOST:8786",
        help="a running Dask cluster's scheduler (default: a local cluster on this machine)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, metavar="N", help="local cluster: worker processes (default: one per CPU core)"
    )
    parser.add_argument("--measure", action="store_true", help="add the vessel measurements to each row")
    parser.add_argument("--microns-per-pixel", type=float, help="--measure: the photographs' scale, when known")
    parser.add_argument("--fov-degrees", type=float, help="--measure: the camera's field of view in degrees (e.g. 45)")
    parser.add_argument(
        "--save-masks", action="store_true", help="also write each probability map and mask under DIR/masks/"
    )
    parser.add_argument("--csv", action="store_true", help="also write the results as results.csv")
    parser.add_argument(
        "--threshold", type=float, help="vessel mask threshold on the probability (default: the model's)"
    )
    parser.add_argument("--tta", action="store_true", help="average the predictions of the photograph and its flips")
    parser.add_argument("--outside-fov", action="store_true", help="keep what the network finds outside the eye")
    parser.add_argument("--backend", choices=CHOICES, default="auto", help="what runs the network (default auto)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto", help="as segment's (default auto)")
    parser.add_argument(
        "--retry-failed", action="store_true", help="also redo the photographs an earlier run marked as failed"
    )
    parser.add_argument(
        "--batch-size", type=int, default=BATCH_ROWS, metavar="ROWS",
        help=f"rows written to disk at once (or every {BATCH_SECONDS:g} s): a crash loses at most these "
        f"(default {BATCH_ROWS})",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")


def check_arguments(args: argparse.Namespace) -> None:
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise UserError(f"--threshold {args.threshold}: must be between 0 and 1")
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers}: must be at least 1")
    if args.workers is not None and args.scheduler:
        raise UserError("--workers sizes the local cluster; with --scheduler, the cluster's own workers run")
    for flag, value in (("--microns-per-pixel", args.microns_per_pixel), ("--fov-degrees", args.fov_degrees)):
        if value is not None and not value > 0:
            raise UserError(f"{flag} {value}: must be positive")
    if (args.microns_per_pixel or args.fov_degrees) and not args.measure:
        raise UserError("--microns-per-pixel and --fov-degrees scale the measurements; add --measure")


def cmd_cohort(args: argparse.Namespace) -> int:
    """0 when every photograph has its row with status ok; 1 when some failed (their rows say why)."""
    from patch2image.cohort.inputs import read_inputs
    from patch2image.cohort.progress import duration
    from patch2image.cohort.run import dask_client, run_cohort
    from patch2image.cohort.store import check_inputs_are_not_outputs
    from patch2image.cohort.work import Settings, prepared
    from patch2image.segment import Terminated
    from patch2image.weights import default_model

    check_arguments(args)
    inputs = read_inputs(args.input, args.out)
    check_inputs_are_not_outputs(inputs, Path(args.out))
    model = args.model or default_model()
    if model is None:
        raise UserError("no shipped model in this installation; name one with --model")
    workers = args.workers or (None if args.scheduler else os.cpu_count() or 1)
    settings = prepared(
        Settings(
            model=model, disc_model=args.disc_model, backend=args.backend, precision=args.precision,
            threshold=args.threshold, tta=args.tta, inside_fov=not args.outside_fov, measure=args.measure,
            save_masks=args.save_masks, out_dir=args.out, microns_per_pixel=args.microns_per_pixel,
            fov_degrees=args.fov_degrees, threads=max(1, (os.cpu_count() or 1) // workers) if workers else None,
        )
    )  # fmt: skip
    where = args.scheduler or f"a local cluster of {workers} worker processes"
    if not args.quiet:
        print(f"cohort: {inputs.num_rows} photographs, on {where}", flush=True)
    try:
        with dask_client(args.scheduler, workers) as client:
            summary = run_cohort(
                inputs, args.out, settings, client, retry_failed=args.retry_failed, csv=args.csv,
                show_progress=not args.quiet, batch_rows=args.batch_size,
            )  # fmt: skip
    except (Terminated, KeyboardInterrupt) as exc:
        print("stopped; the rows written so far are kept: rerun the same command to do the rest", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    rate = summary.done_now / summary.seconds if summary.seconds else 0
    failed = f"; {summary.failed} failed (their status says why)" if summary.failed else ""
    print(
        f"cohort: {summary.done_now} photographs segmented in {duration(summary.seconds)} ({rate:.2f} per second), "
        f"{summary.done_before} done by an earlier run{failed}; results in {summary.written[0]}"
    )
    return 1 if summary.failed else 0
