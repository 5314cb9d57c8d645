"""The book's Sphinx extension (_ext/optlab_book) and the citation converter (tools/cite.py), without Sphinx.

What the HTML book does to a chapter before MyST-NB parses it: citation links become
citations, nbgrader's markers and hidden tests disappear from code, answers in prose are
collapsed; the bibliography style gives author-year labels, each link once, ordinal
editions; ``Book:`` lines of docstrings become links.  The browser test checks the result
in the built book; these tests pin the rules themselves, cheaply.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
sys.path.insert(0, str(ROOT / "tools"))
import cite  # noqa: E402
from optlab_book import bib, book_links, cells  # noqa: E402

BIBFILE = ROOT / "references.bib"


# --------------------------------------------------------------------------- citations

@pytest.mark.parametrize("text, role", [
    ("[Liu and Zhou (2024)]({cite}liu2024revisiting)", "{cite:t}`liu2024revisiting`"),
    ("[Liu and Zhou, 2024]({cite}liu2024revisiting)", "{cite:alp}`liu2024revisiting`"),
    ("[Harvey et al.\n(2019)]({cite}harvey2019tight)", "{cite:t}`harvey2019tight`"),
])
def test_a_citation_link_becomes_a_citation(text, role):
    assert cells.cite_links_to_roles(f"as shown by {text}.") == f"as shown by {role}."


def test_other_links_are_left_alone():
    md = "See [the notation](appendix/notation.md), [a section](#the-problem) and [arXiv](https://arxiv.org)."
    assert cells.cite_links_to_roles(md) == md


def test_raw_myst_is_found():
    assert cells.raw_myst("as in {cite}`liu2024revisiting`") == ["a MyST role such as {cite}`key`"]
    assert cells.raw_myst("```{admonition} Note\ntext\n```")
    assert cells.raw_myst(":::{note}\ntext\n:::")
    assert cells.raw_myst("(my-label)=\n# Title")
    clean = ("A link [Liu and Zhou (2024)]({cite}liu2024revisiting), math $x_{t}$ and $\\mathbb{R}^d$, "
             "code `x_{t}` and `{'a': 1}`, a fence:\n```python\nx = {1}\n```")
    assert cells.raw_myst(clean) == []


def test_converter_writes_links_that_match_the_bibliography():
    md = ("Liu and Zhou {cite}`liu2024revisiting` prove it; earlier bounds "
          "{cite}`shamir2013stochastic,harvey2019tight` did not.\nHarvey et al.\n{cite}`harvey2019tight` "
          "showed more. **Theorem (GD, {cite}`nesterov2018lectures`, "
          "Thm. 2.1.15).** See [{cite}`nocedal2006numerical`, Ch. 3].")
    out = cite.convert(md)
    assert out == (
        "[Liu and Zhou (2024)]({cite}liu2024revisiting) prove it; earlier bounds "
        "([Shamir and Zhang, 2013]({cite}shamir2013stochastic); [Harvey et al., 2019]({cite}harvey2019tight)) "
        "did not.\n[Harvey et al. (2019)]({cite}harvey2019tight) showed more. **Theorem (GD, "
        "[Nesterov, 2018]({cite}nesterov2018lectures), Thm. 2.1.15).** See "
        "([Nocedal and Wright, 2006]({cite}nocedal2006numerical), Ch. 3).")
    assert cells.raw_myst(out) == []
    for text, key in cells.cite_links(out):
        assert bib.normalize(text) in (bib.textual(key, BIBFILE), bib.parenthetical(key, BIBFILE))


def test_converter_rejects_an_unknown_key():
    with pytest.raises(SystemExit, match="unknown citation key"):
        cite.convert("as in {cite}`nobody2099`")


def test_converter_command_line(tmp_path, capsys):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T\n\nAs in {cite}`liu2024revisiting`."),
                                         nbformat.v4.new_markdown_cell("```{note}\nx\n```")])
    path = tmp_path / "ch.ipynb"
    nbformat.write(nb, path)
    assert cite.main(["--check", str(path)]) == 1
    assert "cell 0" in capsys.readouterr().out
    assert cite.main([str(path)]) == 1, "the directive of cell 1 is reported, not rewritten"
    written = nbformat.read(path, as_version=4)
    assert written.cells[0].source == "# T\n\nAs in ([Liu and Zhou, 2024]({cite}liu2024revisiting))."


# --------------------------------------------------------------------------- grading markers and answers

SOLUTION = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
SELFCHECK = ("assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(3) == 6, 'secret'\n### END HIDDEN TESTS\n"
             "print('self-check passed')")


def test_markers_and_hidden_tests_are_stripped():
    assert cells.strip_grading_markers(SOLUTION) == "def f(x):\n    return 2 * x"
    assert cells.strip_grading_markers(SELFCHECK) == "assert f(1) == 2\nprint('self-check passed')"
    assert cells.strip_grading_markers("x = 1\n") == "x = 1"


def _nb(*cell_list):
    return json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=list(cell_list))))


def test_transform_notebook():
    nb = _nb(nbformat.v4.new_markdown_cell("As [Liu and Zhou (2024)]({cite}liu2024revisiting) show."),
             nbformat.v4.new_code_cell(SOLUTION, metadata={"tags": ["solution", "hide-cell"]}),
             nbformat.v4.new_code_cell(SELFCHECK, metadata={"tags": ["selfcheck"]}),
             nbformat.v4.new_markdown_cell("Because $f$ doubles.\n\n:::\nodd\n:::", metadata={"tags": ["solution"]}),
             nbformat.v4.new_markdown_cell("Not an answer.", metadata={"tags": ["hide-cell"]}))
    out = cells.transform_notebook(nb)
    src = [c["source"] for c in out["cells"]]
    assert src[0] == "As {cite:t}`liu2024revisiting` show."
    assert "SOLUTION" not in src[1] and "return 2 * x" in src[1]
    assert "secret" not in src[2] and "HIDDEN" not in src[2]
    assert src[3].startswith("::::{optlab-answer}\n") and src[3].endswith("\n::::\n"), "a longer fence than inside"
    assert src[4] == "Not an answer."
    nbformat.reads(json.dumps(out), as_version=4)  # still a valid notebook


def test_markdown_pages_get_citations_only():
    md = "See [Nesterov (2018)]({cite}nesterov2018lectures).\n\n```python\n### BEGIN SOLUTION\n```"
    assert cells.transform_markdown(md) == "See {cite:t}`nesterov2018lectures`.\n\n```python\n### BEGIN SOLUTION\n```"


# --------------------------------------------------------------------------- the bibliography style

def test_labels_are_author_year_as_in_the_text():
    assert bib.label_of("liu2024revisiting", BIBFILE) == "Liu and Zhou, 2024"
    assert bib.label_of("harvey2019tight", BIBFILE) == "Harvey et al., 2019"
    assert bib.label_of("nesterov2018lectures", BIBFILE) == "Nesterov, 2018"
    assert bib.textual("shamir2013stochastic", BIBFILE) == "Shamir and Zhang (2013)"


def _entry(key, entry_type="article", **fields):
    from pybtex.database import Entry, Person

    e = Entry(entry_type, fields={"title": "A title", "year": "2020", **fields},
              persons={"author": [Person("Doe, Jane")]})
    e.key = key
    return e


def test_style_links_each_page_once_and_writes_ordinal_editions():
    style = bib.OptlabStyle()
    arxiv = _entry("a", "inproceedings", booktitle="Proc.", eprint="2312.08531", archiveprefix="arXiv",
                   url="https://arxiv.org/abs/2312.08531")
    text = style.format_entry("Doe, 2020", arxiv).text.render_as("text")
    assert text.count("2312.08531") == 1 and "URL" not in text, text
    other = _entry("b", journal="J.", eprint="2312.08531", url="https://example.org/code")
    assert "https://example.org/code" in style.format_entry("Doe, 2020", other).text.render_as("text")
    book = _entry("c", "book", publisher="Springer", edition="2")
    assert "2nd edition" in style.format_entry("Doe, 2020", book).text.render_as("text")
    word = _entry("d", "book", publisher="Springer", edition="Third")
    assert "third edition" in style.format_entry("Doe, 2020", word).text.render_as("text")


def test_equal_labels_get_letters():
    labels = list(bib.AuthorYearLabelStyle().format_labels([_entry("x"), _entry("y"), _entry("z", year="2021")]))
    assert labels == ["Doe, 2020a", "Doe, 2020b", "Doe, 2021"]


def test_every_bib_entry_renders():
    style = bib.OptlabStyle()
    entries = list(bib.entries(BIBFILE).values())
    for label, entry in zip(style.format_labels(style.sort(entries)), style.sort(entries)):
        text = style.format_entry(label, entry).text.render_as("text")
        assert " 2 edition" not in text and text.count("arxiv.org") <= 1


# --------------------------------------------------------------------------- API reference

def test_book_lines_become_links():
    lines = ["Summary.", "", "Book: chapters/foundations/last_iterate.ipynb", "    Book: chapters/toolkit.ipynb",
             "Book: chapters/a/b.ipynb, chapters/c/d.ipynb", "Not a Book: line"]
    book_links(None, "module", "optlab.x", None, {}, lines)
    assert lines == ["Summary.", "", "Book: :doc:`/chapters/foundations/last_iterate`",
                     "    Book: :doc:`/chapters/toolkit`", "Book: :doc:`/chapters/a/b`, :doc:`/chapters/c/d`",
                     "Not a Book: line"]
