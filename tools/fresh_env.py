"""Fresh virtual environments for the install checks: create one, install into it, run a chapter in it.

Two checks need a Python that is not the project's own environment (where
``optlab`` is installed editable):

* ``tests/test_colab.py``: a student's fresh Python (Colab) without ``optlab``,
  where a chapter's setup cell must install it;
* ``tools/oldest_deps.py``: the oldest versions of numpy, scipy, matplotlib, ...
  that ``optlab`` declares, which must import it, pass its tests and run chapters.

Both use the helpers here.  Environments are created from the base interpreter
(never ``--system-site-packages``), pip is driven from the project's own pip with
``--python`` (so the new environment needs no pip of its own unless the chapter
calls one), packages come as wheels only and are not byte-compiled (they compile
on import, which is all that is needed, and the install is three times faster).
A notebook runs with :mod:`nbclient` from this process in a kernel whose
interpreter is the new environment's, found through a kernel spec written next
to it, so no user-level ``python3`` kernel spec can slip in.

This module is a library; it has no command line of its own.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _book import ROOT  # noqa: E402

#: One thread for every numeric library (see DESIGN.md: reproducible float sums, and faster).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
#: What the package's wheel is built from (copied first, so nothing is written into the source tree).
PACKAGE_FILES = ("pyproject.toml", "README.md", "LICENSE", "LICENSE.txt", "MANIFEST.in", "setup.cfg", "setup.py")
#: Environment variables that would let the new environment see the project's packages.
LEAKY_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONUSERBASE")


def python_of(env_dir: Path) -> Path:
    """The interpreter of the virtual environment ``env_dir``."""
    return Path(env_dir) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def create(env_dir: Path, clear: bool = False) -> Path:
    """Create a virtual environment (no pip, no system site-packages) and return its interpreter.

    ``venv`` run from inside a virtual environment bases the new one on the
    underlying interpreter, so the project's packages stay invisible to it.
    """
    venv.EnvBuilder(with_pip=False, clear=clear, symlinks=os.name != "nt").create(str(env_dir))
    return python_of(env_dir)


def pip(python: Path, *args: str, quiet: bool = True) -> subprocess.CompletedProcess:
    """Run the project's pip against the environment of ``python`` (``pip --python``); raise on failure."""
    cmd = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    cmd += ["--quiet"] if quiet else []
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, env=_clean_env())
    if proc.returncode:
        raise RuntimeError(f"pip {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def install(python: Path, requirements, *, no_deps: bool = False) -> None:
    """Install ``requirements`` (strings for pip) into the environment of ``python``, as wheels only."""
    args = ["install", "--no-compile", "--only-binary=:all:"] + (["--no-deps"] if no_deps else [])
    pip(python, *args, *requirements)


def pins(path: Path = ROOT / "requirements.txt") -> dict:
    """The exact pins ``name==version`` of ``requirements.txt``, by normalized name."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line)
        if m:
            out[normalize(m.group(1))] = m.group(2)
    return out


def normalize(name: str) -> str:
    """A distribution name in PEP 503 normal form (``Scikit_Learn`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def build_wheel(dest: Path, work: Path) -> Path:
    """Build ``optlab``'s wheel into ``dest`` from a copy of the sources in ``work``; return its path.

    Building from a copy keeps ``build/`` and ``*.egg-info`` out of the source tree
    (a stale ``build/lib`` can smuggle deleted modules into a wheel).  The build
    uses the project's setuptools (no isolated build environment, so no download).
    """
    src = Path(work) / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in PACKAGE_FILES:
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "optlab", src / "optlab", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("optlab-*.whl"):
        old.unlink()
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--no-build-isolation", "--wheel-dir", str(dest), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"building the optlab wheel failed:\n{proc.stdout}\n{proc.stderr}")
    (wheel,) = dest.glob("optlab-*.whl")
    return wheel


def _clean_env(extra=None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_VARS}
    for var in THREAD_VARS:
        env[var] = "1"
    env.setdefault("PYTHONHASHSEED", "0")
    env.update(extra or {})
    return env


def kernel_env(python: Path, extra=None) -> dict:
    """The environment of a kernel in the virtual environment of ``python``.

    No variable that could point at the project's packages, one thread, the
    environment's ``bin`` first on ``PATH`` (as when it is activated), plus ``extra``.
    """
    env = _clean_env(extra)
    env["PATH"] = str(Path(python).parent) + os.pathsep + env.get("PATH", "")
    return env


def run_python(python: Path, code: str, env=None, cwd=None) -> subprocess.CompletedProcess:
    """Run ``code`` with ``python`` (in a clean environment, outside the source tree by default)."""
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          env=env or kernel_env(python), cwd=cwd or Path(python).parent)


def execute_notebook(path: Path, python: Path, *, cwd: Path, env=None, timeout: int = 600):
    """Execute the notebook ``path`` top to bottom in a kernel run by ``python``; return the notebook.

    Raises :class:`nbclient.exceptions.CellExecutionError` (naming the cell) on
    the first error.  Outputs are not compared and nothing is written back.
    ``cwd`` is the kernel's working directory; ``env`` its environment
    (default :func:`kernel_env`).  The interpreter needs ``ipykernel``.
    """
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    specs = Path(tempfile.mkdtemp(prefix="optlab-kernelspec-"))
    spec = specs / "fresh-env"
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({python})", "language": "python"}))
    km = AsyncKernelManager(kernel_name="fresh-env", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(specs)]))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, km=km, timeout=timeout, record_timing=False,
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],  # not the kernel's TCP notice
                            resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute(cleanup_kc=True, env=env or kernel_env(python))
    finally:
        shutil.rmtree(specs, ignore_errors=True)
    return nb
