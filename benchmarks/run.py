#!/usr/bin/env python
"""Run every side-by-side benchmark and write the book's page of results.

    python benchmarks/run.py                  # full mode: measures every comparison, writes the page (minutes)
    python benchmarks/run.py --only bench_x   # measures only these scripts, keeps the other rows
    python benchmarks/run.py --page           # rewrites the page from results.json (after editing a SUMMARY)
    python benchmarks/run.py --quick          # tiny sizes: only checks that optlab and each peer agree

Writes ``benchmarks/results.json`` and ``chapters/appendix/benchmarks.md`` with its figure
``chapters/appendix/benchmarks.png``: one table row per comparison and problem, the quality ratio
(optlab's metric over the peer's; lower is better for both, so a ratio below 1 means optlab did better) and
the time ratio (optlab's wall time over the peer's, the median of several repeats, both measured in the same
process and run, one thread), the machine, the versions and the date.  Each comparison's entry records a hash
of its script's code (its SUMMARY text left out) and of ``common.py``, and a test fails when a script changed
after it was measured: ``--only`` re-measures the changed scripts, ``--page`` rewrites the page when only a
SUMMARY changed.  The peers are
optional dependencies (``pip install -e .[bench]``); a benchmark whose peer is missing is reported, not run.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata as md
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import benchmarks, missing  # noqa: E402

PAGE = ROOT / "chapters" / "appendix" / "benchmarks.md"
FIGURE = ROOT / "chapters" / "appendix" / "benchmarks.png"
RESULTS = HERE / "results.json"
LIBS = ("numpy", "scipy", "scikit-learn", "torch", "lion-pytorch", "cma", "cbx", "opacus", "pymoo",
        "scikit-optimize", "botorch", "gpytorch", "dagma")


def code_hash(bench) -> str:
    """A hash of a benchmark's code (its SUMMARY string left out) and of common.py: its rows are current while
    it matches."""
    text = Path(bench.__file__).read_text().replace(bench.SUMMARY, "") + (HERE / "common.py").read_text()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def summary(bench) -> str:
    return " ".join(bench.SUMMARY.split())


def _fmt(v) -> str:
    return "n/a" if v != v else f"{v:.3g}"  # NaN != NaN


def figure(rows) -> None:
    """Quality ratio against time ratio, one point per timed row, one colour and marker per comparison."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from optlab.plotting import FIGURE_WIDTH, use_style

    use_style()
    timed = [r for r in rows if r["time_ratio"] == r["time_ratio"] and r["quality_ratio"] == r["quality_ratio"]]
    comparisons = list(dict.fromkeys(r["comparison"] for r in timed))
    top = 1e3  # quality ratios above this are drawn hollow at the top edge, labelled with their range
    # the axes keep 3.2 inches; the legend, one line per comparison, goes below them
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 3.2 + 0.24 * len(comparisons)), layout="constrained")
    palette = list(plt.get_cmap("tab10").colors) + ["black", "gold", "darkcyan", "navy"]
    n_above = 0  # off-scale groups so far: their labels are stacked below the top edge
    for i, name in enumerate(comparisons):
        color, marker = palette[i % len(palette)], "osD^vP*X<>ph"[i % 12]
        points = [(r["time_ratio"], r["quality_ratio"]) for r in timed if r["comparison"] == name]
        inside = [(t, q) for t, q in points if q <= top]
        ax.scatter([t for t, _ in inside], [q for _, q in inside], s=30, color=color, marker=marker, alpha=0.85,
                   label=f"{name} ({len(points)})")
        above = [(t, q) for t, q in points if q > top]
        if above:
            ax.scatter([t for t, _ in above], [top] * len(above), s=30, marker=marker, facecolors="none",
                       edgecolors=color)
            qs = [q for _, q in above]
            n_above += 1
            ax.annotate(f"off scale: {min(qs):.0e} to {max(qs):.0e}", (0.02, top), xycoords=("axes fraction", "data"),
                        textcoords="offset points", xytext=(0, -14 * n_above), ha="left", fontsize="small",
                        color=color)
    ax.axvline(1.0, color="0.6", lw=0.8, ls=":")
    ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
    ax.set(xscale="log", yscale="log", ylim=(None, 2 * top), xlabel="time ratio, optlab / peer",
           ylabel="quality ratio, optlab / peer", title="left: optlab faster; below: better")
    fig.legend(loc="outside lower center", ncol=1)
    fig.savefig(FIGURE, dpi=144, bbox_inches="tight")
    plt.close(fig)


