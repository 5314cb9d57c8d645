#!/usr/bin/env python3
"""Check a checkout of the book against its conventions (CONTRIBUTING.md).

    python tools/check_book.py [--strict] [--part PART ...] [--repo DIR]

Prints one line per shortfall and a summary. With --strict it exits 1 when
anything falls short (otherwise always 0). Standard library only, so that it runs
before the environment is installed; the test suite checks the same conventions in
more depth (tests/test_chapters.py). CI runs it with --strict (.ci/run).
"""
import argparse
import json
import re
import sys
from pathlib import Path

# paper id -> (part, slug), the table in DESIGN.md section 2
CHAPTERS = {
    "P30": ("foundations", "lower_bounds"), "P10": ("foundations", "last_iterate"),
    "P33": ("foundations", "schedule_refinement"),
    "P27": ("stochastic", "adadagrad"), "P31": ("stochastic", "lion"), "P25": ("stochastic", "mfac"),
    "P12": ("stochastic", "target_surrogates"), "P05": ("stochastic", "policy_gradient"),
    "P03": ("zeroth_order", "consensus"), "P09": ("zeroth_order", "deepzero"),
    "P24": ("zeroth_order", "rank_sgd"), "P13": ("zeroth_order", "private_gsd"),
    "P28": ("bayesopt", "gp_bo"), "P26": ("bayesopt", "bnn_surrogates"),
    "P04": ("constrained", "augmented_lagrangian"), "P01": ("constrained", "dag_learning"),
    "P16": ("constrained", "hard_constraints"), "P17": ("constrained", "graph_solvers"),
    "P14": ("constrained", "multiobjective_pde"), "P32": ("constrained", "sor_bandits"),
    "P11": ("constrained", "robust_two_stage"),
    "P21": ("bilevel", "penalty"), "P06": ("bilevel", "lv_hba"), "P15": ("bilevel", "bo_rep"),
    "P18": ("bilevel", "blockwise_vr"), "P07": ("bilevel", "meta_learning"),
    "P02": ("networks", "convex_relu"), "P23": ("networks", "attention_svm"),
    "P29": ("networks", "magnitude_pruning"), "P22": ("networks", "group_envelope"),
    "P08": ("federated", "fzoos"), "P19": ("federated", "ggeur"), "P20": ("federated", "diff2"),
}
TOP = ["README.md", "CONTRIBUTING.md", "LICENSE", "Makefile", "_config.yml", "_toc.yml", "references.bib",
       "requirements.txt", "pyproject.toml", "chapters", "optlab", "tests", "tools", "_ext", ".ci/run"]
ADDRESS = re.compile(r"at 0x[0-9a-fA-F]{6,}")
CITE_LINK = re.compile(r"\]\(\{cite\}[A-Za-z0-9_:.\-]+\)")
MYST_ROLE = re.compile(r"(?<![\w\\^_$])\{[a-zA-Z][\w:+-]*\}`")
MYST_DIRECTIVE = re.compile(r"(?m)^\s*(:::|`{3,}\s*\{)")
MAX_LINE = 88


def tags(cell):
    return set(cell.get("metadata", {}).get("tags", []))


def text_of(output):
    if output.get("output_type") == "stream":
        return "".join(output.get("text", ""))
    data = output.get("data", {})
    return "".join(data.get("text/plain", ""))


