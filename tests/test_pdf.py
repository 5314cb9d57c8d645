r"""The PDF of the book, as a reader gets it: complete, typeset, with its figures.

The PDF is built once per session with ``tools/book_pdf.py`` (``jupyter-book build
--builder pdflatex -W --all``, xelatex) into a temporary folder: 30-55 s for the book as
it is now (two chapters, 57 pages), growing with every chapter.  Set ``OPTLAB_BOOK_PDF=_build/latex/<name>.pdf`` to
check an existing build instead (``.ci/run`` does, right after ``python tools/book_pdf.py``);
a PDF older than its sources fails as stale.  LaTeX's transcript ``<name>.log`` must sit
beside it.

These tests are marked ``pdf`` and left out of the default ``pytest`` run (``-m "not pdf"``
in ``pyproject.toml``): ``pytest -m pdf`` runs them.  Where TeX Live, latexmk, xindy,
poppler-utils or the fonts are missing they are skipped with the Debian packages to
install, and fail when ``CI`` is set (``.ci/run`` installs them).

Checked:

- the page count is sane for the number of chapters (not a stub, not a runaway output);
- the title of every file of ``_toc.yml`` is in the text (``pdftotext``), and so is the
  title of every work the chapters cite;
- LaTeX's log has no missing glyph (``Missing character``: a font without a character
  of the sources, e.g. the Greek letters and arrows of the pseudocode), no undefined
  reference or citation, and no pending rerun;
- the fonts are embedded, and they are the ones ``_config.yml`` sets (text, code, math);
- the figures are embedded: ``pdfimages -list`` counts at least as many images as the
  chapters have PNG outputs;
- with ``OPTLAB_BOOK_HTML`` also set, the HTML book carries this very PDF at its root
  (where its "Download the book (PDF)" button points; ``tests/test_browser.py`` clicks through).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest

pytestmark = pytest.mark.pdf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import _book  # noqa: E402
import book_pdf  # noqa: E402

# What the build and the checks need, and the Debian package that has it.
TOOLS = {"xelatex": "texlive-xetex", "latexmk": "latexmk", "xindy": "xindy", "make": "make",
         "kpsewhich": "texlive-base", "fc-list": "fontconfig",
         "pdftotext": "poppler-utils", "pdfimages": "poppler-utils", "pdfinfo": "poppler-utils",
         "pdffonts": "poppler-utils"}
TEX_FILES = {"bbm.sty": "texlive-fonts-extra", "unicode-math.sty": "texlive-latex-extra",
             "fncychap.sty": "texlive-latex-extra", "tabulary.sty": "texlive-latex-extra"}
# The Debian package of each font that _config.yml may set (latex_elements.fontpkg), by squashed name.
FONT_PACKAGES = {"freeserif": "fonts-freefont-otf", "freesans": "fonts-freefont-otf", "freemono": "fonts-freefont-otf",
                 "dejavusansmono": "fonts-dejavu-core", "texgyretermesmath": "fonts-texgyre-math"}
PAGES_MIN_PER_CHAPTER, PAGES_MAX_PER_CHAPTER, PAGES_MAX_BESIDES = 4, 40, 120

# LaTeX's complaints that mean a broken PDF: a glyph left out, a reference or citation printed as
# "??", a cross-reference that needed one more run.
LOG_PROBLEMS = [
    re.compile(r"Missing character: There is no .*"),
    re.compile(r"LaTeX Warning: (?:Hyper reference|Reference|Citation) `[^']*' on page \S+ undefined.*"),
    re.compile(r"LaTeX Warning: There were undefined (?:references|citations).*"),
    re.compile(r"LaTeX Warning: Label\(s\) may have changed.*"),
    re.compile(r"Package natbib Warning: Citation.*undefined.*"),
    re.compile(r"Package rerunfilecheck Warning: File .* has changed.*"),
]


# --------------------------------------------------------------------------- environment

def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(why: str):
    if _in_ci():
        pytest.fail(f"{why} (CI is set: the PDF tests must run in CI; .ci/run installs TeX Live)", pytrace=False)
    pytest.skip(why)


def _missing_tools(names) -> list[str]:
    return [f"{n} ({TOOLS[n]})" for n in names if shutil.which(n) is None]


def _missing_build_requirements() -> list[str]:
    missing = _missing_tools(TOOLS)
    if shutil.which("kpsewhich"):
        missing += [f"{f} ({pkg})" for f, pkg in TEX_FILES.items()
                    if not subprocess.run(["kpsewhich", f], capture_output=True, text=True).stdout.strip()]
    for font in configured_fonts():
        where = ["kpsewhich", font["file"]] if font["file"] else ["fc-list", f":family={font['family']}"]
        if shutil.which(where[0]) and not subprocess.run(where, capture_output=True, text=True).stdout.strip():
            missing.append(f"the font {font['file'] or font['family']} "
                           f"({FONT_PACKAGES.get(_squash(font['family']), 'a Debian fonts-* package')})")
    return missing


# --------------------------------------------------------------------------- the PDF

def _unwrap(log: str, width: int = 79) -> str:
    """TeX breaks its log lines at 79 characters (max_print_line): join them back, so that a warning
    reads on one line."""
    out, pending = [], ""
    for line in log.splitlines():
        pending += line
        if len(line) != width:
            out.append(pending)
            pending = ""
    return "\n".join(out + [pending])


def _run(*cmd) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


@dataclass
class BookPDF:
    path: Path

    @cached_property
    def log(self) -> str:
        log = self.path.with_suffix(".log")
        if not log.exists():
            pytest.fail(f"no LaTeX log {log} beside the PDF", pytrace=False)
        return _unwrap(log.read_text(errors="replace"))

    @cached_property
    def pages(self) -> int:
        return int(re.search(r"^Pages:\s+(\d+)", _run("pdfinfo", str(self.path)), re.M).group(1))

    @cached_property
    def text(self) -> str:
        return _run("pdftotext", "-enc", "UTF-8", str(self.path), "-")

    @cached_property
    def images(self) -> list[dict]:
        """``pdfimages -list`` rows of real images (not the soft masks that carry PNG alpha channels)."""
        lines = _run("pdfimages", "-list", str(self.path)).splitlines()[2:]
        rows = [dict(zip(("page", "num", "type", "width", "height"), line.split()[:5])) for line in lines]
        return [r for r in rows if r.get("type") == "image"]

    @cached_property
    def fonts(self) -> list[dict]:
        """``pdffonts`` rows: name (without subset prefix), type, embedded.  Read from both ends: a name
        has no space but may overflow its column, a type may have spaces (``CID Type 0C``), and the
        row ends with encoding, emb, sub, uni, object and ID."""
        out = []
        for line in _run("pdffonts", str(self.path)).splitlines()[2:]:
            t = line.split()
            out.append({"name": re.sub(r"^[A-Z]{6}\+", "", t[0]), "type": " ".join(t[1:-6]),
                        "embedded": t[-5] == "yes"})
        return out


def _sources() -> list[Path]:
    """What the PDF is built from: the book's files, its configuration and optlab (the API page)."""
    files = [ROOT / "_toc.yml", ROOT / "_config.yml", ROOT / "references.bib"]
    files += [p for p in (ROOT / "chapters").rglob("*") if p.suffix in (".md", ".ipynb")
              and ".ipynb_checkpoints" not in p.parts]
    files += list((ROOT / "optlab").rglob("*.py"))
    return files


