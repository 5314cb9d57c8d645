"""What the HTML book does to a chapter's cells before MyST-NB parses them (pure functions).

A chapter notebook is written to read well in Colab and Jupyter as well as in the book.
These rewrites give the book what a plain notebook cannot carry:

- **Citations.** A Markdown link to ``{cite}KEY`` is a citation of ``KEY`` in
  ``references.bib``: ``[Liu and Zhou (2024)]({cite}liu2024revisiting)`` (in running text)
  becomes ``{cite:t}`liu2024revisiting``` and ``[Liu and Zhou, 2024]({cite}liu2024revisiting)``
  (inside brackets written by the author) becomes ``{cite:alp}`liu2024revisiting```, so the
  book links it to the bibliography with the same words.
- **Grading markers.** In code cells, the lines carrying nbgrader's ``BEGIN SOLUTION`` /
  ``END SOLUTION`` markers are dropped, and every ``BEGIN HIDDEN TESTS`` ...
  ``END HIDDEN TESTS`` region is removed with its markers: the notebook keeps them for
  nbgrader, the reader never sees them.
- **Answers in prose.** A Markdown cell tagged ``solution`` is an answer: it is wrapped in
  the ``optlab-answer`` directive, which the book shows collapsed under "Show answer".

:func:`transform_notebook` applies all three to a notebook (a dict, as read from JSON);
:func:`transform_markdown` applies the citation rewrite to a Markdown page.
"""
from __future__ import annotations

import re

SOLUTION_TAG = "solution"
ANSWER_DIRECTIVE = "optlab-answer"
# nbgrader's markers, matched anywhere in a line (nbgrader does a substring test too).
BEGIN_SOLUTION, END_SOLUTION = "BEGIN SOLUTION", "END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)

#: ``[text]({cite}key)``: a citation written as a Markdown link.
CITE_LINK = re.compile(r"\[(?P<text>[^\[\]]+)\]\(\{cite\}(?P<key>[A-Za-z0-9_:.\-]+)\)")
#: Link text of a citation in running text: ``Liu and Zhou (2024)``.
TEXTUAL = re.compile(r"^(?P<authors>.+?)\s*\((?P<year>\d{4}[a-z]?|n\.d\.)\)$", re.S)

#: MyST syntax that shows up raw in Colab and Jupyter: never in a chapter's Markdown.
RAW_MYST = {
    "a MyST role such as {cite}`key`": re.compile(r"(?<![\w\\^_$])\{[a-zA-Z][\w:+-]*\}`"),
    "a colon fence (:::)": re.compile(r"(?m)^\s*:::"),
    "a MyST directive (```{name})": re.compile(r"(?m)^\s*(`{3,}|~{3,})\s*\{"),
    "a MyST target ((label)=)": re.compile(r"(?m)^\s*\([\w:.-]+\)=\s*$"),
}


def cite_role(text: str, key: str) -> str:
    """The MyST role for one citation link: textual (``{cite:t}``) or bare author-year (``{cite:alp}``)."""
    role = "cite:t" if TEXTUAL.match(" ".join(text.split())) else "cite:alp"
    return f"{{{role}}}`{key}`"


def cite_links_to_roles(markdown: str) -> str:
    """Replace every ``[text]({cite}key)`` link by the matching ``{cite:...}`` role."""
    return CITE_LINK.sub(lambda m: cite_role(m["text"], m["key"]), markdown)


def cite_links(markdown: str) -> list[tuple[str, str]]:
    """The ``(text, key)`` of every citation link in ``markdown``."""
    return [(m["text"], m["key"]) for m in CITE_LINK.finditer(markdown)]


def raw_myst(markdown: str) -> list[str]:
    """Which MyST-only constructs ``markdown`` contains (empty: it reads cleanly anywhere)."""
    return [what for what, pattern in RAW_MYST.items() if pattern.search(markdown)]


def strip_grading_markers(source: str) -> str:
    """``source`` without nbgrader's solution-marker lines and without its hidden-test regions."""
    out, hidden = [], False
    for line in source.split("\n"):
        if BEGIN_HIDDEN in line:
            hidden = True
        elif END_HIDDEN in line:
            hidden = False
        elif not hidden and BEGIN_SOLUTION not in line and END_SOLUTION not in line:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out)


def wrap_answer(markdown: str) -> str:
    """A prose answer inside the ``optlab-answer`` directive (a colon fence longer than any inside)."""
    longest = max((len(m) for m in re.findall(r"(?m)^\s*(:{3,})", markdown)), default=0)
    fence = ":" * max(3, longest + 1)
    return f"{fence}{{{ANSWER_DIRECTIVE}}}\n{markdown.strip()}\n{fence}\n"


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def transform_markdown(markdown: str) -> str:
    """What the book does to a Markdown page: citation links become citations."""
    return cite_links_to_roles(markdown)


def transform_notebook(nb: dict) -> dict:
    """The notebook (dict from JSON) as the book renders it; the argument is modified and returned."""
    for cell in nb.get("cells", []):
        kind, tags = cell.get("cell_type"), set(cell.get("metadata", {}).get("tags", []))
        source = _source(cell)
        if kind == "markdown":
            source = cite_links_to_roles(source)
            if SOLUTION_TAG in tags:
                source = wrap_answer(source)
        elif kind == "code":
            if any(marker in source for marker in MARKERS):
                source = strip_grading_markers(source)
        cell["source"] = source
    return nb
