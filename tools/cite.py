#!/usr/bin/env python
"""Rewrite MyST citation roles in chapter notebooks into citation links that read well anywhere.

    python tools/cite.py chapters/foundations/last_iterate.ipynb   # rewrite in place
    python tools/cite.py --check                                    # every chapter; exit 1 if a role is left
    python tools/cite.py --dry-run CHAPTER.ipynb                    # print the rewritten cells, write nothing

A chapter cites with an ordinary Markdown link to ``{cite}KEY`` (``KEY`` in
``references.bib``), whose text is the citation as the book prints it:

- in running text, ``[Liu and Zhou (2024)]({cite}liu2024revisiting)``;
- in brackets, ``([Liu and Zhou, 2024]({cite}liu2024revisiting))``, several keys as
  ``([Shamir and Zhang, 2013]({cite}shamir2013stochastic); [Harvey et al., 2019]({cite}harvey2019tight))``.

Colab and Jupyter show the link text; the book's extension (``_ext/optlab_book``) turns each
link into a citation linked to the bibliography.  This tool converts ``{cite}`key```
(also ``{cite:p}``, ``{cite:t}``, several keys ``{cite}`a,b```) in Markdown cells:
a role right after the authors' names (``Liu and Zhou {cite}`liu2024revisiting```) becomes
the running-text form, any other role the bracketed form.  ``{cite}`` roles inside square
brackets written by the author (``[{cite}`key`, Thm. 2]``) keep the brackets, which become
round ones; inside parentheses written by the author, no second pair is added.  Other MyST
roles are reported, not changed.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "_ext"))
from _book import ROOT, resolve  # noqa: E402
from optlab_book import bib, cells  # noqa: E402

BIBFILE = ROOT / "references.bib"
ROLE = re.compile(r"\{cite(?::(?P<kind>[a-z]+))?\}`(?P<keys>[^`]+)`")


def _link(key: str, textual: bool) -> str:
    text = bib.textual(key, BIBFILE) if textual else bib.parenthetical(key, BIBFILE)
    return f"[{text}]({{cite}}{key})"


def _authors_pattern(key: str) -> re.Pattern:
    """The authors' names of ``key`` as they may stand before the role (any whitespace, line breaks)."""
    words = bib.authors_of(key, BIBFILE).split()
    return re.compile(r"\s+".join(re.escape(w) for w in words) + r"\s*$")


def _inside_parentheses(before: str) -> bool:
    """Whether the text before a role, in its paragraph and outside math, has an unclosed '('."""
    paragraph = re.split(r"\n\s*\n", before)[-1]
    prose = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", "", paragraph, flags=re.S)
    depth = 0
    for ch in prose:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        depth = max(depth, 0)
    return depth > 0


def convert(markdown: str) -> str:
    """``markdown`` with every ``{cite}`` role replaced by citation links."""
    out, pos = [], 0
    for m in ROLE.finditer(markdown):
        keys = [k.strip() for k in m["keys"].split(",") if k.strip()]
        missing = [k for k in keys if k not in bib.entries(BIBFILE)]
        if missing:
            raise SystemExit(f"unknown citation key(s) {missing}: add them to references.bib first")
        before = markdown[pos:m.start()]
        after = markdown[m.end():]
        if len(keys) == 1 and m["kind"] != "p":
            names = _authors_pattern(keys[0]).search(before)
            if names:  # "Liu and Zhou {cite}`k`" -> "[Liu and Zhou (2024)]({cite}k)"
                out.append(before[:names.start()] + _link(keys[0], textual=True))
                pos = m.end()
                continue
        links = "; ".join(_link(k, textual=False) for k in keys)
        # "[{cite}`k`, Thm. 2]" -> "([Nesterov, 2018]({cite}k), Thm. 2)"
        if before.endswith("[") and re.match(r"[^\[\]]*\]", after) and not re.match(r"[^\[\]]*\]\(", after):
            close = after.index("]")
            out.append(before[:-1] + "(" + links + after[:close] + ")")
            pos = m.end() + close + 1
            continue
        # inside the author's own parentheses: "(gradient descent, {cite}`k`)" needs no second pair
        out.append(before + (links if _inside_parentheses(markdown[:m.start()]) else f"({links})"))
        pos = m.end()
    out.append(markdown[pos:])
    return "".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("paths", nargs="*", help="notebooks or folders (default: every chapter in _toc.yml)")
    ap.add_argument("--check", action="store_true", help="report MyST roles/directives left in Markdown cells")
    ap.add_argument("--dry-run", action="store_true", help="print the rewritten cells, write nothing")
    args = ap.parse_args(argv)
    bad = 0
    for path in resolve(args.paths):
        nb = nbformat.read(path, as_version=4)
        changed = False
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "markdown":
                continue
            new = cell.source if args.check else convert(cell.source)
            if new != cell.source:
                changed = True
                if args.dry_run:
                    print(f"--- {path.name} cell {index}\n{new}\n")
                cell.source = new
            left = cells.raw_myst(new)
            if left:
                print(f"{path}: cell {index}: {', '.join(left)} left (rewrite it as plain Markdown)")
                bad += 1
        if changed and not args.dry_run:
            nbformat.write(nb, path)
            print(f"rewrote the citations of {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
