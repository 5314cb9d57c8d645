#!/usr/bin/env python
"""Re-execute chapters in place, deterministically, and store their outputs.

    python tools/execute.py                      # every chapter in _toc.yml
    python tools/execute.py chapters/foundations/last_iterate.ipynb

Each notebook runs top to bottom in a fresh kernel started in its own folder,
with one thread (OMP_NUM_THREADS=1 and friends), no timing metadata and
execution counts 1..n, so executing twice gives byte-identical files.  Run it
after changing ``optlab``; then ``pytest`` (nbval) checks the stored outputs.
The wall time of each chapter is printed and saved in ``_build/runtimes.json``
(read by tools/runtime_report.py).

A chapter with self-checks is also graded the way nbgrader would grade it
(tools/grading.py: full marks with the solutions, zero without, in one more run),
and the scores are stored in its metadata, where the assignment tests read them.
``--no-grading`` skips that (the stored scores then go stale, and the tests say so).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client import KernelManager
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _book import ROOT, resolve  # noqa: E402

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def single_thread_env() -> None:
    """Pin every numeric library to one thread (inherited by the kernels we start)."""
    for var in THREAD_VARS:
        os.environ[var] = "1"
    os.environ.setdefault("PYTHONHASHSEED", "0")


class LocalKernelManager(KernelManager):
    """A kernel on local IPC sockets in a temporary folder (no TCP ports, no warning about them)."""

    def __init__(self, **kwargs):
        self._sockets = tempfile.mkdtemp(prefix="optlab-kernel-")
        super().__init__(transport="ipc", ip=os.path.join(self._sockets, "kernel"), **kwargs)

    def cleanup_resources(self, restart=False):
        super().cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self._sockets, ignore_errors=True)


def coalesce_streams(outputs: list) -> list:
    """Merge consecutive stdout (stderr) chunks: how a print is split into messages depends on timing."""
    merged = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] += out["text"]
        else:
            merged.append(out)
    return merged


def clean(nb) -> None:
    """Drop run-specific metadata so that two runs give the same bytes."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = coalesce_streams(cell.outputs)
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                out.get("metadata", {}).pop("execution", None)
    nb.metadata.pop("widgets", None)
    nb.metadata.get("language_info", {}).pop("version", None)


def execute(path: Path, timeout: int = 600, write: bool = True, grading: bool = True):
    """Execute one notebook in place (and grade it, see tools/grading.py); return (seconds, notebook)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            kernel_manager_class=LocalKernelManager,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    clean(nb)
    if grading and write:
        import grading as grading_tool

        if grading_tool.pairs(nb):
            grading_tool.record(nb, grading_tool.emulate_in_subprocess(path))
    if write:
        nbformat.write(nb, path)
    return seconds, nb


def save_runtimes(times: dict) -> Path:
    out = ROOT / "_build" / "runtimes.json"
    out.parent.mkdir(exist_ok=True)
    old = json.loads(out.read_text()) if out.exists() else {}
    old.update(times)
    out.write_text(json.dumps(old, indent=1, sort_keys=True))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", help="notebooks or folders (default: every chapter in _toc.yml)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    ap.add_argument("--no-grading", action="store_true", help="do not re-grade the self-checks (tools/grading.py)")
    args = ap.parse_args(argv)
    single_thread_env()
    times = {}
    for path in resolve(args.paths):
        seconds, _ = execute(path, timeout=args.timeout, grading=not args.no_grading)
        inside = path.is_relative_to(ROOT)
        rel = path.relative_to(ROOT).as_posix() if inside else str(path)
        if inside:
            times[rel] = round(seconds, 1)
        print(f"{seconds:7.1f} s  {rel}", flush=True)
    if times:
        save_runtimes(times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
