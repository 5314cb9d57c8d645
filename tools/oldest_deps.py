#!/usr/bin/env python
"""Prove optlab's declared lower bounds: run it against the oldest dependency versions it declares.

``optlab`` declares only lower bounds (``numpy>=...``) in ``pyproject.toml``, so
that Colab keeps its own numpy, scipy, matplotlib and torch.  This job proves
those bounds.  It

1. reads the bounds from ``pyproject.toml`` (dependencies and every extra), so it
   never drifts from what the package declares, and fails if any requirement is
   not a plain lower bound;
2. creates a virtual environment (default ``_build/oldest-venv``, reused while
   the bounds are unchanged) and installs exactly ``name==bound`` for each, as
   wheels only, plus pytest and ipykernel to run things;
3. installs ``optlab`` itself from a freshly built wheel with ``--no-deps``;
4. checks, in that environment: ``import optlab``; ``pip check`` (every declared
   requirement holds); the unit tests and doctests of ``optlab``; and a few
   chapters executed top to bottom (errors only, outputs are not compared).

Packages named with ``--pinned`` (default: torch) are installed at their
``requirements.txt`` pin instead of their bound: on Linux, PyPI's torch wheels are
multi-GB CUDA builds, and the pinned 2.13.0 (installed CPU-only, see README.md) is the
one the book's environment already has.  The summary says plainly which bounds were proven and which were not.

    python tools/oldest_deps.py                       # the whole job
    python tools/oldest_deps.py --chapters all        # every chapter, not only the first three
    python tools/oldest_deps.py --list                # only print the versions it would install

Opt-in: CI runs it as its own step; ``pytest -m oldest`` runs it through
``tests/test_oldest_deps.py``.  Exit status 0 only if every check passed.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fresh_env  # noqa: E402
from _book import ROOT, notebooks  # noqa: E402

#: Where the environment lives (ignored by git; reused while the bounds are unchanged).
DEFAULT_VENV = ROOT / "_build" / "oldest-venv"
#: What runs the checks, at the versions of requirements.txt (they do not depend on numpy and friends).
# nbformat and pyyaml: the chapter tests import tools/claims.py (run_claim) and tools/_book.py;
# hypothesis: the property-based bad-input tests.
TOOLS = ("pip", "pytest", "ipykernel", "nbformat", "pyyaml", "hypothesis")
#: Limits on the tools where their newest release needs a newer dependency than optlab's bound.
TOOL_LIMITS = (
    "matplotlib-inline<0.2",  # ipykernel's inline backend: 0.2 calls rcParams._get, new in matplotlib 3.7
)
#: Tests of the book's own tooling (notebook anatomy, assignments, the HTML book, the setup cell, the install
#: paths): they need the pinned book toolchain, not optlab's dependencies, so this job leaves them out.
BOOK_TESTS = ("test_chapters.py", "test_tools.py", "test_assignments.py", "test_browser.py",
              "test_setup_cell.py", "test_colab.py", "test_oldest_deps.py", "test_book_ext.py", "test_repository.py",
              "test_claims_ledger.py", "test_grading.py", "test_pdf.py", "test_benchmarks.py")
#: Markers of tests that are not unit tests of optlab.  The slow tests re-run the chapters' claims (on other
#: seeds and on wrong variants): checks of the chapters, which `make test` runs with the pinned stack.
NOT_UNIT = "not browser and not colab and not oldest and not slow"
STAMP = "optlab-oldest.json"


@dataclass
class Dep:
    """One declared dependency and the version this job installs for it."""

    name: str
    bound: str  # the declared lower bound
    extra: str  # "" for a core dependency
    version: str  # what gets installed
    proven: bool  # version == bound

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


# Extras that live in an environment of their own, never beside the others (Flower pins its own Ray and protobuf:
# requirements-flower.txt, `make flower`); the oldest-versions job leaves them out.
OWN_ENVIRONMENT = ("flower",)
#: Extras that cannot be installed beside the core's lower bounds, with the reason; the job leaves them out, and
#: with them the test files and modules that import their packages (found by the import name in the source).
ABOVE_THE_FLOORS = {"convex": ("cvxpy", "cvxpy 1.9.3 needs numpy >= 2.0 and scipy >= 1.13, above the core's bounds")}


def lower_bounds(pyproject: Path = ROOT / "pyproject.toml") -> list[tuple[str, str, str]]:
    """``(name, lower bound, extra)`` for every requirement of ``[project]`` that applies to this Python.

    Raises ``ValueError`` for a requirement that is not exactly one ``>=`` bound:
    optlab declares only lower bounds.
    """
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    groups = [("", project.get("dependencies", []))]
    groups += sorted((extra, reqs) for extra, reqs in project.get("optional-dependencies", {}).items()
                     if extra not in OWN_ENVIRONMENT and extra not in ABOVE_THE_FLOORS)
    out, seen, env = [], {}, default_environment()
    own = fresh_env.normalize(project.get("name", "optlab"))
    for extra, reqs in groups:
        for text in reqs:
            req = Requirement(text)
            if fresh_env.normalize(req.name) == own:  # an extra made of other extras
                continue
            specs = list(req.specifier)
            if len(specs) != 1 or specs[0].operator != ">=":
                raise ValueError(f"{text!r} (extra {extra or '-'}): optlab declares only lower bounds, "
                                 "one '>=' per dependency")
            if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
                continue
            name, bound = fresh_env.normalize(req.name), specs[0].version
            if name in seen and seen[name] != bound:
                raise ValueError(f"{name} is declared twice, with the bounds {seen[name]} and {bound}")
            if name not in seen:
                seen[name] = bound
                out.append((name, bound, extra))
    return out


def plan(pinned=("torch",), skip=()) -> list[Dep]:
    """The dependencies to install: each at its lower bound, or at its requirements.txt pin if ``pinned``."""
    pins = fresh_env.pins()
    pinned = {fresh_env.normalize(n) for n in pinned}
    skip = {fresh_env.normalize(n) for n in skip}
    deps = []
    for name, bound, extra in lower_bounds():
        if name in skip:
            continue
        if name in pinned:
            if name not in pins:
                raise SystemExit(f"--pinned {name}: requirements.txt has no '{name}==...' pin")
            version = pins[name]
        else:
            version = bound
        deps.append(Dep(name, bound, extra, version, proven=Version(version) == Version(bound)))
    return deps


def tool_requirements() -> list[str]:
    pins = fresh_env.pins()
    return [f"{t}=={pins[t]}" if t in pins else t for t in TOOLS] + list(TOOL_LIMITS)


class Job:
    """The steps of the job, each timed and reported; failures are collected, not raised."""

    def __init__(self):
        self.steps: list[tuple[str, float, bool]] = []

    def step(self, name, fn, *args, **kwargs):
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
            ok = result is not False
        except Exception as exc:  # report and go on: the summary lists every failure
            print(f"   FAILED: {exc}", flush=True)
            result, ok = None, False
        seconds = time.perf_counter() - start
        self.steps.append((name, seconds, ok))
        print(f"   {'ok' if ok else 'FAILED'} in {seconds:.1f} s", flush=True)
        return result

    @property
    def ok(self) -> bool:
        return all(ok for _, _, ok in self.steps)


def ensure_env(venv_dir: Path, deps, recreate: bool) -> tuple[Path, bool]:
    """Create and fill the environment unless one with the same plan exists; return (python, reused)."""
    want = {"python": sys.version.split()[0], "requirements": [d.requirement for d in deps],
            "tools": tool_requirements()}
    stamp = venv_dir / STAMP
    python = fresh_env.python_of(venv_dir)
    if not recreate and stamp.exists() and python.exists() and json.loads(stamp.read_text()) == want:
        return python, True
    if venv_dir.exists():
        shutil.rmtree(venv_dir)
    python = fresh_env.create(venv_dir)
    fresh_env.install(python, want["requirements"] + want["tools"])
    stamp.write_text(json.dumps(want, indent=1))
    return python, False


def install_optlab(python: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="optlab-wheel-") as tmp:
        wheel = fresh_env.build_wheel(Path(tmp) / "dist", Path(tmp))
        fresh_env.pip(python, "install", "--no-compile", "--no-deps", "--force-reinstall", str(wheel))
        return wheel.name


def check_import(python: Path, deps) -> bool:
    names = {"scikit-learn": "sklearn", "scikit-optimize": "skopt"}  # distributions whose module has another name
    mods = ["optlab"] + [names.get(d.name, d.name.replace("-", "_")) for d in deps]
    code = ("import importlib, sys\n"
            f"for m in {mods!r}:\n"
            "    mod = importlib.import_module(m)\n"
            "    print(f'   {m:12s} {getattr(mod, \"__version__\", \"?\"):12s} {mod.__file__}')\n")
    proc = fresh_env.run_python(python, code)
    print(proc.stdout + proc.stderr, end="")
    return proc.returncode == 0 and "/site-packages/optlab/" in proc.stdout.replace("\\", "/")


def pip_check(python: Path) -> bool:
    proc = fresh_env.pip(python, "check", quiet=False)
    print("   " + proc.stdout.strip())
    return True


def run_tests(python: Path, extra_args) -> bool:
    """optlab's unit tests and doctests, with the installed (oldest) stack."""
    pytest = Path(python).parent / "pytest"  # not `python -m pytest`: that would put the source tree on sys.path
    ignore = [f"--ignore={p.relative_to(ROOT).as_posix()}" for name in BOOK_TESTS for p in (ROOT / "tests").glob(name)]
    for module, _ in ABOVE_THE_FLOORS.values():  # what imports a left-out extra's package is left out too
        ignore += [f"--ignore={p.relative_to(ROOT).as_posix()}" for folder in ("optlab", "tests")
                   for p in sorted((ROOT / folder).rglob("*.py")) if re.search(rf"\b{module}\b", p.read_text())]
    cmd = [str(pytest), "optlab", "tests", "-q", "-o", "addopts=", "--doctest-modules", "--import-mode=importlib",
           "-p", "no:cacheprovider", "-m", NOT_UNIT, "-W", "ignore::DeprecationWarning", *ignore, *extra_args]
    print("   " + " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=fresh_env.kernel_env(python), capture_output=True, text=True)
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    print("\n".join("   " + line for line in (tail if proc.returncode else tail[-3:])))
    return proc.returncode == 0


def choose_chapters(spec) -> list[Path]:
    chapters = notebooks()
    if not spec:
        return chapters[:3]
    if spec == ["all"]:
        return chapters
    paths = [Path(p).resolve() for p in spec]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"no such notebook: {', '.join(missing)}")
    return paths


