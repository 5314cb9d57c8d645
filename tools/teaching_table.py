#!/usr/bin/env python
"""Write the preface's table of assignments: each chapter's points and its exercises graded by hand.

    python tools/teaching_table.py           # rewrite the table in chapters/intro.md
    python tools/teaching_table.py --check   # exit 1 if the table is out of date

The table sits in ``chapters/intro.md`` ("Teaching with this book") between the lines
``<!-- assignments table: written by tools/teaching_table.py -->`` and
``<!-- end of assignments table -->``; a test fails when it differs from the chapters.
Re-run the tool after adding or changing exercises.

What it reads from each chapter in ``_toc.yml``, below its ``Exercises`` heading:

- an exercise starts a Markdown paragraph with its bold number, ``**Exercise 2 (title).**``
  or ``**2. Title.**``; the cells that follow belong to it, up to the next exercise;
- its points: one per ``selfcheck`` cell (what ``tools/assignment.py`` gives them);
- it is **graded by hand** when it has no self-check (its answer, code or prose, is read by
  the instructor) or when it asks for an answer in prose (a Markdown cell tagged ``solution``:
  an nbgrader "manually graded answer").
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _book import ROOT, notebooks  # noqa: E402

PREFACE = ROOT / "chapters" / "intro.md"
BEGIN = "<!-- assignments table: written by tools/teaching_table.py -->"
END = "<!-- end of assignments table -->"
EXERCISES_HEADING = re.compile(r"(?m)^#+ .*Exercises")
EXERCISE_START = re.compile(r"(?m)^\*\*(?:Exercise\s+)?(\d+)[.):\s(]")


@dataclass
class Exercise:
    number: int
    selfchecks: int = 0
    code_solutions: int = 0
    prose_answers: int = 0

    @property
    def by_hand(self) -> bool:
        return self.selfchecks == 0 or self.prose_answers > 0


@dataclass
class Chapter:
    path: Path
    title: str
    exercises: list = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(e.selfchecks for e in self.exercises)


def _tags(cell) -> set:
    return set(cell.metadata.get("tags", []))


def read_chapter(path: Path) -> Chapter:
    """The exercises of one chapter, as described in the module docstring."""
    nb = nbformat.read(path, as_version=4)
    title = next((c.source.lstrip()[2:].splitlines()[0].strip() for c in nb.cells
                  if c.cell_type == "markdown" and c.source.lstrip().startswith("# ")), path.stem)
    chapter = Chapter(path, title)
    in_exercises, current = False, None
    for cell in nb.cells:
        tags = _tags(cell)
        if cell.cell_type == "markdown" and "solution" not in tags:
            if not in_exercises:
                heading = EXERCISES_HEADING.search(cell.source)
                if not heading:
                    continue
                in_exercises = True
                text = cell.source[heading.end():]
            else:
                text = cell.source
            for m in EXERCISE_START.finditer(text):
                current = Exercise(int(m.group(1)))
                chapter.exercises.append(current)
            continue
        if not in_exercises or current is None:
            continue
        if "selfcheck" in tags:
            current.selfchecks += 1
        elif "solution" in tags:
            if cell.cell_type == "markdown":
                current.prose_answers += 1
            else:
                current.code_solutions += 1
    return chapter


def _numbers(exercises) -> str:
    return ", ".join(str(e.number) for e in exercises) or "none"


def render(chapters=None) -> str:
    """The Markdown table, with its marker lines."""
    chapters = [read_chapter(p) for p in (chapters or notebooks())]
    rows = []
    for ch in chapters:
        link = ch.path.relative_to(ROOT / "chapters").as_posix()
        auto = [e for e in ch.exercises if e.selfchecks]
        rows.append(f"| [{ch.title}]({link}) | {ch.points} | {_numbers(auto)} | "
                    f"{_numbers([e for e in ch.exercises if e.by_hand])} |")
    return "\n".join([
        BEGIN,
        "| chapter | points | exercises autograded | graded by hand |",
        "|---|---:|---|---|",
        *rows,
        END,
    ])


def with_table(text: str, table: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{PREFACE.relative_to(ROOT)} has no table markers ({BEGIN} ... {END})")
    head, rest = text.split(BEGIN, 1)
    return head + table + rest.split(END, 1)[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--check", action="store_true", help="exit 1 if the preface's table is out of date")
    args = ap.parse_args(argv)
    text = PREFACE.read_text()
    new = with_table(text, render())
    if new == text:
        return 0
    if args.check:
        print(f"{PREFACE.relative_to(ROOT)}: the assignments table is out of date (run tools/teaching_table.py)")
        return 1
    PREFACE.write_text(new)
    print(f"wrote the assignments table into {PREFACE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
