r"""The PDF of the book: build it, and offer it in the HTML book.

As a script, it builds the PDF with Jupyter Book's LaTeX builder (``xelatex`` through
``latexmk``, Debian's TeX Live, nothing downloaded)::

    python tools/book_pdf.py                      # -> _build/latex/<name>.pdf
    python tools/book_pdf.py --path-output DIR    # -> DIR/_build/latex/<name>.pdf

which is ``jupyter-book build . --builder pdflatex -W --all`` with LaTeX told never to
stop for input (``-interaction=nonstopmode -halt-on-error``), timed, with the page count.
The name is the ``targetname`` of ``latex.latex_documents`` in ``_config.yml``
(``python tools/book_pdf.py --name`` prints it).

As a Sphinx extension (``sphinx.local_extensions`` in ``_config.yml``), it gives every
HTML page a header button "Download the book (PDF)" that links to ``<name>.pdf`` at the
root of the HTML book, and at the end of an HTML build it copies the PDF there from
``_build/latex/`` (the LaTeX builder's folder beside ``_build/html``) when that PDF
exists.  Build the PDF first, then the HTML (``.ci/run`` does).  Without a PDF the
button is still there, the build says so in one line and stays free of warnings
(``-W`` passes).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BUTTON_TOOLTIP = "Download the book (PDF)"
BUTTON_LABEL = "download-book-pdf-button"  # the theme adds the class btn-<label> to the link
# LaTeX never waits for input (no terminal in CI) and stops at the first error.
LATEXOPTS = "-interaction=nonstopmode -halt-on-error"


def pdf_name(latex_targetname: str | None = None) -> str:
    """``<name>.pdf`` from the LaTeX target name (``_config.yml`` when not given)."""
    if latex_targetname is None:
        sys.path.insert(0, str(ROOT / "tools"))
        import _book

        latex_targetname = _book.config()["latex"]["latex_documents"]["targetname"]
    return re.sub(r"\.tex$", "", latex_targetname) + ".pdf"


# --------------------------------------------------------------------------- building


def jupyter_book() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    return str(exe) if exe.exists() else (shutil.which("jupyter-book") or "jupyter-book")


def build(path_output: Path | None = None, *, quiet: bool = False) -> Path:
    """Build the PDF; return its path.  Raises ``RuntimeError`` with the output's tail on failure."""
    # --all: read every page afresh, so that -W sees every warning (Sphinx does not repeat the warnings
    # of pages it has read before, e.g. by an HTML build sharing _build/.doctrees).
    cmd = [jupyter_book(), "build", str(ROOT), "--builder", "pdflatex", "-W", "--all"]
    if path_output is not None:
        cmd += ["--path-output", str(path_output)]
    latex = (Path(path_output) if path_output is not None else ROOT) / "_build" / "latex"
    env = dict(os.environ, OMP_NUM_THREADS="1", LATEXOPTS=LATEXOPTS)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=3600)
    pdf = latex / pdf_name()
    if not quiet or proc.returncode != 0:
        # LaTeX's own transcript stays in <name>.log; Sphinx's warnings are in the output.
        sys.stdout.write(proc.stdout[-3000:] if quiet else proc.stdout)
        sys.stderr.write(proc.stderr)
    if proc.returncode != 0 or not pdf.exists():
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}); "
                           f"see {pdf.with_suffix('.log')}:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return pdf


def page_count(pdf: Path) -> int | None:
    """Pages of a PDF by ``pdfinfo`` (poppler-utils), None where it is missing."""
    if not shutil.which("pdfinfo"):
        return None
    out = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", out, re.M).group(1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path-output", type=Path, help="build into DIR/_build/latex (default: ./_build/latex)")
    parser.add_argument("--name", action="store_true", help="print the PDF's file name and exit")
    args = parser.parse_args(argv)
    if args.name:
        print(pdf_name())
        return 0
    start = time.perf_counter()
    try:
        pdf = build(args.path_output.resolve() if args.path_output else None, quiet=True)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    pages = page_count(pdf)
    print(f"PDF: {pdf} ({pages if pages is not None else '?'} pages) built in {time.perf_counter() - start:.0f} s")
    return 0


# --------------------------------------------------------------------------- the Sphinx extension


def _add_button(app, pagename, templatename, context, doctree):
    """After sphinx-book-theme's own header buttons (priority 501): the book's PDF, first in the row."""
    buttons = context.get("header_buttons")
    if buttons is None or "pathto" not in context:
        return
    buttons.insert(0, {
        "type": "link",
        "url": context["pathto"](_name(app.config), 1),
        "tooltip": BUTTON_TOOLTIP,
        "icon": "fas fa-book",
        "label": BUTTON_LABEL,
    })


def _copy_pdf(app, exception):
    """At the end of an HTML build: ``_build/latex/<name>.pdf`` -> ``_build/html/<name>.pdf``, if it exists."""
    if exception is not None or app.builder.format != "html":
        return
    from sphinx.util import logging

    name = _name(app.config)
    src = Path(app.outdir).parent / "latex" / name
    if src.is_file():
        shutil.copy2(src, Path(app.outdir) / name)
        logging.getLogger(__name__).info(f"book_pdf: copied {src} into the HTML book")
    else:
        logging.getLogger(__name__).info(
            f"book_pdf: no {src} (build it first: python tools/book_pdf.py); the button links to an absent file")


def _name(config) -> str:
    """``book_pdf`` if set, else the name of the first LaTeX document (Jupyter Book sets it from
    ``_config.yml`` after Sphinx starts, so it is read when needed, not at start-up)."""
    if config.book_pdf:
        return config.book_pdf
    docs = config.latex_documents
    return pdf_name(docs[0][1]) if docs else "book.pdf"


def setup(app):
    app.add_config_value("book_pdf", "", "", types=[str])
    app.connect("html-page-context", _add_button, priority=900)
    app.connect("build-finished", _copy_pdf)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    sys.exit(main())
