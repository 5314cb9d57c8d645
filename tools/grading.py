#!/usr/bin/env python
"""What nbgrader would give each chapter, measured in one run: full marks with the solutions, zero without.

    python tools/grading.py chapters/foundations/last_iterate.ipynb     # print the scores
    python tools/grading.py --record chapters/...                       # store them in the notebook's metadata

An assignment made from a chapter (tools/assignment.py) is only fair if the instructor
version scores full marks and the untouched student version scores zero on every
self-check: a self-check that passes without its solution grades nothing.  nbgrader's
autograde checks this by executing both versions, which costs two full runs of the
chapter.  This tool measures the same scores in ONE in-process run of the chapter:

* every cell runs in order, as in the instructor version; each self-check must pass;
* just before a solution cell runs, the namespace is copied, the student's version of
  the cell (the code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` replaced by
  nbgrader's stub) runs in the copy and must raise; the self-check that follows the
  solution (hidden tests included, as autograde restores them) then runs in that copy
  and must fail.

The student copy starts from the state of an instructor who answered every earlier
exercise, so the test is stricter than autograde's: each self-check must depend on
its *own* solution.  ``tools/execute.py`` records the scores, with a hash of the
solution and self-check sources, in the notebook's metadata
(``metadata.optlab.grading``) every time it stores outputs; the assignment tests read
them and fail when a source changed since (``current``).  The nbgrader pipeline itself
(generate, autograde, gradebook) is exercised end to end on a fixture and on the
toolkit chapter by tests/test_assignments.py.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _book import ROOT, resolve  # noqa: E402

BEGIN, END = "BEGIN SOLUTION", "END SOLUTION"
STUB = '# YOUR CODE HERE\nraise NotImplementedError("replace this line with your solution")'


def _tags(cell) -> set:
    return set(cell.get("metadata", {}).get("tags", []))


def student_source(source: str) -> str:
    """The student's version of a solution cell: each solution region replaced by the stub, indented alike."""
    out, inside = [], False
    for line in source.split("\n"):
        if BEGIN in line:
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + s for s in STUB.split("\n")]
        elif END in line:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def pairs(nb) -> list[tuple[int, int]]:
    """``(solution cell, self-check cell)`` indices: each self-check with the code solution cell before it."""
    out, last_solution = [], None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if "solution" in _tags(cell):
            last_solution = i
        elif "selfcheck" in _tags(cell):
            if last_solution is None:
                raise ValueError(f"self-check cell {i} has no solution cell before it")
            out.append((last_solution, i))
    return out


def sources_hash(nb) -> str:
    """A hash of every solution and self-check source: the recorded scores are current while it matches."""
    text = "\0".join(c.source for c in nb.cells if c.cell_type == "code" and _tags(c) & {"solution", "selfcheck"})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _run(source: str, namespace: dict, name: str):
    """Execute ``source``; return None, or the name of the exception it raised (output silenced)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            exec(compile(source, name, "exec"), namespace)
        except Exception as err:  # noqa: BLE001 - a student's cell may raise anything
            return type(err).__name__
    return None


def emulate(path: Path) -> dict:
    """Run the chapter once (in this process) and return the instructor's and the student's score per self-check."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nb = nbformat.read(path, as_version=4)
    checks = {check: solution for solution, check in pairs(nb)}
    solutions = set(checks.values())
    namespace, student, results = {"__name__": "__main__"}, {}, {}
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if i in solutions:
                student[i] = dict(namespace)
                student_error = _run(student_source(cell.source), student[i], f"student cell {i}")
                if student_error is None:
                    raise ValueError(f"{path}: the student version of solution cell {i} ran without error "
                                     "(no '### BEGIN SOLUTION' region?)")
            error = _run(cell.source, namespace, f"cell {i}")
            if i in checks:
                copy = student[checks[i]]
                student_error = _run(cell.source, copy, f"student self-check {i}")
                results[f"selfcheck-{len(results) + 1}"] = {
                    "cell": i, "solution_cell": checks[i], "instructor": error is None,
                    "student": student_error is None, "student_error": student_error or "", "error": error or ""}
            elif error is not None:
                raise RuntimeError(f"{path}: cell {i} raised {error} in the instructor run")
            plt.close("all")
    finally:
        os.chdir(cwd)
    return {"hash": sources_hash(nb), "selfchecks": results}


def emulate_in_subprocess(path: Path) -> dict:
    """:func:`emulate` in a fresh Python with one thread (so chapters cannot leak state into each other)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, __file__, "--json", str(path)], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"grading {path} failed:\n{out.stdout}{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def record(nb, grading: dict) -> None:
    nb.metadata.setdefault("optlab", {})["grading"] = grading


def recorded(nb) -> dict:
    return nb.metadata.get("optlab", {}).get("grading", {})


def problems(nb) -> list[str]:
    """Why the recorded grading is not a fair assignment (empty when it is), read from the metadata."""
    grading = recorded(nb)
    if not grading:
        return ["no recorded grading: store the outputs with tools/execute.py"]
    if grading["hash"] != sources_hash(nb):
        return ["a solution or self-check changed since the grading was recorded: re-run tools/execute.py"]
    out = []
    if len(grading["selfchecks"]) != len(pairs(nb)):
        out.append("the recorded grading does not cover every self-check")
    for name, r in grading["selfchecks"].items():
        if not r["instructor"]:
            out.append(f"{name} (cell {r['cell']}) fails with the solution: {r['error']}")
        if r["student"]:
            out.append(f"{name} (cell {r['cell']}) passes without its solution (cell {r['solution_cell']})")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", help="chapter notebooks (default: every chapter)")
    ap.add_argument("--record", action="store_true", help="store the scores in each notebook's metadata")
    ap.add_argument("--json", action="store_true", help="print the scores of one chapter as JSON (internal)")
    args = ap.parse_args(argv)
    if args.json:
        print(json.dumps(emulate(Path(args.paths[0]).resolve())))
        return 0
    bad = 0
    for path in resolve(args.paths):
        grading = emulate_in_subprocess(path)
        nb = nbformat.read(path, as_version=4)
        record(nb, grading)
        if args.record:
            nbformat.write(nb, path)
        issues = problems(nb)
        bad += bool(issues)
        rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        n = len(grading["selfchecks"])
        print(f"{rel}: {n} self-checks, {'fair' if not issues else 'NOT FAIR: ' + '; '.join(issues)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
