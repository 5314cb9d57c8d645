#!/usr/bin/env python
"""Turn chapters into an nbgrader assignment: an instructor notebook and a student notebook.

    python tools/assignment.py chapters/foundations/last_iterate.ipynb
    python tools/assignment.py CHAPTER.ipynb [CHAPTER.ipynb ...] --course DIR --name NAME

The result is an nbgrader course directory (default ``assignments/``, ignored by git):

    DIR/nbgrader_config.py           written here: course root, gradebook, stub, timeout, one thread
    DIR/gradebook.db                 nbgrader's database
    DIR/source/NAME/<slug>.ipynb     INSTRUCTOR version: the chapter with nbgrader cell metadata
    DIR/release/NAME/<slug>.ipynb    STUDENT version, made by ``nbgrader generate_assignment``

The chapter's tags say what nbgrader should do with each cell:

- ``solution`` code cells become nbgrader solution cells: in the student version the code
  between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` is replaced by a stub that raises
  ``NotImplementedError``;
- ``solution`` Markdown cells are answers in prose, the whole cell being the answer (no
  markers, no headings): they become nbgrader "manually graded answers" worth
  ``--manual-points`` (default 0, so the autograded score is unchanged), and the student
  version has "YOUR ANSWER HERE" in their place;
- ``selfcheck`` code cells become autograder test cells worth one point each; their
  ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` blocks are removed from the student
  version and put back when ``nbgrader autograde`` runs;
- every other code cell (setup, claim, experiments) becomes a read-only cell, which
  ``nbgrader autograde`` restores from the instructor version before it runs the notebook;
  markdown cells are left alone.

Outputs stay in the instructor version and are cleared in the student version.  From the
course directory, the usual nbgrader commands take over (``nbgrader autograde NAME``,
``nbgrader export``); run them with this virtual environment's ``bin/`` first on ``PATH``
(nbgrader calls ``alembic``).  The Python functions ``make_instructor``, ``build_course``
and ``autograde`` do the same from code (the tests use them).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _book import ROOT, resolve  # noqa: E402

SOLUTION_TAG, SELFCHECK_TAG = "solution", "selfcheck"
# nbgrader finds its markers anywhere in a line (a substring test); so do we.
BEGIN_SOLUTION, END_SOLUTION = "BEGIN SOLUTION", "END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
CODE_STUB = '# YOUR CODE HERE\nraise NotImplementedError("replace this line with your solution")'
TEXT_STUB = "YOUR ANSWER HERE"
POINTS = 1  # per self-check cell
MANUAL_POINTS = 0  # per answer in prose (a manually graded answer), unless --manual-points says otherwise
TIMEOUT = 180  # seconds per cell when autograding; a whole chapter runs in about a minute
COURSE_ID = "optml"
DEFAULT_COURSE = ROOT / "assignments"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

CONFIG = '''\
# nbgrader configuration of this course, written by tools/assignment.py (rewritten on every build).
# Settings of your own (exchange directory, late penalties, ...) go in nbgrader_config_local.py
# next to this file: it is loaded last and survives rebuilds.
import os

_here = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.root = _here
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_here, "gradebook.db")
# What replaces the code between ### BEGIN SOLUTION and ### END SOLUTION in the student version,
# and what replaces an answer in prose (a Markdown solution cell).
c.ClearSolutions.code_stub = {{"python": {stub!r}}}
c.ClearSolutions.text_stub = {text_stub!r}
# Autograding runs the whole chapter; nbgrader's default (30 s per cell) is too tight.
c.Execute.timeout = {timeout}
# One thread for numpy/torch in the kernels nbgrader starts (they inherit this environment):
# float32 sums change with the thread count, and one thread is also faster on small problems.
for _var in {thread_vars!r}:
    os.environ[_var] = "1"

# Feedback pages typeset math offline, with the MathJax 3 copy of this environment (the one the book
# uses, from sphinx-mathjax-offline) instead of nbgrader's default CDN: nbgrader's feedback template
# calls the `mathjax()` macro without the configured URL, so templates/feedback/mathjax.html.j2
# (written next to this file) replaces that macro.
_mathjax = {mathjax!r}
if _mathjax and os.path.exists(_mathjax):
    import nbgrader as _nbgrader

    _url = "file://" + _mathjax
    c.HTMLExporter.mathjax_url = _url
    c.HTMLExporter.extra_template_basedirs = [
        os.path.join(_here, "templates"),
        os.path.join(os.path.dirname(_nbgrader.__file__), "server_extensions", "formgrader", "templates"),
    ]

load_subconfig("nbgrader_config_local.py", path=_here)
'''


# The MathJax macro of the feedback pages (nbconvert's `mathjax()` macro, for MathJax 3, offline).
MATHJAX_MACRO = """\
{%- macro mathjax(url=@URL@) -%}
    <!-- MathJax 3, from the book's environment (written by tools/assignment.py): no network -->
    <script>
    window.MathJax = {
        tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']],
              processEscapes: true, processEnvironments: true, tags: 'ams'},
        options: {ignoreHtmlClass: 'tex2jax_ignore'}
    };
    </script>
    <script defer src="{{ url }}"></script>
{%- endmacro %}
"""
FEEDBACK_CONF = '{"base_template": "classic", "mimetypes": {"text/html": true}}\n'


def local_mathjax() -> str | None:
    """The MathJax 3 file (SVG output: no web fonts) of this environment, or None."""
    import importlib.util

    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "static" / "mathjax" / "tex-svg.js"
        if path.exists():
            return str(path.resolve())
    return None


class AssignmentError(ValueError):
    """A chapter that cannot become an assignment; the message names the file and the cells."""


# --------------------------------------------------------------------------- the instructor notebook

def _tags(cell) -> set:
    return set(cell.get("metadata", {}).get("tags", []))


def _describe(index: int, cell) -> str:
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    first = first if len(first) <= 60 else first[:57] + "..."
    return f"cell {index} ({cell.cell_type}, starts {first!r})"


def _regions(source: str, begin: str, end: str) -> tuple[int, str | None]:
    """Count the ``begin``/``end`` regions of ``source``; return (count, problem or None)."""
    count, inside = 0, False
    for line in source.splitlines():
        if begin in line:
            if inside:
                return count, f"nested '{begin}'"
            inside, count = True, count + 1
        elif end in line:
            if not inside:
                return count, f"'{end}' without '{begin}'"
            inside = False
    return count, (f"'{begin}' without '{end}'" if inside else None)


def check_chapter(nb, source: str = "notebook") -> None:
    """Raise :class:`AssignmentError` listing every cell nbgrader would reject or mishandle.

    A chapter needs at least one ``solution`` cell and one ``selfcheck`` cell; a code solution
    cell has ``### BEGIN SOLUTION`` ... ``### END SOLUTION``; a Markdown solution cell (an answer
    in prose) is the answer as a whole: no markers, no headings; self-checks are code cells;
    hidden tests sit only in self-check cells; the markers appear nowhere else, not even in
    prose (nbgrader would treat the text as a solution region and refuse the notebook).
    """
    problems = []
    n_solutions = n_checks = 0
    for i, cell in enumerate(nb.cells):
        tags, where = _tags(cell), _describe(i, cell)
        is_solution, is_check = SOLUTION_TAG in tags, SELFCHECK_TAG in tags
        n_solutions += is_solution
        n_checks += is_check
        if is_solution and is_check:
            problems.append(f"{where}: tagged both '{SOLUTION_TAG}' and '{SELFCHECK_TAG}'; split it in two")
        if is_check and cell.cell_type != "code":
            problems.append(f"{where}: only code cells can be tagged '{SELFCHECK_TAG}'")
        if cell.cell_type not in ("code", "markdown") and is_solution:
            problems.append(f"{where}: only code and Markdown cells can be tagged '{SOLUTION_TAG}'")
        solutions, bad = _regions(cell.source, BEGIN_SOLUTION, END_SOLUTION)
        answer = is_solution and cell.cell_type == "markdown"
        if answer:
            if solutions or bad or BEGIN_SOLUTION in cell.source or END_SOLUTION in cell.source:
                problems.append(f"{where}: an answer in prose is the whole cell: remove the solution markers")
            elif not cell.source.strip():
                problems.append(f"{where}: an empty answer in prose")
            elif re.search(r"(?m)^#{1,6}\s", cell.source):
                problems.append(f"{where}: no headings in an answer in prose (the book shows it collapsed)")
        elif bad:
            problems.append(f"{where}: {bad}")
        elif is_solution and not solutions:
            problems.append(f"{where}: a '{SOLUTION_TAG}' cell without '### {BEGIN_SOLUTION}' and "
                            f"'### {END_SOLUTION}' (mark the answer; the rest is the student's stub)")
        elif solutions and not is_solution:
            problems.append(f"{where}: solution markers outside a '{SOLUTION_TAG}' cell "
                            f"(nbgrader would reject it; tag the cell or reword the text)")
        hidden, bad = _regions(cell.source, BEGIN_HIDDEN, END_HIDDEN)
        if bad:
            problems.append(f"{where}: {bad}")
        elif hidden and not is_check:
            problems.append(f"{where}: hidden-test markers outside a '{SELFCHECK_TAG}' cell")
    if not n_solutions:
        problems.append(f"no cell is tagged '{SOLUTION_TAG}' (nothing for the student to write)")
    if not n_checks:
        problems.append(f"no cell is tagged '{SELFCHECK_TAG}' (nothing to autograde)")
    if problems:
        raise AssignmentError(f"{source} cannot become an assignment:\n  " + "\n  ".join(problems))


def make_instructor(nb, source: str = "notebook", manual_points: float = MANUAL_POINTS):
    """The instructor version of a chapter: a copy with nbgrader's cell metadata added.

    ``solution`` code cells become solution cells (``solution-1``, ``solution-2``, ...),
    ``solution`` Markdown cells manually graded answers worth ``manual_points`` each
    (``answer-1``, ...), ``selfcheck`` cells autograder tests worth ``POINTS`` each
    (``selfcheck-1``, ...), every other code cell a read-only cell (``readonly-1``, ...); other
    Markdown cells carry no nbgrader metadata.  The ids count cells of each kind in order, so
    the same chapter always gives the same ids.  Outputs are kept.  ``source`` names the
    notebook in error messages.
    """
    check_chapter(nb, source)
    if not manual_points >= 0:
        raise AssignmentError(f"manual_points must be >= 0, got {manual_points!r}")
    nb = copy.deepcopy(nb)
    counts = {"solution": 0, "selfcheck": 0, "readonly": 0, "answer": 0}
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
        if cell.cell_type == "markdown" and SOLUTION_TAG in _tags(cell):
            counts["answer"] += 1
            cell.metadata["nbgrader"] = {"grade": True, "solution": True, "locked": False,
                                         "points": manual_points, "grade_id": f"answer-{counts['answer']}",
                                         "schema_version": 3}
            continue
        if cell.cell_type != "code":
            continue
        tags = _tags(cell)
        kind = "solution" if SOLUTION_TAG in tags else "selfcheck" if SELFCHECK_TAG in tags else "readonly"
        counts[kind] += 1
        meta = {"grade": kind == "selfcheck", "solution": kind == "solution", "locked": kind != "solution",
                "grade_id": f"{kind}-{counts[kind]}", "schema_version": 3}
        if kind == "selfcheck":
            meta["points"] = POINTS
        cell.metadata["nbgrader"] = meta
    spec = nb.metadata.setdefault("kernelspec", dict(KERNELSPEC))
    spec.setdefault("language", "python")  # nbgrader picks the stub by the kernel's language
    return nb


# --------------------------------------------------------------------------- running nbgrader

def write_config(course_dir: Path, course_id: str = COURSE_ID, timeout: int = TIMEOUT) -> Path:
    """Write ``DIR/nbgrader_config.py`` (see ``CONFIG``) and the feedback pages' offline MathJax
    macro ``DIR/templates/feedback/``; return the config's path."""
    course_dir = Path(course_dir)
    mathjax = local_mathjax()
    if mathjax:
        templates = course_dir / "templates" / "feedback"
        templates.mkdir(parents=True, exist_ok=True)
        (templates / "mathjax.html.j2").write_text(MATHJAX_MACRO.replace("@URL@", json.dumps("file://" + mathjax)))
        (templates / "conf.json").write_text(FEEDBACK_CONF)
    path = course_dir / "nbgrader_config.py"
    path.write_text(CONFIG.format(course_id=course_id, stub=CODE_STUB, text_stub=TEXT_STUB, timeout=int(timeout),
                                  thread_vars=THREAD_VARS, mathjax=mathjax))
    return path