def check_notebook(path, short):
    rel = path.as_posix()
    try:
        nb = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        short.append(f"{rel}: not a readable notebook ({exc})")
        return
    cells = nb.get("cells", [])
    code = [c for c in cells if c.get("cell_type") == "code"]
    md = "\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "markdown")
    if not md.lstrip().startswith("# "):
        short.append(f"{rel}: the first markdown cell should start with a '# Title'")
    counts = [c.get("execution_count") for c in code if "".join(c.get("source", "")).strip()]
    if any(n is None for n in counts):
        short.append(f"{rel}: {sum(n is None for n in counts)} code cells have no stored outputs (re-execute it)")
    elif counts != list(range(1, len(counts) + 1)):
        short.append(f"{rel}: execution counts are not 1..n in order (store outputs from one clean top-to-bottom run)")
    if not any("setup" in tags(c) for c in code):
        short.append(f"{rel}: no code cell tagged 'setup'")
    if not any("claim" in tags(c) for c in code):
        short.append(f"{rel}: no code cell tagged 'claim' (the paper's headline claim, asserted)")
    solutions = [c for c in code if "solution" in tags(c)]
    if not solutions:
        short.append(f"{rel}: no exercise solution cell tagged 'solution'")
    elif not any("### BEGIN SOLUTION" in "".join(c.get("source", "")) for c in solutions):
        short.append(f"{rel}: solution cells lack '### BEGIN SOLUTION' / '### END SOLUTION' markers")
    if not re.search(r"(?m)^#+ .*Exercises", md):
        short.append(f"{rel}: no 'Exercises' heading")
    if not CITE_LINK.search(md):
        short.append(f"{rel}: cites nothing (cite with a link: [Liu and Zhou (2024)]({{cite}}liu2024revisiting))")
    if MYST_ROLE.search(md) or MYST_DIRECTIVE.search(md):
        short.append(f"{rel}: MyST roles or directives in Markdown cells (Colab shows them raw; "
                     "python tools/cite.py converts {cite} roles)")
    images = 0
    for c in code:
        for o in c.get("outputs", []):
            kind = o.get("output_type")
            if kind == "error":
                short.append(f"{rel}: a stored output is an error ({o.get('ename')})")
            if kind == "stream" and o.get("name") == "stderr":
                short.append(f"{rel}: stderr in stored outputs: {text_of(o)[:80]!r}")
            if "image/png" in o.get("data", {}):
                images += 1
                if not c.get("metadata", {}).get("mystnb", {}).get("image", {}).get("alt"):
                    short.append(f"{rel}: a figure without alt text (cell metadata mystnb.image.alt)")
            if any(len(line) > MAX_LINE for line in text_of(o).splitlines()):
                short.append(f"{rel}: a printed line longer than {MAX_LINE} characters")
            if ADDRESS.search(text_of(o)):
                short.append(f"{rel}: an output shows a memory address (nbval will fail on it)")
    if images == 0:
        short.append(f"{rel}: no figure")
    size = path.stat().st_size
    if size > 3_000_000:
        short.append(f"{rel}: {size / 1e6:.1f} MB; keep a chapter under 3 MB (smaller or fewer PNGs)")


def check_module(path, short):
    text = path.read_text()
    rel = path.as_posix()
    if not re.match(r'\s*(#.*\n)*\s*[rR]?"""', text):
        short.append(f"{rel}: no module docstring")
    if "References" not in text:
        short.append(f"{rel}: no 'References' section in its docstrings")
    if "Book:" not in text:
        short.append(f"{rel}: no 'Book:' line pointing to its chapter")
    for bad in ("print(", "plt.show("):
        if re.search(r"(?m)^\s*" + re.escape(bad), text):
            short.append(f"{rel}: library code calls {bad[:-1]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--repo", default=".")
    ap.add_argument("--part", action="append", help="only these parts' chapters (default: those present)")
    ap.add_argument("--paper", action="append", help="only these paper ids, which must be present")
    ap.add_argument("--print-paths", action="store_true", help="print the chapter paths of --paper ids and exit")
    args = ap.parse_args()
    if args.print_paths:
        for pid in args.paper or []:
            part, slug = CHAPTERS[pid]
            print(f"chapters/{part}/{slug}.ipynb")
        return 0
    root = Path(args.repo)
    import os
    os.chdir(root)
    short = []
    for name in TOP:
        if not Path(name).exists():
            short.append(f"missing top-level {name}")
    toc = Path("_toc.yml").read_text() if Path("_toc.yml").exists() else ""
    req = Path("requirements.txt").read_text() if Path("requirements.txt").exists() else ""
    if req and re.search(r"(?m)^torch\b(?!==2\.13\.0)", req):
        short.append("requirements.txt: torch must be pinned to torch==2.13.0 (the book's pinned version)")
    if req and not re.search(r"(?m)^jupyter-book\s*(==\s*1\.|[<>=~!,\s\d.]*<\s*2)", req):
        short.append("requirements.txt: jupyter-book should be pinned to version 1")
    wanted = {}
    for pid, (part, slug) in CHAPTERS.items():
        if args.paper and pid not in args.paper:
            continue
        if args.part and part not in args.part:
            continue
        nb = Path("chapters", part, slug + ".ipynb")
        if not args.paper and not args.part and not nb.exists():
            continue
        wanted[pid] = (part, slug)
    present = 0
    for pid, (part, slug) in sorted(wanted.items(), key=lambda kv: kv[1]):
        nb = Path("chapters", part, slug + ".ipynb")
        mod = Path("optlab", part, slug + ".py")
        test = Path("tests", part, f"test_{slug}.py")
        if not nb.exists():
            short.append(f"{pid}: missing chapter {nb.as_posix()}")
            continue
        present += 1
        if f"chapters/{part}/{slug}" not in toc:
            short.append(f"{pid}: {nb.as_posix()} is not in _toc.yml")
        check_notebook(nb, short)
        if not mod.exists():
            short.append(f"{pid}: missing primary module {mod.as_posix()}")
        else:
            check_module(mod, short)
        if not test.exists():
            short.append(f"{pid}: missing tests {test.as_posix()}")
    for line in short:
        print(line)
    print(f"check_book: {present} chapters checked, {len(short)} shortfalls")
    return 1 if (args.strict and short) else 0


if __name__ == "__main__":
    sys.exit(main())
