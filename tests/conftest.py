"""Where the real datasets are, and what happens without them.

Real-data tests take the ``datasets`` fixture: the folder named by ``PATCH2IMAGE_DATASETS``, by
default ``../shared/datasets`` beside the project. Without it they skip, and the summary says how
many and how to provide the data; with ``PATCH2IMAGE_REQUIRE_DATASETS=1`` (set by CI) a missing
folder fails them instead.
"""

import os
from pathlib import Path

import pytest

DATASETS = Path(os.environ.get("PATCH2IMAGE_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
REQUIRED = os.environ.get("PATCH2IMAGE_REQUIRE_DATASETS") == "1"
_SKIP_REASON = f"real datasets absent ({DATASETS})"
_skipped: list[str] = []


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


def pytest_runtest_logreport(report):
    if report.skipped and isinstance(report.longrepr, tuple) and _SKIP_REASON in report.longrepr[2]:
        _skipped.append(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        terminalreporter.write_line(
            f"{len(_skipped)} real-data tests skipped: no datasets at {DATASETS}. Put DRIVE, STARE, CHASE_DB1 and "
            "IDRiD there (docs/datasets.md) or set PATCH2IMAGE_DATASETS=DIR to run them.",
            yellow=True,
        )