def run_nbgrader(args: list[str], course_dir: Path) -> subprocess.CompletedProcess:
    """Run this Python's nbgrader in ``course_dir`` (with its config); raise with the log on failure."""
    course_dir = Path(course_dir).resolve()
    env = dict(os.environ)
    # nbgrader calls `alembic`, which sits next to this interpreter in the virtual environment.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update({var: "1" for var in THREAD_VARS})
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course_dir}"]
    proc = subprocess.run(cmd, cwd=course_dir, env=env, capture_output=True, text=True)
    if proc.returncode:
        log = (proc.stdout + proc.stderr).strip()
        raise RuntimeError(f"`nbgrader {' '.join(args)}` failed in {course_dir} (exit {proc.returncode}):\n{log}")
    return proc


def build_course(chapters, course_dir, name: str | None = None, *, course_id: str = COURSE_ID,
                 timeout: int = TIMEOUT, manual_points: float = MANUAL_POINTS) -> list[tuple[Path, Path]]:
    """Make the assignment ``name`` of ``chapters`` in the nbgrader course ``course_dir``.

    Writes the config and the instructor notebooks ``source/NAME/<slug>.ipynb``, then runs
    ``nbgrader generate_assignment`` for the student notebooks ``release/NAME/<slug>.ipynb``.
    ``name`` defaults to the slug of a single chapter.  Returns one ``(instructor, student)``
    pair of paths per chapter, in order.
    """
    chapters = [Path(p) for p in chapters]
    if not chapters:
        raise AssignmentError("no chapter given")
    slugs = [p.stem for p in chapters]
    if len(set(slugs)) < len(slugs):
        raise AssignmentError(f"two chapters share a file name, which nbgrader uses as notebook id: {slugs}")
    if name is None:
        if len(chapters) > 1:
            raise AssignmentError("several chapters make one assignment: give it a name")
        name = slugs[0]
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise AssignmentError(f"assignment name {name!r}: use letters, digits, '-' and '_' only")
    # Check every chapter before writing anything.
    instructors = []
    for path in chapters:
        label = path.resolve().relative_to(ROOT).as_posix() if path.resolve().is_relative_to(ROOT) else str(path)
        instructors.append(make_instructor(nbformat.read(path, as_version=4), label, manual_points))

    course_dir = Path(course_dir).resolve()
    source = course_dir / "source" / name
    source.mkdir(parents=True, exist_ok=True)
    write_config(course_dir, course_id, timeout)
    for old in source.glob("*.ipynb"):  # notebooks of an earlier build with other chapters
        if old.stem not in slugs:
            old.unlink()
    for slug, nb in zip(slugs, instructors):
        nbformat.write(nb, source / f"{slug}.ipynb")
    run_nbgrader(["generate_assignment", name, "--force"], course_dir)
    release = course_dir / "release" / name
    return [(source / f"{slug}.ipynb", release / f"{slug}.ipynb") for slug in slugs]