def run_chapter(python: Path, path: Path, timeout: int) -> bool:
    # optlab is installed: the setup cell must not install anything (a bogus source makes sure it would fail).
    env = fresh_env.kernel_env(python, {"OPTLAB_SOURCE": "/nonexistent/optlab-is-installed-already",
                                        "PIP_NO_INDEX": "1"})
    start = time.perf_counter()
    fresh_env.execute_notebook(path, python, cwd=path.parent, env=env, timeout=timeout)
    print(f"   {time.perf_counter() - start:.1f} s  {_rel(path)}")
    return True


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def summary(deps, job: Job) -> None:
    print("\n== lower bounds")
    for d in deps:
        where = f"[{d.extra}]" if d.extra else ""
        verdict = "proven" if d.proven else f"NOT proven: installed {d.version} (--pinned; see the tool's docstring)"
        print(f"   {d.name + where:22s} >={d.bound:10s} {verdict}")
    print("== steps")
    for name, seconds, ok in job.steps:
        print(f"   {'ok    ' if ok else 'FAILED'} {seconds:7.1f} s  {name}")
    total = sum(s for _, s, _ in job.steps)
    print(f"== {'passed' if job.ok else 'FAILED'} in {total:.0f} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the environment (default: %(default)s)")
    ap.add_argument("--recreate", action="store_true", help="rebuild the environment even if it is up to date")
    ap.add_argument("--pinned", action="append", metavar="NAME",
                    help="install NAME at its requirements.txt pin, not its lower bound (repeatable; default: torch)")
    ap.add_argument("--skip", action="append", default=[], metavar="NAME",
                    help="leave NAME out of the environment (repeatable); tests that need it must importorskip it")
    ap.add_argument("--chapters", nargs="*", metavar="NB",
                    help="notebooks to execute, or 'all' (default: the first three chapters in _toc.yml)")
    ap.add_argument("--no-tests", action="store_true", help="skip the unit tests and doctests")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: %(default)s)")
    ap.add_argument("--list", action="store_true", help="print the versions it would install, and stop")
    ap.add_argument("--pytest-args", default="", metavar="ARGS",
                    help="more arguments for pytest, in one string (e.g. --pytest-args='-k core -x')")
    args = ap.parse_args(argv)
    deps = plan(pinned=args.pinned if args.pinned is not None else ("torch",), skip=args.skip)
    if args.list:
        for d in deps:
            print(d.requirement)
        return 0
    extra = shlex.split(args.pytest_args)
    chapters = choose_chapters(args.chapters)

    job = Job()
    env = job.step(f"environment {args.venv}: " + " ".join(d.requirement for d in deps),
                   ensure_env, args.venv, deps, args.recreate)
    if env is None:
        summary(deps, job)
        return 1
    python, reused = env
    print(f"   {'reused' if reused else 'created'}: {python}")
    job.step("install optlab (a wheel of the working tree, --no-deps)", install_optlab, python)
    job.step("import optlab and its dependencies", check_import, python, deps)
    job.step("pip check: every declared requirement is satisfied", pip_check, python)
    if not args.no_tests:
        job.step("unit tests and doctests of optlab", run_tests, python, extra)
    for path in chapters:
        job.step(f"execute {_rel(path)}", run_chapter, python, path, args.timeout)
    summary(deps, job)
    return 0 if job.ok else 1


if __name__ == "__main__":
    sys.exit(main())
