"""The test run's last line accounts for every skipped test, whatever made it skip."""

from conftest import _SKIP_REASON, skip_summary


def test_one_line_names_every_reason_and_adds_up():
    skipped = {
        _SKIP_REASON: ["tests/test_a.py::test_one", "tests/test_b.py::test_two"],
        "chromium is not installed": ["tests/test_report.py::test_page"],
    }
    line = skip_summary(skipped)
    assert "\n" not in line
    assert line.startswith("3 skipped: 2 need the real datasets")
    assert "1 because chromium is not installed (tests/test_report.py)" in line