@pytest.fixture(scope="session")
def book(tmp_path_factory) -> BookPDF:
    """The PDF: OPTLAB_BOOK_PDF if set (checked fresh), else a fresh build in a temporary folder."""
    missing = _missing_tools(["pdftotext", "pdfimages", "pdfinfo", "pdffonts"])
    if missing:
        _unavailable(f"missing {', '.join(missing)}: apt-get install poppler-utils")
    given = os.environ.get("OPTLAB_BOOK_PDF")
    if given:
        pdf = Path(given)
        pdf = (pdf if pdf.is_absolute() else ROOT / pdf).resolve()
        if not pdf.is_file():
            pytest.fail(f"OPTLAB_BOOK_PDF={given}: no such file (python tools/book_pdf.py builds it)", pytrace=False)
        stale = [str(p.relative_to(ROOT)) for p in _sources() if p.stat().st_mtime > pdf.stat().st_mtime + 1]
        if stale:
            pytest.fail(f"OPTLAB_BOOK_PDF={given} is older than {stale[:5]}: rebuild it "
                        "(python tools/book_pdf.py) or unset OPTLAB_BOOK_PDF", pytrace=False)
        return BookPDF(pdf)
    missing = _missing_build_requirements()
    if missing:
        _unavailable(f"cannot build the PDF, missing {', '.join(missing)}: apt-get install the Debian "
                     "packages named (.ci/run lists them all)")
    try:
        return BookPDF(book_pdf.build(tmp_path_factory.mktemp("pdf"), quiet=True))
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


