"""Assignments: tools/assignment.py turns a chapter into nbgrader instructor and student notebooks.

The fixture tests/data/tiny_chapter.ipynb is a chapter in miniature (setup cell, claim,
three exercises: two code solutions with self-checks, one with hidden tests, and one answer
in prose) that autogrades in seconds; every chapter of the book goes through
`nbgrader generate_assignment`, and one real chapter through a full autograde (marked slow).
No answer, code or prose, survives in a student version; the feedback pages typeset math
with the environment's own MathJax (no network).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import assignment  # noqa: E402
from _book import notebooks  # noqa: E402

FIXTURE = ROOT / "tests" / "data" / "tiny_chapter.ipynb"
NAME = "tiny"


def read(path):
    return nbformat.read(path, as_version=4)


def by_grade_id(nb) -> dict:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}


def kind(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "").split("-")[0] or None


def without_regions(source: str, begin: str, end: str, stub: str = "") -> str:
    """``source`` with each begin...end region (marker lines included) replaced by ``stub``
    indented like the begin marker: what the student version must contain."""
    out, inside = [], False
    for line in source.split("\n"):
        if begin in line:
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + stub_line for stub_line in stub.split("\n")] if stub else []
        elif end in line:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def region_lines(source: str, begin: str, end: str) -> list[str]:
    """The stripped non-blank lines strictly inside begin...end regions."""
    lines, inside = [], False
    for line in source.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


def answer_lines(instructor) -> list[str]:
    """Every line of answer text in the instructor version: code between the solution markers,
    hidden tests, and each line of every answer in prose."""
    lines = []
    for cell in instructor.cells:
        lines += region_lines(cell.source, "BEGIN SOLUTION", "END SOLUTION")
        lines += region_lines(cell.source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
        if kind(cell) == "answer":
            lines += [line.strip() for line in cell.source.splitlines() if line.strip()]
    return lines


def check_student(instructor, student) -> None:
    """The student version is the instructor version minus solutions, answers, hidden tests and outputs."""
    assert [c.cell_type for c in student.cells] == [c.cell_type for c in instructor.cells]
    text = nbformat.writes(student)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    # No sentence of an answer in prose anywhere (code lines are checked cell by cell below: a line
    # such as `for T in HORIZONS:` may well stand in the chapter's own code too).
    prose = [line.strip() for c in instructor.cells if kind(c) == "answer" for line in c.source.splitlines()]
    survived = [line for line in prose if len(line) > 3 and line in text]
    assert not survived, f"answer text in the student version: {survived[:5]}"
    for ins, stu in zip(instructor.cells, student.cells):
        if stu.cell_type == "code":
            assert stu.outputs == [] and stu.execution_count is None, "outputs are cleared"
        assert kind(stu) == kind(ins)
        if kind(ins) == "solution":
            assert stu.source == without_regions(ins.source, "BEGIN SOLUTION", "END SOLUTION", assignment.CODE_STUB)
            assert 'raise NotImplementedError("' in stu.source
            assert not set(region_lines(ins.source, "BEGIN SOLUTION", "END SOLUTION")) & {
                line.strip() for line in stu.source.splitlines()}, "no solution line survives"
        elif kind(ins) == "selfcheck":
            assert stu.source == without_regions(ins.source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
            assert stu.metadata["nbgrader"]["points"] == assignment.POINTS
        elif kind(ins) == "answer":
            assert stu.source == assignment.TEXT_STUB, "an answer in prose is replaced as a whole"
            assert stu.metadata["nbgrader"]["points"] == ins.metadata["nbgrader"]["points"]
        else:
            assert stu.source == ins.source


# --------------------------------------------------------------------------- the instructor version

def test_make_instructor_adds_nbgrader_metadata():
    chapter = read(FIXTURE)
    before = nbformat.writes(chapter)
    nb = assignment.make_instructor(chapter, "tiny_chapter.ipynb")
    assert nbformat.writes(chapter) == before, "the chapter itself is not modified"
    assert nbformat.writes(assignment.make_instructor(chapter)) == nbformat.writes(nb), "deterministic"
    meta = [c.metadata.get("nbgrader") for c in nb.cells]
    assert [m["grade_id"] for m in meta if m] == [
        "readonly-1", "readonly-2", "readonly-3", "solution-1", "selfcheck-1", "solution-2", "selfcheck-2",
        "answer-1"]
    for cell, m in zip(nb.cells, meta):
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "markdown" and "solution" in tags:
            assert m == {"grade": True, "solution": True, "locked": False, "points": assignment.MANUAL_POINTS,
                         "grade_id": m["grade_id"], "schema_version": 3}, "an answer in prose: graded by hand"
        elif cell.cell_type == "markdown":
            assert m is None
        elif "solution" in tags:
            assert m == {"grade": False, "solution": True, "locked": False, "grade_id": m["grade_id"],
                         "schema_version": 3}
        elif "selfcheck" in tags:
            assert m == {"grade": True, "solution": False, "locked": True, "points": 1,
                         "grade_id": m["grade_id"], "schema_version": 3}
        else:
            assert m == {"grade": False, "solution": False, "locked": True, "grade_id": m["grade_id"],
                         "schema_version": 3}
    assert [c.source for c in nb.cells] == [c.source for c in chapter.cells]
    assert [c.get("outputs") for c in nb.cells] == [c.get("outputs") for c in chapter.cells], "outputs kept"


def _tagged(nb, tag):
    return next(i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", []))


def _untag(nb, tag):
    for cell in nb.cells:
        cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t != tag]


def _set(nb, i, source):
    nb.cells[i].source = source


BROKEN = {
    "no solution cell": (lambda nb: _untag(nb, "solution"), "no cell is tagged 'solution'", None),
    "no self-check": (lambda nb: _untag(nb, "selfcheck"), "no cell is tagged 'selfcheck'", None),
    "solution without markers": (
        lambda nb: _set(nb, _tagged(nb, "solution"), "def grad_quadratic(A, b, x):\n    return A @ x - b"),
        "a 'solution' cell without '### BEGIN SOLUTION'", 7),
    "markers in prose": (
        lambda nb: _set(nb, 6, "## Exercises\n\nAnswers go between\n### BEGIN SOLUTION\nand\n### END SOLUTION"),
        "solution markers outside a 'solution' cell", 6),
    "begin without end": (
        lambda nb: _set(nb, 10, "### BEGIN SOLUTION\ndef smoothness(A):\n    return 2.0"),
        "'BEGIN SOLUTION' without 'END SOLUTION'", 10),
    "hidden tests in an ordinary cell": (
        lambda nb: _set(nb, 3, "### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS"),
        "hidden-test markers outside a 'selfcheck' cell", 3),
    "both tags": (
        lambda nb: nb.cells[8].metadata["tags"].append("solution"), "tagged both 'solution' and 'selfcheck'", 8),
    "markers in an answer in prose": (
        lambda nb: _set(nb, _answer(nb), "### BEGIN SOLUTION\nBecause.\n### END SOLUTION"),
        "an answer in prose is the whole cell: remove the solution markers", 13),
    "a heading in an answer in prose": (
        lambda nb: _set(nb, _answer(nb), "## Answer\n\nBecause."), "no headings in an answer in prose", 13),
    "an empty answer in prose": (lambda nb: _set(nb, _answer(nb), "  \n"), "an empty answer in prose", 13),
    "a self-check in Markdown": (
        lambda nb: nb.cells[12].metadata.setdefault("tags", []).append("selfcheck"),
        "only code cells can be tagged 'selfcheck'", 12),
}


def _answer(nb):
    return next(i for i, c in enumerate(nb.cells)
                if c.cell_type == "markdown" and "solution" in c.metadata.get("tags", []))


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_chapter_gets_a_clear_error(case):
    breaks, message, cell = BROKEN[case]
    nb = read(FIXTURE)
    breaks(nb)
    with pytest.raises(assignment.AssignmentError) as err:
        assignment.make_instructor(nb, "chapters/part/broken.ipynb")
    text = str(err.value)
    assert "chapters/part/broken.ipynb cannot become an assignment" in text and message in text
    if cell is not None:
        assert f"cell {cell} (" in text


def test_command_line_reports_a_broken_chapter(tmp_path, capsys):
    nb = read(FIXTURE)
    _untag(nb, "selfcheck")
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    assert assignment.main([str(path), "--course", str(tmp_path / "course")]) == 1
    assert "no cell is tagged 'selfcheck'" in capsys.readouterr().err
    assert not (tmp_path / "course").exists(), "nothing is written for a broken chapter"


def test_command_line_help():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "assignment.py"), "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "usage" in out.stdout and "--course" in out.stdout


@pytest.mark.parametrize("chapters, name, message", [
    ([FIXTURE, FIXTURE], "twice", "share a file name"),
    ([FIXTURE, ROOT / "other" / "x.ipynb"], None, "give it a name"),
    ([FIXTURE], "week 1", "letters, digits"),
])
def test_build_course_checks_its_arguments(tmp_path, chapters, name, message):
    with pytest.raises(assignment.AssignmentError, match=message):
        assignment.build_course(chapters, tmp_path, name)


# --------------------------------------------------------------------------- the fixture, through nbgrader

@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course_dir = tmp_path_factory.mktemp("course")
    [(instructor, student)] = assignment.build_course([FIXTURE], course_dir, NAME)
    return course_dir, instructor, student


def test_course_layout(course):
    course_dir, instructor, student = course
    assert instructor == course_dir / "source" / NAME / "tiny_chapter.ipynb"
    assert student == course_dir / "release" / NAME / "tiny_chapter.ipynb"
    assert (course_dir / "gradebook.db").exists()
    config = (course_dir / "nbgrader_config.py").read_text()
    assert f"c.Execute.timeout = {assignment.TIMEOUT}" in config
    assert "BEGIN HIDDEN TESTS" in instructor.read_text(), "the instructor keeps the hidden tests"


def test_student_version_has_no_solutions(course):
    _, instructor, student = course
    ins, stu = read(instructor), read(student)
    check_student(ins, stu)
    text = nbformat.writes(stu)
    lines = answer_lines(ins)
    assert any("eigenvalues" in line for line in lines), "the fixture has an answer in prose"
    for line in lines:  # nothing of the answers (code or prose) or hidden tests, anywhere
        assert line not in text
    answers = [c for c in stu.cells if kind(c) == "answer"]
    assert [c.source for c in answers] == [assignment.TEXT_STUB]
    # the stubs raise NotImplementedError when run
    cells = by_grade_id(stu)
    namespace = {"np": __import__("numpy")}
    exec(cells["solution-1"].source, namespace)
    with pytest.raises(NotImplementedError):
        namespace["grad_quadratic"](None, None, None)
    with pytest.raises(NotImplementedError):
        exec(cells["solution-2"].source, namespace)


def test_instructor_version_scores_full_marks(course):
    course_dir, instructor, _ = course
    scores = assignment.autograde(course_dir, NAME, "instructor", instructor)
    # the answer in prose is worth MANUAL_POINTS = 0: it does not change the autograded score
    assert scores == {"cells": {"selfcheck-1": 1.0, "selfcheck-2": 1.0, "answer-1": 0.0}, "total": 2.0,
                      "max_score": 2.0}


def test_feedback_typesets_math_offline(course):
    """`nbgrader generate_feedback` pages load MathJax from this environment, never from a network."""
    import re

    course_dir, instructor, _ = course
    assignment.autograde(course_dir, NAME, "feedback", instructor)
    assignment.run_nbgrader(["generate_feedback", NAME, "--student=feedback", "--force"], course_dir)
    page = course_dir / "feedback" / "feedback" / NAME / "tiny_chapter.html"
    html = page.read_text()
    scripts = re.findall(r'<script[^>]*\bsrc="([^"]+)"', html)
    mathjax = [s for s in scripts if "mathjax" in s.lower()]
    assert mathjax, f"no MathJax script in the feedback page: {scripts}"
    assert not [s for s in scripts if re.match(r"(https?:)?//", s)], f"scripts from a network: {scripts}"
    assert not re.search(r"https?://[^\s\"']*mathjax", html, re.IGNORECASE), "a MathJax URL on a network"
    for src in mathjax:
        assert src.startswith("file://") and Path(src[len("file://"):]).exists(), src
    assert "$" in html or "\\(" in html, "the fixture's math reaches the page, for MathJax to typeset"


def test_untouched_student_version_scores_zero(course):
    course_dir, _, student = course
    scores = assignment.autograde(course_dir, NAME, "untouched", student)
    assert scores == {"cells": {"selfcheck-1": 0.0, "selfcheck-2": 0.0, "answer-1": 0.0}, "total": 0.0,
                      "max_score": 2.0}
    graded = by_grade_id(read(course_dir / "autograded" / "untouched" / NAME / "tiny_chapter.ipynb"))
    errors = {grade_id: [o.ename for o in cell.get("outputs", []) if o.output_type == "error"]
              for grade_id, cell in graded.items()}
    assert errors["selfcheck-1"] == ["NotImplementedError"], "raised by the stub of grad_quadratic"
    assert errors["solution-2"] == ["NotImplementedError"]
    assert errors["selfcheck-2"] == ["NameError"]
    assert not any(errors[k] for k in errors if k.startswith("readonly")), "the chapter itself still runs"


def test_manual_points_for_answers_in_prose(tmp_path):
    nb = assignment.make_instructor(read(FIXTURE), manual_points=2)
    assert [c.metadata["nbgrader"]["points"] for c in nb.cells if kind(c) == "answer"] == [2]
    with pytest.raises(assignment.AssignmentError, match="manual_points"):
        assignment.make_instructor(read(FIXTURE), manual_points=-1)


def test_autograde_restores_tests_and_read_only_cells(course, tmp_path):
    """A student who answers exercise 1, hard-codes exercise 2 to pass its visible check, moves
    the point where exercise 1 is checked and adds a cell of their own gets one point of two."""
    course_dir, _, student = course
    nb = read(student)
    cells = by_grade_id(nb)
    cells["solution-1"].source = "def grad_quadratic(A, b, x):\n    return A @ x - b"
    cells["solution-2"].source = "def smoothness(A):\n    return 2.0  # passes the visible check only"
    cells["readonly-2"].source = "A = np.diag([2.0, 1.0])\nb = np.ones(2)\nx_star = np.zeros(2)"
    nb.cells.append(nbformat.v4.new_code_cell('import os\nprint("threads", os.environ.get("OMP_NUM_THREADS"))'))
    path = tmp_path / "tiny_chapter.ipynb"
    nbformat.write(nb, path)
    scores = assignment.autograde(course_dir, NAME, "partial", path)
    # selfcheck-1 passes only if readonly-2 was restored, selfcheck-2 fails only if its hidden test came back
    assert scores["cells"] == {"selfcheck-1": 1.0, "selfcheck-2": 0.0, "answer-1": 0.0}
    assert scores["total"] == 1.0
    graded = read(course_dir / "autograded" / "partial" / NAME / "tiny_chapter.ipynb")
    assert graded.cells[-1].outputs[0].text == "threads 1\n", "the kernel runs with one thread"


# --------------------------------------------------------------------------- the book's chapters

@pytest.fixture(scope="module")
def book_course(tmp_path_factory):
    """One nbgrader course with every chapter of the book in one assignment (one generate_assignment run)."""
    course_dir = tmp_path_factory.mktemp("book-course")
    pairs = assignment.build_course(notebooks(), course_dir, "book")
    return {instructor.stem: (instructor, student) for instructor, student in pairs}


@pytest.mark.parametrize("chapter", notebooks(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_chapter_becomes_an_assignment(chapter, book_course):
    instructor, student = book_course[chapter.stem]
    ins, stu = read(instructor), read(student)
    kinds = [kind(c) for c in ins.cells]
    assert "solution" in kinds and "selfcheck" in kinds
    check_student(ins, stu)


def autograded_chapters():
    """The chapters autograded end to end by nbgrader: the toolkit by default, every one with OPTLAB_AUTOGRADE=all.

    Every chapter's scores are measured anyway, in one run each, by tools/grading.py (recorded by
    tools/execute.py, checked by tests/test_grading.py); nbgrader's own autograde costs two full runs of a
    chapter, so the default suite runs it on one chapter to keep the pipeline itself tested.
    """
    chapters = notebooks()
    return chapters if os.environ.get("OPTLAB_AUTOGRADE", "").strip() == "all" else chapters[:1]


@pytest.mark.slow
def test_real_chapters_autograde(tmp_path):
    """Full marks for the instructor versions, zero on every graded cell for the untouched students', through
    nbgrader; and nbgrader's scores agree with the ones tools/grading.py recorded in the notebooks."""
    import grading

    chapters = autograded_chapters()
    pairs = assignment.build_course(chapters, tmp_path, "chapters")
    for chapter, (instructor, student) in zip(chapters, pairs):
        full = assignment.autograde(tmp_path, "chapters", "instructor", instructor)
        assert full["total"] == full["max_score"] > 0, (chapter.name, full)
        zero = assignment.autograde(tmp_path, "chapters", "untouched", student)
        assert set(zero["cells"].values()) == {0.0}, (chapter.name, zero)
        recorded = grading.recorded(read(chapter))["selfchecks"]
        assert len(recorded) == len([g for g in full["cells"] if g.startswith("selfcheck")])
        assert all(r["instructor"] and not r["student"] for r in recorded.values())
