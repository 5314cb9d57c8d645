#!/usr/bin/env python
"""Write the one setup-cell template and the book's cell metadata into every chapter, or check them.

Every chapter's setup cell (the code cell tagged ``setup``) starts with the same
block: in Colab, or any Python without ``optlab``, it installs the package from
the repository and release tag set once in ``_config.yml``; where ``optlab`` is
installed it does nothing but apply the book's plotting style.  The chapter's own
imports and seeds follow the block.

The tool also writes the cell metadata that the HTML book needs and that Colab and
Jupyter ignore (``CONVENTIONS``):

- the setup cell: tag ``hide-input`` and the MyST-NB prompts "Show setup code" /
  "Hide setup code" (the book shows it collapsed);
- every cell tagged ``solution`` (code, or Markdown for an answer in prose): tag
  ``hide-cell``; a code solution also gets the prompts "Show solution" / "Hide solution"
  (a Markdown answer is labelled "Show answer" by the book's extension);
- every code cell with ``mystnb.image.alt`` (a figure's alt text, written by the author):
  the same text as the cell's top-level ``alt``, which nbconvert (nbgrader's feedback
  pages) reads.

    python tools/setup_cell.py            # write the block and the metadata into every chapter in _toc.yml
    python tools/setup_cell.py --check    # exit 1 if a chapter's block or metadata differs
    python tools/setup_cell.py PATH ...   # only these notebooks

The install source can be overridden with the environment variable OPTLAB_SOURCE
(any pip requirement: a wheel path, a directory, ``optlab @ git+...``); the tests
use it to install a locally built wheel.
"""
from __future__ import annotations

import argparse
import sys

import nbformat

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _book import config, resolve  # noqa: E402

BEGIN = "# --- optlab setup (written by tools/setup_cell.py from one template: edit the template) ---"
END = "# --- end of optlab setup ---"
TEMPLATE = '''{begin}
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("optlab") is None:  # Colab or a fresh Python: install the book's package
    _source = os.environ.get("OPTLAB_SOURCE", "{source}")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", _source], check=True)
from optlab.plotting import use_style

use_style()  # opaque white figures, readable in the dark theme too
{end}'''


def install_source(cfg=None) -> str:
    """The pip requirement the setup cell installs from, built from ``_config.yml``."""
    cfg = cfg or config()
    url = cfg["repository"]["url"].rstrip("/")
    return f"optlab[data] @ git+{url}@{cfg['release']}"


def block(cfg=None) -> str:
    """The setup block, rendered from ``_config.yml``."""
    source = install_source(cfg)
    return TEMPLATE.format(begin=BEGIN, end=END, source=source)


SETUP_PROMPTS = {"code_prompt_show": "Show setup code", "code_prompt_hide": "Hide setup code"}
SOLUTION_PROMPTS = {"code_prompt_show": "Show solution", "code_prompt_hide": "Hide solution"}


def _tags(cell) -> list:
    return list(cell.metadata.get("tags", []))


def _wanted(cell):
    """(tags to add, mystnb keys to set, top-level keys to set) for one cell, by its tags."""
    tags, mystnb, top = [], {}, {}
    have = _tags(cell)
    if cell.cell_type == "code" and "setup" in have:
        tags, mystnb = ["hide-input"], dict(SETUP_PROMPTS)
    elif "solution" in have:
        tags = ["hide-cell"]
        if cell.cell_type == "code":
            mystnb = dict(SOLUTION_PROMPTS)
    alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt") if cell.cell_type == "code" else None
    if isinstance(alt, str) and alt.strip():
        top["alt"] = alt
    return tags, mystnb, top


def metadata_problems(nb) -> list[str]:
    """What differs from the book's cell-metadata conventions (empty: nothing)."""
    problems = []
    for index, cell in enumerate(nb.cells):
        tags, mystnb, top = _wanted(cell)
        missing = [t for t in tags if t not in _tags(cell)]
        if missing:
            problems.append(f"cell {index}: missing tag(s) {missing}")
        have = cell.metadata.get("mystnb", {})
        wrong = {k: v for k, v in mystnb.items() if have.get(k) != v}
        if wrong:
            problems.append(f"cell {index}: mystnb metadata should have {wrong}")
        wrong = {k: v for k, v in top.items() if cell.metadata.get(k) != v}
        if wrong:
            problems.append(f"cell {index}: metadata should have {wrong} (a copy of mystnb.image.alt)")
    return problems


def apply_metadata(nb) -> bool:
    """Write the book's cell-metadata conventions into ``nb``; return True if anything changed."""
    changed = False
    for cell in nb.cells:
        tags, mystnb, top = _wanted(cell)
        missing = [t for t in tags if t not in _tags(cell)]
        if missing:
            cell.metadata["tags"] = _tags(cell) + missing
            changed = True
        if any(cell.metadata.get("mystnb", {}).get(k) != v for k, v in mystnb.items()):
            cell.metadata.setdefault("mystnb", {}).update(mystnb)
            changed = True
        if any(cell.metadata.get(k) != v for k, v in top.items()):
            cell.metadata.update(top)
            changed = True
    return changed


def setup_cell(nb):
    """The code cell tagged ``setup`` (exactly one), or raise."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "setup" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"expected exactly one code cell tagged 'setup', found {len(cells)}")
    return cells[0]


def with_block(source: str, blk: str) -> str:
    """``source`` with its setup block replaced by ``blk`` (prepended when absent)."""
    if BEGIN in source and END in source:
        head, rest = source.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        return head + blk + tail
    return blk + ("\n" + source if source.strip() else "")


def current_block(source: str):
    """The setup block inside ``source``, or None."""
    if BEGIN not in source or END not in source:
        return None
    return BEGIN + source.split(BEGIN, 1)[1].split(END, 1)[0] + END


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", help="notebooks or folders (default: every chapter in _toc.yml)")
    ap.add_argument("--check", action="store_true", help="only report chapters whose block differs")
    args = ap.parse_args(argv)
    blk = block()
    bad = 0
    for path in resolve(args.paths):
        nb = nbformat.read(path, as_version=4)
        try:
            cell = setup_cell(nb)
        except ValueError as exc:
            print(f"{path}: {exc}")
            bad += 1
            continue
        block_ok, problems = current_block(cell.source) == blk, metadata_problems(nb)
        if block_ok and not problems:
            continue
        if args.check:
            if not block_ok:
                print(f"{path}: setup block differs from the template (run tools/setup_cell.py)")
            for problem in problems:
                print(f"{path}: {problem} (run tools/setup_cell.py)")
            bad += 1
        else:
            if not block_ok:
                cell.source = with_block(cell.source, blk)
            apply_metadata(nb)
            nbformat.write(nb, path)
            print(f"wrote setup block and cell metadata into {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
