"""Where the real datasets are, and what happens without them.

Real-data tests take the ``datasets`` fixture: the folder named by ``PATCH2IMAGE_DATASETS``, by
default ``../shared/datasets`` beside the project. Without it they skip; with
``PATCH2IMAGE_REQUIRE_DATASETS=1`` (set by CI) a missing folder fails them instead. The summary ends
with one line that accounts for every skip, the missing datasets and each other reason.
"""

import os
from pathlib import Path

import pytest

DATASETS = Path(os.environ.get("PATCH2IMAGE_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
REQUIRED = os.environ.get("PATCH2IMAGE_REQUIRE_DATASETS") == "1"
_SKIP_REASON = f"real datasets absent ({DATASETS})"
_skipped: dict[str, list[str]] = {}
"""Why a test skipped -> the skipped tests' ids (a module skipped whole counts once, as pytest counts it)."""


def contrasted_light(photo, metadata: dict, path: Path) -> str:
    """A Light whose last layer spreads its logits over (0, 1) on ``photo``, saved at ``path``.

    Random-init Light gives probabilities within 0.01 of 0.5, which 8-bit outputs would round alike even if two
    ways of segmenting computed different things; these differ visibly.
    """
    import torch

    from patch2image.inference import Segmenter
    from patch2image.networks import create_network
    from patch2image.weights import save_weights

    torch.manual_seed(0)
    network = create_network("light").eval()
    grey = Segmenter(None, metadata).prepare(photo)
    last = network.body[-1]
    with torch.no_grad():
        logits = network(torch.from_numpy(grey)[None, None])
        gain = 2 / float(logits.std())
        last.bias.copy_((last.bias - logits.mean()) * gain)
        last.weight.mul_(gain)
    save_weights(path, network, metadata)
    return str(path)


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The real datasets (DRIVE, STARE, CHASE_DB1, IDRiD in their official layouts), read-only."""
    if not DATASETS.is_dir():
        if REQUIRED:
            pytest.fail(f"{DATASETS} is missing and PATCH2IMAGE_REQUIRE_DATASETS=1")
        pytest.skip(_SKIP_REASON)
    return DATASETS


@pytest.fixture(scope="session", autouse=True)
def _own_cache_folder(tmp_path_factory):
    """patch2image's cache folder (ONNX exports, --backend auto's choices) in the session's temporary folder:
    tests neither read nor fill the user's, so a choice or an export made earlier cannot change a result."""
    if "PATCH2IMAGE_CACHE_DIR" not in os.environ:
        os.environ["PATCH2IMAGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("patch2image-cache"))
    yield


def _record_skip(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and isinstance(report.longrepr, tuple):
        reason = report.longrepr[2].removeprefix("Skipped: ")
        _skipped.setdefault(reason, []).append(report.nodeid)


pytest_runtest_logreport = pytest_collectreport = _record_skip


def skip_summary(skipped: dict[str, list[str]]) -> str:
    """One line: how many tests skipped, and why each of them did."""
    total = sum(len(ids) for ids in skipped.values())
    parts = []
    if _SKIP_REASON in skipped:
        parts.append(
            f"{len(skipped[_SKIP_REASON])} need the real datasets at {DATASETS} (put DRIVE, STARE, CHASE_DB1, IDRiD "
            "and LES-AV there, docs/datasets.md, or set PATCH2IMAGE_DATASETS=DIR)"
        )
    for reason, ids in sorted(skipped.items(), key=lambda item: -len(item[1])):
        if reason != _SKIP_REASON:
            files = ", ".join(sorted({node.split("::")[0] for node in ids}))
            parts.append(f"{len(ids)} because {reason} ({files})")
    return f"{total} skipped: " + "; ".join(parts)


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        terminalreporter.write_line(skip_summary(_skipped), yellow=True)