def autograde(course_dir, name: str, student: str, notebook_path) -> dict:
    """Submit ``notebook_path`` as ``student``'s work on ``name``, autograde it, return the scores.

    The notebook is copied to ``submitted/STUDENT/NAME/<its file name>`` (the file name is the
    notebook id, as in ``source/``) and ``nbgrader autograde`` runs it.  Returns
    ``{"cells": {grade_id: score}, "total": score, "max_score": points}`` read from the gradebook.
    """
    from nbgrader.api import Gradebook

    course_dir, notebook_path = Path(course_dir).resolve(), Path(notebook_path)
    submitted = course_dir / "submitted" / student / name
    if submitted.exists():
        shutil.rmtree(submitted)
    submitted.mkdir(parents=True)
    shutil.copyfile(notebook_path, submitted / notebook_path.name)
    run_nbgrader(["autograde", name, f"--student={student}", "--force"], course_dir)
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}", course_id="") as gb:
        graded = gb.find_submission_notebook(notebook_path.stem, name, student)
        return {"cells": {grade.name: grade.score for grade in graded.grades},
                "total": graded.score, "max_score": graded.max_score}


# --------------------------------------------------------------------------- command line

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="+", help="chapter notebooks (or folders of them) to put in the assignment")
    ap.add_argument("--course", type=Path, default=DEFAULT_COURSE,
                    help="the nbgrader course directory (default: %(default)s)")
    ap.add_argument("--name", help="assignment name (default: the chapter's slug; required for several chapters)")
    ap.add_argument("--course-id", default=COURSE_ID, help="nbgrader course id (default: %(default)s)")
    ap.add_argument("--timeout", type=int, default=TIMEOUT,
                    help="seconds per cell when autograding (default: %(default)s)")
    ap.add_argument("--manual-points", type=float, default=MANUAL_POINTS,
                    help="points of each answer in prose, graded by hand (default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        pairs = build_course(resolve(args.chapters), args.course, args.name,
                             course_id=args.course_id, timeout=args.timeout, manual_points=args.manual_points)
    except (AssignmentError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    name = pairs[0][0].parent.name
    for instructor, student in pairs:
        print(f"instructor: {instructor}\nstudent:    {student}")
    print(f"next: cd {args.course.resolve()} && nbgrader autograde {name} && nbgrader export")
    return 0


if __name__ == "__main__":
    sys.exit(main())