# --------------------------------------------------------------------------- the book's facts

def _squash(text: str) -> str:
    """Letters and digits only, lower case: immune to line breaks, hyphenation and upper-case headings."""
    return re.sub(r"[\W_]+", "", text.lower())


def _strip_markdown(title: str) -> list[str]:
    """The plain-text pieces of a Markdown title: math dropped, markup and link targets removed."""
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)
    pieces = re.split(r"\$[^$]*\$", title)
    return [p for p in (re.sub(r"[`*_]", " ", piece).strip() for piece in pieces) if _squash(p)]


def toc_titles() -> dict[str, str]:
    """The first ``# `` heading of every file of ``_toc.yml``."""
    out = {}
    for f in _book.toc_files():
        md, nb = ROOT / f"{f}.md", ROOT / f"{f}.ipynb"
        if nb.exists():
            cells = json.loads(nb.read_text())["cells"]
            text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        else:
            text = md.read_text()
        heading = re.search(r"^# +(.+?)\s*$", text, re.M)
        out[f] = heading.group(1) if heading else ""
    return out


def configured_fonts() -> list[dict]:
    """The fonts ``_config.yml`` sets (``\\setmainfont{FreeSerif}[Extension=.otf, ...]`` and the like):
    role, family and, where it is loaded by file name, the file."""
    fontpkg = _book.config()["sphinx"]["config"]["latex_elements"]["fontpkg"]
    out = []
    for role, name, options in re.findall(r"\\set(main|sans|mono|math)font\{([^}]+)\}(?:\[([^\]]*)\])?", fontpkg):
        ext = re.search(r"Extension\s*=\s*(\.\w+)", options)
        family, file = re.sub(r"\.(otf|ttf)$", "", name), None
        if ext:
            file = name + ext.group(1)
        elif name != family:
            file = name
        out.append({"role": role, "family": family, "file": file})
    return out


def png_outputs() -> dict[str, int]:
    """PNG outputs per notebook of ``_toc.yml`` (the figures the PDF must carry)."""
    counts = {}
    for nb in _book.notebooks():
        cells = json.loads(nb.read_text())["cells"]
        counts[nb.relative_to(ROOT).as_posix()] = sum(
            "image/png" in out.get("data", {}) for c in cells if c["cell_type"] == "code" for out in c["outputs"])
    return counts


def cited_titles() -> dict[str, str]:
    """Title of every references.bib entry that a chapter cites with {cite}`key` (or {cite:p} etc.)."""
    text = "".join(p.read_text() for p in (ROOT / "chapters").rglob("*") if p.suffix in (".md", ".ipynb"))
    keys = set()
    for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text):  # MyST roles (Markdown pages)
        keys |= {k.strip() for k in group.split(",")}
    keys |= set(re.findall(r"\]\(\{cite\}([\w.:-]+)\)", text))  # citation links (the chapters)
    bib = (ROOT / "references.bib").read_text()
    titles = {}
    for key in sorted(keys):
        entry = re.search(r"@\w+\{\s*" + re.escape(key) + r"\s*,(.*?)\n\}", bib, re.S)
        title = re.search(r"\btitle\s*=\s*[{\"](.*?)[}\"]\s*,?\s*\n", entry.group(1), re.S) if entry else None
        titles[key] = title.group(1).replace("{", "").replace("}", "") if title else ""
    return titles


