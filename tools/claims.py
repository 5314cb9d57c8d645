#!/usr/bin/env python
"""Re-run chapters' claims on any seeds, and write the book's claims page from the stored verdicts.

    python tools/claims.py --seeds 101 102 103 chapters/foundations/last_iterate.ipynb
    python tools/claims.py --seeds 7 --set N_REPLICAS=300                # every chapter, smaller
    python tools/claims.py --ledger                                      # write chapters/appendix/claims.md
    python tools/claims.py --ledger --check                              # exit 1 if the page is out of date

Every chapter's claim cell (the code cell tagged ``claim``) starts with plain
assignments of its seeds and sizes (``SEEDS = [1, 2, 3]``, ``N_REPLICAS = 1000``)
and ends with one call of :func:`optlab.claims.claim`.  A re-run executes the
chapter's setup cell and its claim cell only (the claim cell must not depend on
the experiments above it), with ``SEEDS`` and any ``--set NAME=VALUE`` replaced,
and prints the verdict; it exits 1 if a claim fails.

The ledger page lists, for every chapter, the paper, the claim, each asserted
check with its measured value and margin, the seeds, the status and the wrong
variants the chapter's tests show the check failing on.  It is built from the
verdicts stored in the notebooks' outputs (MIME type
``application/vnd.optlab.claim+json``), so it shows exactly what the book shows.

The Python function :func:`run_claim` does the same from code; the chapters'
tests use it to run a claim against wrong variants of a method (``patches``).
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _book import ROOT, notebooks, resolve, title_of  # noqa: E402

PAGE = ROOT / "chapters" / "appendix" / "claims.md"
MIME = "application/vnd.optlab.claim+json"


def _tagged(nb, tag):
    cells = [c for c in nb.cells if c.cell_type == "code" and tag in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"expected exactly one code cell tagged {tag!r}, found {len(cells)}")
    return cells[0]


def claim_sources(path: Path) -> tuple[str, str]:
    """The setup cell's and the claim cell's sources of a chapter."""
    nb = nbformat.read(path, as_version=4)
    return _tagged(nb, "setup").source, _tagged(nb, "claim").source


def assigned_names(source: str) -> set:
    """The names that a claim cell assigns at its top level (the ones a re-run can replace)."""
    return {node.targets[0].id for node in ast.parse(source).body
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)}


def _override(source: str, values: dict) -> str:
    """``source`` with its top-level assignments ``NAME = ...`` of ``values`` replaced."""
    tree = ast.parse(source)
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in values:
                node.value = ast.parse(repr(values[name]), mode="eval").body
                found.add(name)
    missing = set(values) - found
    if missing:
        raise ValueError(f"the claim cell has no top-level assignment of {sorted(missing)} to replace")
    return ast.unparse(tree)


@contextlib.contextmanager
def _patched(patches: dict):
    """Temporarily replace ``"package.module.attribute"`` objects (wrong variants of a method)."""
    saved = []
    try:
        for dotted, value in (patches or {}).items():
            module_name, attr = dotted.rsplit(".", 1)
            module = importlib.import_module(module_name)
            saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, value)
        yield
    finally:
        for module, attr, value in reversed(saved):
            setattr(module, attr, value)


def run_claim(path, seeds=None, sizes=None, patches=None):
    """Execute a chapter's setup and claim cells in a fresh namespace; return the verdict.

    ``seeds`` replaces ``SEEDS``; ``sizes`` maps other top-level names of the claim
    cell to new values; ``patches`` maps dotted names to replacement objects for the
    duration of the run.  A failing claim raises :class:`optlab.claims.ClaimFailed`.
    """
    import matplotlib

    matplotlib.use("Agg")
    from optlab import claims

    setup, cell = claim_sources(Path(path))
    values = dict(sizes or {})
    if seeds is not None:
        values["SEEDS"] = [int(s) for s in seeds]
    if values:
        cell = _override(cell, values)
    namespace = {"__name__": "__claim__"}
    before = len(claims.LAST)
    with _patched(patches):
        exec(compile(setup, f"{path}:setup", "exec"), namespace)
        exec(compile(cell, f"{path}:claim", "exec"), namespace)
    if len(claims.LAST) == before:
        raise ValueError(f"{path}: the claim cell did not call optlab.claims.claim")
    return claims.LAST[-1]


# --------------------------------------------------------------------------- the ledger page

def stored_verdict(path: Path) -> dict:
    """The verdict stored in a chapter's claim-cell outputs (the JSON the book shows)."""
    cell = _tagged(nbformat.read(path, as_version=4), "claim")
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if MIME in data:
            return data[MIME]
    raise ValueError(f"{path}: the claim cell has no stored verdict (re-execute it with tools/execute.py)")


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _check_row(c: dict) -> str:
    values = c["value"]
    measured = _fmt(values[0]) if len(values) == 1 else f"{_fmt(min(values))} to {_fmt(max(values))}"
    if c["low"] is not None and c["high"] is not None:
        bound = f"in [{_fmt(c['low'])}, {_fmt(c['high'])}]"
    else:
        bound = f">= {_fmt(c['low'])}" if c["low"] is not None else f"<= {_fmt(c['high'])}"
    return f"{c['name']}: {measured}, required {bound} (margin {_fmt(c['margin'])})"


