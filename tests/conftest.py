from pathlib import Path

import pytest

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The real datasets beside the project (``../shared/datasets``), read-only."""
    if not DATASETS.is_dir():
        pytest.fail(f"{DATASETS} is missing: real-data tests need ../shared/datasets beside the project")
    return DATASETS
