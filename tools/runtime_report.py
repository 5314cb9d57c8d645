#!/usr/bin/env python
"""Time every chapter and write the book's runtime status page.

    python tools/runtime_report.py              # execute every chapter (not in place) and write the page
    python tools/runtime_report.py --from-json  # reuse the times tools/execute.py saved in _build/runtimes.json

The page, ``chapters/appendix/runtime.md``, lists each chapter of ``_toc.yml``
with its wall time (one thread, as in the tests and CI) against the budget of
60 s, and the versions of Python and of the libraries that produced the stored
outputs.  Re-run it after adding a chapter; a test checks that the page lists
every chapter and that each one is within budget.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _book import ROOT, notebooks, title_of  # noqa: E402

BUDGET_S = 60.0
PAGE = ROOT / "chapters" / "appendix" / "runtime.md"
LIBS = ("numpy", "scipy", "torch", "matplotlib", "scikit-learn", "jupyter-book", "nbval")


def versions() -> dict:
    out = {"Python": platform.python_version()}
    for lib in LIBS:
        try:
            out[lib] = md.version(lib)
        except md.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def render(times: dict) -> str:
    rows = []
    for path in notebooks():
        rel = path.relative_to(ROOT).as_posix()
        link = Path(rel).relative_to("chapters").as_posix()
        seconds = times.get(rel)
        shown = f"{seconds:.1f}" if seconds is not None else "not measured"
        status = "within budget" if seconds is not None and seconds <= BUDGET_S else "**over budget**"
        if seconds is None:
            status = "**not measured**"
        rows.append(f"| [{title_of(path)}](../{link}) | `{rel}` | {shown} | {status} |")
    total = sum(v for k, v in times.items() if (ROOT / k) in notebooks())
    vers = "\n".join(f"| {k} | {v} |" for k, v in versions().items())
    return f"""# Runtime status

Every chapter must run top to bottom in at most {BUDGET_S:.0f} seconds on a
2-core machine with one thread (`OMP_NUM_THREADS=1`), the setting of the tests
and of continuous integration. This page is written by
`tools/runtime_report.py`; the times are wall-clock seconds of one execution of
each chapter in a fresh kernel, on the machine that last refreshed the book's
stored outputs.

| chapter | notebook | seconds | status |
|---|---|---:|---|
{chr(10).join(rows)}

All chapters together: {total:.0f} s.

## Versions

The stored outputs were produced with:

| software | version |
|---|---|
{vers}

Machine: {platform.machine()}, {os.cpu_count()} CPU cores.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from-json", action="store_true", help="reuse _build/runtimes.json instead of executing")
    args = ap.parse_args(argv)
    if args.from_json:
        times = json.loads((ROOT / "_build" / "runtimes.json").read_text())
    else:
        from execute import execute, save_runtimes, single_thread_env

        single_thread_env()
        times = {}
        for path in notebooks():
            seconds, _ = execute(path, write=False)
            times[path.relative_to(ROOT).as_posix()] = round(seconds, 1)
            print(f"{seconds:7.1f} s  {path.relative_to(ROOT)}", flush=True)
        save_runtimes(times)  # so that a later --from-json (after tools/execute.py on one chapter) keeps them
    PAGE.write_text(render(times))
    print(f"wrote {PAGE.relative_to(ROOT)}")
    over = [k for k, v in times.items() if v > BUDGET_S]
    if over:
        print(f"over the {BUDGET_S:.0f} s budget: {', '.join(over)}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