# --------------------------------------------------------------------------- the checks

def test_page_count_is_sane(book):
    n = len(_book.notebooks())
    low, high = PAGES_MIN_PER_CHAPTER * n, PAGES_MAX_PER_CHAPTER * n + PAGES_MAX_BESIDES
    assert low <= book.pages <= high, (
        f"{book.path.name} has {book.pages} pages; for {n} chapters expect {low} to {high}")


@pytest.mark.parametrize("page", _book.toc_files())
def test_chapter_title_in_text(book, page):
    title = toc_titles()[page]
    assert title, f"{page}: no '# Title' heading found"
    text = _squash(book.text)
    missing = [piece for piece in _strip_markdown(title) if _squash(piece) not in text]
    assert not missing, f"the title of {page} ({title!r}) is not in the PDF's text: {missing}"


def test_cited_works_in_bibliography(book):
    titles = cited_titles()
    assert titles, "no {cite} in the chapters"
    unknown = [k for k, t in titles.items() if not t]
    assert not unknown, f"cited keys without an entry (or a title) in references.bib: {unknown}"
    text = _squash(book.text)
    missing = [f"{k}: {t}" for k, t in titles.items() if _squash(t) not in text]
    assert not missing, f"cited works missing from the PDF's bibliography: {missing}"


def test_latex_log_is_clean(book):
    problems = sorted({m.group(0).strip() for rx in LOG_PROBLEMS for m in rx.finditer(book.log)})
    assert not problems, (f"{book.path.with_suffix('.log').name}: {len(problems)} problem(s); a missing "
                          "character needs a font that has it (latex_elements.fontpkg in _config.yml):\n- "
                          + "\n- ".join(problems[:20]))


def test_fonts_embedded_and_as_configured(book):
    names = [f["name"] for f in book.fonts]
    not_embedded = [f["name"] for f in book.fonts if not f["embedded"]]
    assert not not_embedded, f"fonts not embedded in the PDF: {not_embedded}"
    fonts = configured_fonts()
    assert {f["role"] for f in fonts} >= {"main", "mono", "math"}, f"_config.yml sets only the fonts {fonts}"
    absent = [f["family"] for f in fonts if not any(_squash(n).startswith(_squash(f["family"])) for n in names)]
    assert not absent, f"fonts set in _config.yml but not used in the PDF: {absent}; the PDF has {names}"
    bitmap = [f["name"] for f in book.fonts if f["type"] == "Type 3"]
    assert not bitmap, f"bitmap (Type 3) fonts in the PDF: {bitmap}"


def test_figures_embedded(book):
    pngs = png_outputs()
    expected = sum(pngs.values())
    assert expected > 0, "no chapter has a figure (a PNG output)"
    assert len(book.images) >= expected, (
        f"{book.path.name} embeds {len(book.images)} images, the chapters have {expected} PNG outputs ({pngs})")
    tiny = [r for r in book.images if int(r["width"]) < 50 or int(r["height"]) < 50]
    assert not tiny, f"images smaller than 50 px: {tiny[:5]}"


def test_html_book_carries_this_pdf(book):
    """With OPTLAB_BOOK_HTML: the HTML build copied this PDF to its root, where the download button points."""
    given = os.environ.get("OPTLAB_BOOK_HTML")
    if not given:
        pytest.skip("OPTLAB_BOOK_HTML not set (the HTML build copies the PDF from _build/latex when it exists)")
    html = Path(given) if Path(given).is_absolute() else ROOT / given
    copy = html / book_pdf.pdf_name()
    assert copy.is_file(), (f"{copy} is missing: build the PDF first (python tools/book_pdf.py), "
                            "then the HTML (jupyter-book build .), which copies it")
    assert copy.read_bytes() == book.path.read_bytes(), f"{copy} is not the PDF {book.path}: rebuild the HTML"
