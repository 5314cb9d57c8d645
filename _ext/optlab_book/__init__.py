"""The book's own Sphinx extension (loaded by ``_config.yml``: ``sphinx: local_extensions``).

Chapter notebooks are written to read well in Colab and Jupyter; at build time this
extension gives the HTML book what a plain notebook cannot carry (see ``cells.py``):

- citations written as Markdown links ``[Liu and Zhou (2024)]({cite}liu2024revisiting)``
  become real citations linked to the bibliography;
- nbgrader's solution markers and hidden tests are left out of the rendered code;
- Markdown cells tagged ``solution`` (answers in prose) are shown collapsed under
  "Show answer", like the solution code cells ("Show solution");
- ``Book: chapters/<part>/<slug>.ipynb`` lines of docstrings become links to the chapter
  in the API reference;
- one author-year citation style for the text and the bibliography (``bib.py``).

The notebooks on disk are never modified: only what Sphinx parses is.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from docutils import nodes
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective

from . import bib, cells

__version__ = "1.0"
ANSWER_PROMPT_SHOW, ANSWER_PROMPT_HIDE = "Show answer", "Hide answer"


# --------------------------------------------------------------------------- sources

def rewrite_source(app, docname: str, source: list) -> None:
    """``source-read``: rewrite a chapter notebook (or Markdown page) before MyST-NB parses it."""
    suffix = Path(app.env.doc2path(docname)).suffix
    if suffix == ".ipynb":
        nb = json.loads(source[0])
        source[0] = json.dumps(cells.transform_notebook(nb), ensure_ascii=False)
    elif suffix == ".md":
        source[0] = cells.transform_markdown(source[0])


# --------------------------------------------------------------------------- answers in prose

class AnswerDirective(SphinxDirective):
    """``optlab-answer``: a prose answer (written by ``cells.wrap_answer``, never by hand)."""

    has_content = True

    def run(self):
        node = nodes.container(classes=["cell", "tag_solution", "optlab-answer"])
        node["optlab_answer"] = True
        self.set_source_info(node)
        self.state.nested_parse(self.content, self.content_offset, node)
        return [node]


class AnswerToggle(nodes.Element):
    """The collapsible wrapper of an answer in HTML (the markup of MyST-NB's hidden cells)."""


def visit_answer_toggle(self, node):
    self.body.append('<details class="admonition hide above-input">\n'
                     '<summary aria-label="Toggle the answer">\n'
                     f'<p class="collapsed admonition-title">{ANSWER_PROMPT_SHOW}</p>\n'
                     f'<p class="expanded admonition-title">{ANSWER_PROMPT_HIDE}</p>\n'
                     "</summary>\n")


def depart_answer_toggle(self, node):
    self.body.append("</details>\n")


class CollapseAnswers(SphinxPostTransform):
    """In HTML, put each answer under a "Show answer" toggle (other builders show it as is)."""

    default_priority = 199
    formats = ("html",)

    def run(self, **kwargs):
        for node in list(self.document.findall(nodes.container)):
            if node.get("optlab_answer") and not any(isinstance(c, AnswerToggle) for c in node.children):
                toggle = AnswerToggle()
                toggle.extend(node.children)
                node.children = []
                node.append(toggle)


# --------------------------------------------------------------------------- API reference

BOOK_LINE = re.compile(r"^(?P<indent>\s*)Book:\s*(?P<paths>chapters/\S.*?)\s*$")
CHAPTER_PATH = re.compile(r"(chapters/[\w/.-]+?)\.(?:ipynb|md)\b")


def book_links(app, what, name, obj, options, lines: list) -> None:
    """``autodoc-process-docstring``: ``Book: chapters/x/y.ipynb`` -> a link to that chapter."""
    for i, line in enumerate(lines):
        m = BOOK_LINE.match(line)
        if m:
            docs = CHAPTER_PATH.findall(m["paths"])
            if docs:
                lines[i] = m["indent"] + "Book: " + ", ".join(f":doc:`/{doc}`" for doc in docs)


# --------------------------------------------------------------------------- setup

def setup(app):
    bib.register()
    app.connect("source-read", rewrite_source)
    app.connect("autodoc-process-docstring", book_links)
    app.add_directive(cells.ANSWER_DIRECTIVE, AnswerDirective)
    app.add_node(AnswerToggle, html=(visit_answer_toggle, depart_answer_toggle))
    app.add_post_transform(CollapseAnswers)
    return {"version": __version__, "env_version": 1, "parallel_read_safe": True, "parallel_write_safe": True}
