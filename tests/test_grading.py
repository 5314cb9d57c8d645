"""tools/grading.py: every chapter grades full marks with its solutions and zero without (recorded, current)."""
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import grading  # noqa: E402
from _book import notebooks  # noqa: E402


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_chapter_is_a_fair_assignment(path):
    nb = nbformat.read(path, as_version=4)
    assert grading.pairs(nb), "a chapter has exercises with self-checks"
    assert grading.problems(nb) == []


def tiny(selfcheck: str):
    cells = [new_markdown_cell("# Tiny"), new_code_cell("import math\nx = 2.0"),
             new_code_cell("### BEGIN SOLUTION\ny = math.sqrt(x)\n### END SOLUTION", metadata={"tags": ["solution"]}),
             new_code_cell(selfcheck, metadata={"tags": ["selfcheck"]})]
    return new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                              "language": "python"}})


@pytest.mark.parametrize("selfcheck, fair", [
    ("assert abs(y * y - x) < 1e-12", True),
    ("assert x == 2.0", False),                        # passes without the solution: grades nothing
    ("assert abs(y - 1.5) < 1e-12", False),            # fails even with the solution
])
def test_grading_catches_unfair_self_checks(tmp_path, selfcheck, fair):
    path = tmp_path / "tiny.ipynb"
    nb = tiny(selfcheck)
    nbformat.write(nb, path)
    grading.record(nb, grading.emulate(path))
    assert (grading.problems(nb) == []) is fair


def test_a_changed_self_check_makes_the_record_stale(tmp_path):
    path = tmp_path / "tiny.ipynb"
    nb = tiny("assert abs(y * y - x) < 1e-12")
    nbformat.write(nb, path)
    grading.record(nb, grading.emulate(path))
    nb.cells[3].source += "\nassert True"
    assert "changed since" in grading.problems(nb)[0]


def test_student_source_keeps_lines_outside_the_region():
    src = "a = 1\n    ### BEGIN SOLUTION\n    b = 2\n    ### END SOLUTION\nprint(a)"
    out = grading.student_source(src)
    assert out.startswith("a = 1\n    # YOUR CODE HERE\n    raise NotImplementedError") and out.endswith("print(a)")
    assert "b = 2" not in out


def test_the_stub_is_nbgraders():
    import assignment

    assert grading.STUB == assignment.CODE_STUB
