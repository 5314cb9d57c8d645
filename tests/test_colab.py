"""The Colab path: in a fresh Python without optlab, a chapter's setup cell installs it, then the chapter runs.

A virtual environment stands in for Colab: it has what Colab ships (pip, numpy,
scipy, matplotlib, scikit-learn, ipykernel, and torch when the chapter imports
it, at the versions of requirements.txt) and no ``optlab``.  A wheel of the
working tree stands in for the release tag: ``OPTLAB_SOURCE`` points the setup
cell at it.  The chapter then runs top to bottom in that environment's kernel
(errors only, outputs are not compared).  Along the way the kernel has no way to
download anything: pip may not use an index (so optlab's dependencies must
already be satisfied, as in Colab, and nothing is upgraded behind the student's
back) and every HTTP(S) proxy variable points at a closed port.

Marker ``colab``; it runs in the default ``pytest`` (about 30 s for one
chapter).  By default it runs the first chapter of the book: every chapter has
the same setup block (tests/test_setup_cell.py).  ``OPTLAB_COLAB_CHAPTERS=all``,
or a comma-separated list of notebooks, runs others, each in its own environment.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import _book  # noqa: E402
import fresh_env  # noqa: E402
import setup_cell  # noqa: E402

pytestmark = pytest.mark.colab

#: What Colab has installed before a student runs anything (at the versions of requirements.txt).
COLAB_STACK = ("pip", "numpy", "scipy", "matplotlib", "scikit-learn", "ipykernel")
#: A closed port: any HTTP(S) request the chapter makes fails at once.
NO_NETWORK = "http://127.0.0.1:9"
FIXTURE = ROOT / "tests" / "data" / "colab_chapter.ipynb"


def selected_chapters() -> list[Path]:
    spec = os.environ.get("OPTLAB_COLAB_CHAPTERS", "").strip()
    if spec == "all":
        return _book.notebooks()
    if spec:
        return [Path(p).resolve() for p in spec.split(",")]
    return _book.notebooks()[:1]


def _id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def colab_stack(chapter: Path) -> list[str]:
    """The preinstalled packages for this chapter, pinned as in requirements.txt."""
    pins = fresh_env.pins()
    names = list(COLAB_STACK)
    code = "\n".join(c.source for c in nbformat.read(chapter, as_version=4).cells if c.cell_type == "code")
    if re.search(r"^\s*(import|from)\s+torch\b", code, re.MULTILINE):
        names.append("torch")
    return [f"{n}=={pins[n]}" if n in pins else n for n in names]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """optlab's wheel, built from the working tree (what the release tag will hold)."""
    tmp = tmp_path_factory.mktemp("wheel")
    return fresh_env.build_wheel(tmp / "dist", tmp)


def _copy_as_student(chapter: Path, dest: Path) -> Path:
    """The chapter alone in an empty folder (Colab's /content); the fixture gets the current setup block."""
    dest.mkdir()
    target = dest / chapter.name
    nb = nbformat.read(chapter, as_version=4)
    if chapter not in _book.notebooks():  # the fixture, or a notebook outside the book
        cell = setup_cell.setup_cell(nb)
        cell.source = setup_cell.with_block(cell.source, setup_cell.block())
    nbformat.write(nb, target)
    return target


@pytest.mark.parametrize("chapter", selected_chapters(), ids=_id)
def test_setup_cell_installs_optlab_then_chapter_runs(chapter, wheel, tmp_path):
    python = fresh_env.create(tmp_path / "venv")
    fresh_env.install(python, colab_stack(chapter))
    before = fresh_env.run_python(python, "import importlib.util; print(importlib.util.find_spec('optlab'))")
    assert before.stdout.strip() == "None", f"optlab must be missing before the setup cell runs:\n{before}"

    notebook = _copy_as_student(chapter, tmp_path / "content")
    env = fresh_env.kernel_env(python, {
        "OPTLAB_SOURCE": str(wheel),
        "PIP_NO_INDEX": "1",  # optlab's dependencies are already there, as in Colab: nothing to download
        **{var: NO_NETWORK for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")},
        "no_proxy": "", "NO_PROXY": "",
    })
    nb = fresh_env.execute_notebook(notebook, python, cwd=notebook.parent, env=env)

    setup = setup_cell.setup_cell(nb)
    errors = [o for o in setup.outputs if o.output_type == "error"]
    assert not errors, errors
    after = fresh_env.run_python(python, "import importlib.metadata as m, optlab\n"
                                         "print(optlab.__file__)\n"
                                         "print(m.distribution('optlab').read_text('direct_url.json'))")
    assert after.returncode == 0, after.stderr
    site = (tmp_path / "venv").resolve()
    assert Path(after.stdout.splitlines()[0]).resolve().is_relative_to(site), after.stdout
    assert wheel.name in after.stdout, f"optlab was not installed from the local wheel:\n{after.stdout}"


def test_fixture_has_a_setup_cell_without_the_block():
    """The fixture's setup cell holds only its own imports: the tests write the block into copies."""
    cell = setup_cell.setup_cell(nbformat.read(FIXTURE, as_version=4))
    assert setup_cell.current_block(cell.source) is None
    assert "import optlab" in cell.source


def test_fresh_environment_does_not_see_the_project(tmp_path):
    """The helper's environments are really fresh: no project packages, no editable optlab."""
    python = fresh_env.create(tmp_path / "venv")
    proc = fresh_env.run_python(python, "import importlib.util as u\n"
                                        "print([m for m in ('optlab', 'numpy', 'nbclient') if u.find_spec(m)])")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    shutil.rmtree(tmp_path / "venv")
