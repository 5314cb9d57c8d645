"""The book's one citation style: author-year in the text and in the bibliography.

In the text a citation reads ``(Liu and Zhou, 2024)`` or ``Liu and Zhou (2024)``; the
bibliography labels each entry ``[Liu and Zhou, 2024]`` and sorts by author and year.
Both come from the same :class:`~sphinxcontrib.bibtex.style.referencing.PersonStyle`
(one or two last names, else the first one and *et al.*), so they cannot disagree.

Registered by :func:`register` (called from the extension's ``setup``):

- ``bibtex_reference_style = "optlab_author_year"`` for the citations in the text:
  round brackets, several keys separated by ``"; "``;
- ``bibtex_default_style = "optlab"`` for the bibliography: author-year labels, sorted
  by author-year-title, an arXiv entry linked once (its ``eprint``; a ``url`` that points
  to the same arXiv or DOI page is not repeated), a numeric ``edition`` as an ordinal
  ("2nd edition", not "2 edition").

The plain functions :func:`label_of`, :func:`authors_of` and :func:`year_of` give the
same texts from ``references.bib`` for the tools and tests (no Sphinx needed).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pybtex.plugin
from pybtex.database import parse_file
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.template import field as bib_field
from pybtex.style.template import optional, words
from sphinxcontrib.bibtex.style.referencing import BracketStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle
from sphinxcontrib.bibtex.style.template import author_or_editor_or_title, year

FORMATTING_STYLE = "optlab"
REFERENCE_STYLE = "optlab_author_year"


def _round() -> BracketStyle:
    return BracketStyle(left="(", right=")", sep="; ")


@dataclass
class OptlabReferenceStyle(AuthorYearReferenceStyle):
    """Author-year citations in round brackets: ``(Liu and Zhou, 2024; Harvey et al., 2019)``."""

    bracket_parenthetical: BracketStyle = field(default_factory=_round)
    bracket_textual: BracketStyle = field(default_factory=_round)
    bracket_author: BracketStyle = field(default_factory=_round)
    bracket_label: BracketStyle = field(default_factory=_round)
    bracket_year: BracketStyle = field(default_factory=_round)


@lru_cache(maxsize=1)
def _reference_style() -> OptlabReferenceStyle:
    return OptlabReferenceStyle()


def _authors_text(entry) -> str:
    """The author part of a citation, e.g. ``Harvey et al.``: the same template as in the text."""
    style = _reference_style()
    node = author_or_editor_or_title(sep=style.person.sep, sep2=style.person.sep2,
                                     last_sep=style.person.last_sep, other=style.person.other)
    return node.format_data({"entry": entry, "style": style}).render_as("text")


def _year_text(entry) -> str:
    return year.format_data({"entry": entry}).render_as("text")


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels ``Authors, Year`` (``Liu and Zhou, 2024``); equal labels get ``a``, ``b``, ..."""

    def format_labels(self, sorted_entries):
        labels = [f"{_authors_text(e)}, {_year_text(e)}" for e in sorted_entries]
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        seen: dict[str, int] = {}
        for label in labels:
            if counts[label] > 1:
                seen[label] = seen.get(label, 0) + 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            else:
                yield label


def _ordinal(text):
    """``2`` -> ``2nd``; a word (``Second``) is kept, in lower case, as BibTeX styles do."""
    plain = str(text).strip()
    if not plain.isdigit():
        return text.lower()
    n = int(plain)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return Text(f"{n}{suffix}")


def _same_page(url: str, entry) -> bool:
    """True when ``url`` is the arXiv page of the entry's eprint or the page of its DOI."""
    fields = entry.fields
    url = url.strip().rstrip("/").lower()
    eprint = fields.get("eprint", "").strip().lower()
    doi = fields.get("doi", "").strip().lower()
    pages = set()
    if eprint:
        pages |= {f"{scheme}://{host}/{kind}/{eprint}" for scheme in ("http", "https")
                  for host in ("arxiv.org", "www.arxiv.org") for kind in ("abs", "pdf")}
        pages |= {p + ".pdf" for p in list(pages)}
    if doi:
        pages |= {f"{scheme}://{host}/{doi}" for scheme in ("http", "https") for host in ("doi.org", "dx.doi.org")}
    return url in pages


class OptlabStyle(UnsrtStyle):
    """pybtex's ``unsrt`` with author-year labels and order, each web link once, ordinal editions."""

    default_label_style = AuthorYearLabelStyle
    default_sorting_style = "author_year_title"

    def format_edition(self, e):
        return optional[words[bib_field("edition", apply_func=_ordinal), "edition"]]

    def format_entry(self, label, entry, bib_data=None):
        if entry.fields.get("url") and _same_page(entry.fields["url"], entry):
            entry = _without_url(entry)
        return super().format_entry(label, entry, bib_data=bib_data)


def _without_url(entry):
    from pybtex.database import Entry

    fields = {k: v for k, v in entry.fields.items() if k.lower() != "url"}
    copy = Entry(entry.type, fields=fields, persons=entry.persons)
    copy.key = entry.key
    return copy


def register() -> None:
    """Register both styles (idempotent)."""
    import sphinxcontrib.bibtex.plugin

    pybtex.plugin.register_plugin("pybtex.style.formatting", FORMATTING_STYLE, OptlabStyle, force=True)
    sphinxcontrib.bibtex.plugin.register_plugin("sphinxcontrib.bibtex.style.referencing", REFERENCE_STYLE,
                                                OptlabReferenceStyle, force=True)


# --------------------------------------------------------------------------- for the tools and tests

@lru_cache(maxsize=4)
def _entries(bibfile: str) -> dict:
    return dict(parse_file(bibfile, bib_format="bibtex").entries)


def entries(bibfile) -> dict:
    """key -> pybtex Entry of a ``.bib`` file."""
    return _entries(str(Path(bibfile).resolve()))


def authors_of(key: str, bibfile) -> str:
    """The author part of the citation of ``key``: ``Liu and Zhou``, ``Harvey et al.``."""
    return _authors_text(entries(bibfile)[key])


def year_of(key: str, bibfile) -> str:
    return _year_text(entries(bibfile)[key])


def label_of(key: str, bibfile) -> str:
    """The bibliography label of ``key`` (without brackets): ``Liu and Zhou, 2024``.

    Ignores the ``a``/``b`` suffix that two entries with equal labels would get.
    """
    return f"{authors_of(key, bibfile)}, {year_of(key, bibfile)}"


def parenthetical(key: str, bibfile) -> str:
    """The link text of a citation in brackets: ``Liu and Zhou, 2024``."""
    return label_of(key, bibfile)


def textual(key: str, bibfile) -> str:
    """The link text of a citation in running text: ``Liu and Zhou (2024)``."""
    return f"{authors_of(key, bibfile)} ({year_of(key, bibfile)})"


_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    return _WS.sub(" ", text).strip()


__all__ = ["OptlabStyle", "OptlabReferenceStyle", "AuthorYearLabelStyle", "register", "entries", "authors_of",
           "year_of", "label_of", "parenthetical", "textual", "normalize", "FORMATTING_STYLE", "REFERENCE_STYLE"]