def ledger() -> str:
    """The claims page, in Markdown."""
    rows, details = [], []
    for path in notebooks():
        rel = path.relative_to(ROOT / "chapters")
        v = stored_verdict(path)
        link = f"../{rel.as_posix()}"
        title = title_of(path)
        margin = min(c["margin"] for c in v["checks"])
        rows.append(f"| {v['paper']} | [{title}]({link}) | {v['status']} | {len(v['checks'])} | {_fmt(margin)} | "
                    f"{', '.join(map(str, v['seeds']))} | {len(v['rejects'])} |")
        checks = "\n".join(f"- {_check_row(c)}" for c in v["checks"])
        sizes = ", ".join(f"`{k} = {val}`" for k, val in v["sizes"].items()) or "none"
        rejects = "\n".join(f"- {r}" for r in v["rejects"]) or "- (none recorded)"
        note = f"\n**Note.** {v['note']}\n" if v["note"] else ""
        details.append(f"""## {v['paper']}: {title}

**Claim, as checked.** {v['statement']}

**Status:** {v['status']}.
{note}
**Checks** (every value must lie in its interval; the margin is the smallest distance to a bound):

{checks}

**Seeds:** {', '.join(map(str, v['seeds']))}. **Sizes:** {sizes}.

**Shown to fail on** (the chapter's tests run this check on these wrong variants and require it to fail):

{rejects}

Re-run on your own seeds: `python tools/claims.py --seeds 101 102 103 chapters/{rel.as_posix()}`
""")
    return f"""# The claims, checked

Every chapter ends its experiments with a claim check: the paper's headline claim,
restated at the scale of a laptop, asserted across several seeds, with the
thresholds it implies. This page collects the verdicts from the book's stored
outputs (it is written by `tools/claims.py --ledger`, and a test fails when it is
out of date). A status is one of *holds*, *holds in part* (the note says what does
not) or *does not reproduce at this scale* (an honest negative result: the checks
assert what does hold, the note gives the reason).

A check that a wrong implementation also passes checks nothing, so every chapter's
tests run its claim check against plausible wrong variants of the method (the
average instead of the last iterate, a wrong threshold, a missing correction) and
require it to fail; the last column counts them.

**Re-run any claim on seeds of your choice**, from a clone of the book's repository:

```bash
python tools/claims.py --seeds 101 102 103 chapters/foundations/last_iterate.ipynb
python tools/claims.py --seeds 7 8 --set N_REPLICAS=300       # every chapter, at another size
```

| paper | chapter | status | checks | smallest margin | seeds | wrong variants rejected |
|---|---|---|---:|---:|---|---:|
{chr(10).join(rows)}

{chr(10).join(details)}"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", help="chapter notebooks (default: every chapter with a claim)")
    ap.add_argument("--seeds", type=int, nargs="+", help="replace the claim cell's SEEDS (integers; paths may follow)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="replace another top-level assignment of the claim cell (a Python literal)")
    ap.add_argument("--ledger", action="store_true", help="write the claims page from the stored verdicts")
    ap.add_argument("--check", action="store_true", help="with --ledger: exit 1 if the page is out of date")
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--seeds" in argv:  # --seeds 1 2 chapter.ipynb: the seeds are the integers right after the flag
        i = argv.index("--seeds") + 1
        j = i
        while j < len(argv) and argv[j].lstrip("-").isdigit():
            j += 1
        argv = argv[:i - 1] + argv[j:] + ["--seeds", *argv[i:j]]
    args = ap.parse_args(argv)
    if args.ledger:
        text = ledger()
        if args.check:
            if not PAGE.exists() or PAGE.read_text() != text:
                print(f"{PAGE.relative_to(ROOT)} is out of date: run python tools/claims.py --ledger")
                return 1
            return 0
        PAGE.write_text(text)
        print(f"wrote {PAGE.relative_to(ROOT)}")
        return 0
    from optlab.claims import ClaimFailed

    sizes = {}
    for item in args.set:
        name, _, value = item.partition("=")
        sizes[name.strip()] = ast.literal_eval(value.strip())
    paths, failed = resolve(args.paths), 0
    for path in paths:
        print(f"== {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)
        names = assigned_names(claim_sources(path)[1])
        skipped = sorted(set(sizes) - names)
        if skipped:
            print(f"(this claim cell has no {', '.join(skipped)}: left as it is)")
        try:
            run_claim(path, seeds=args.seeds, sizes={k: v for k, v in sizes.items() if k in names})
        except ClaimFailed as err:
            print(err)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
