"""The side-by-side benchmarks: every comparison agrees with its peer in quick mode, and the page is current."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import run  # noqa: E402
from common import benchmarks, missing  # noqa: E402


@pytest.mark.parametrize("bench", benchmarks(), ids=lambda b: b.__name__)
def test_quick_mode_agrees_with_the_peer(bench):
    if missing(bench):  # the peers are optional (the bench extra): not needed to test the book
        pytest.skip(f"not installed: {', '.join(missing(bench))}")
    rows = bench.run(quick=True)
    assert rows and all(r.comparison == bench.COMPARISON for r in rows)
    assert bench.SUMMARY.strip() and "TODO" not in bench.SUMMARY, "every comparison says what its numbers mean"


def test_the_page_is_current_with_the_scripts():
    results = json.loads(run.RESULTS.read_text())
    measured = {b["script"]: b for b in results["benchmarks"]}
    for bench in benchmarks():
        script = Path(bench.__file__).name
        assert script in measured, f"{script} was never measured: run python benchmarks/run.py --only {bench.__name__}"
        assert measured[script]["code_hash"] == run.code_hash(bench), (
            f"{script} changed after it was measured: run python benchmarks/run.py --only {bench.__name__}")
        assert measured[script]["summary"] == run.summary(bench), (
            f"{script}'s SUMMARY changed: run python benchmarks/run.py --page")
    assert run.PAGE.read_text() == run.page(results), "the page was not written from results.json"
    assert run.FIGURE.exists()
    compared = {r["comparison"] for r in results["rows"]}
    assert compared == {b.COMPARISON for b in benchmarks()}, "every comparison has rows on the page"