def page(results: dict) -> str:
    rows = results["rows"]
    table = "\n".join(
        f"| {r['comparison']} | {r['problem']} | {r['metric']} | {_fmt(r['optlab'])} | {_fmt(r['peer'])} | "
        f"{_fmt(r['quality_ratio'])} | {_fmt(r['time_ratio'])} | {r['note']} |" for r in rows)
    peers = "\n".join(f"- **{b['comparison']}** against {b['peer']}: `benchmarks/{b['script']}`, measured on "
                      f"{b['date']} in {b['seconds']:.0f} s (load average {b['load']} at its start)"
                      for b in results["benchmarks"])
    versions = ", ".join(f"{k} {v}" for k, v in results["versions"].items())
    summaries = "\n\n".join(f"**{b['comparison']}.** {b['summary']}" for b in results["benchmarks"])
    return f"""# Benchmarks: optlab side by side

Are the book's readable implementations any good? Each comparison below runs `optlab` and the library a
reader would otherwise use on the same problem, seeds and budget, in one process, with one thread, and
reports a quality metric (lower is better for both) and the wall time (the median of several repeats).
A **quality ratio** below 1 means `optlab` did better; a **time ratio** below 1 means it was faster.
The quick mode of every benchmark, in the test suite, checks that the two sides agree where they must
(identical iterates for identical inputs).

| comparison | problem | metric | optlab | peer | quality ratio | time ratio | note |
|---|---|---|---:|---:|---:|---:|---|
{table}

![Each timed row of the table as a point, one colour and marker per comparison: the time ratio of optlab to
its peer on the horizontal axis and the quality ratio on the vertical axis, both on log scales, with dotted
lines at 1; ratios above 1000 are drawn hollow at the top edge, with their range.](benchmarks.png)

## What the numbers say

{summaries}

## The comparisons

{peers}

Regenerate this page with `python benchmarks/run.py` (several minutes; the peers are the optional
`bench` dependencies), or re-measure one comparison with `python benchmarks/run.py --only <script>`.
Measured on {results['machine']} with {versions}; load averages are over 1, 5 and 15 minutes.
"""


def measure(bench, quick: bool) -> tuple:
    """Run one benchmark: its rows (as dicts) and its entry for the page."""
    load, start = ", ".join(f"{x:.2f}" for x in os.getloadavg()), time.perf_counter()
    out = bench.run(quick=quick)
    for r in out:
        print(f"   {r.metric}: optlab {_fmt(r.optlab)}, peer {_fmt(r.peer)}, time ratio {_fmt(r.time_ratio)}")
    seconds = time.perf_counter() - start
    print(f"   ({seconds:.1f} s)", flush=True)
    entry = {"comparison": bench.COMPARISON, "peer": bench.PEER, "script": Path(bench.__file__).name,
             "summary": summary(bench), "code_hash": code_hash(bench), "date": datetime.date.today().isoformat(),
             "load": load, "seconds": seconds}
    return [r.as_dict() for r in out], entry


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, agreement checks only, no page")
    ap.add_argument("--only", nargs="+", metavar="SCRIPT", help="re-measure only these (e.g. bench_gp_sklearn)")
    ap.add_argument("--page", action="store_true", help="rewrite the page from results.json, measure nothing")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    benches = benchmarks()
    names = {b.__name__ for b in benches}
    only = {Path(n).stem for n in args.only or ()}
    if only - names:
        ap.error(f"--only: no benchmark named {', '.join(sorted(only - names))}; there are {', '.join(sorted(names))}")
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() and not args.quick else {"rows": [], "benchmarks": []}
    old_meta = {b["script"]: b for b in old["benchmarks"]}
    rows, meta = [], []
    for bench in benches:
        script = Path(bench.__file__).name
        keep = args.page or (only and bench.__name__ not in only)
        if keep and not args.quick:
            entry = old_meta.get(script)
            if entry is None or entry.get("code_hash") != code_hash(bench):
                ap.error(f"{script} changed since it was measured (or never was): run --only {bench.__name__}")
            rows += [r for r in old["rows"] if r["comparison"] == entry["comparison"]]
            meta.append(dict(entry, comparison=bench.COMPARISON, peer=bench.PEER, summary=summary(bench)))
            continue
        print(f"== {bench.COMPARISON} against {bench.PEER}", flush=True)
        if missing(bench):
            print(f"   skipped: {', '.join(missing(bench))} not installed (pip install -e .[bench])")
            continue
        out, entry = measure(bench, args.quick)
        rows += out
        meta.append(entry)
    if args.quick:
        return 0
    versions = {"Python": platform.python_version()}
    for lib in LIBS:
        try:
            versions[lib] = md.version(lib)
        except md.PackageNotFoundError:
            versions[lib] = "not installed"
    results = {"rows": rows, "benchmarks": meta, "versions": versions,
               "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}"}
    RESULTS.write_text(json.dumps(results, indent=1))
    figure(rows)
    PAGE.write_text(page(results))
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
