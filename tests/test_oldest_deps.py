"""optlab declares only lower bounds, and the oldest versions it declares really work.

The cheap tests here always run: every requirement in ``pyproject.toml`` is one
``>=`` bound, and tools/oldest_deps.py reads them correctly.  The job itself
(a virtual environment with the oldest versions: about 75 s the first time,
45 s when the environment is reused) is opt-in: it runs only when the marker is
selected, ``pytest -m oldest``; a plain ``pytest`` reports it as skipped.  CI runs
``python tools/oldest_deps.py`` as its own step instead, for a readable log.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import fresh_env  # noqa: E402
import oldest_deps  # noqa: E402


def test_pyproject_declares_only_lower_bounds():
    bounds = oldest_deps.lower_bounds()  # raises on anything but one '>=' per requirement
    names = {name for name, _, _ in bounds}
    assert {"numpy", "scipy", "matplotlib"} <= names
    assert all(extra == "" for name, _, extra in bounds if name in ("numpy", "scipy", "matplotlib"))


@pytest.mark.parametrize("requirement", ["numpy>=1.23,<3", "numpy==1.23.2", "numpy", "numpy~=1.23", "numpy>1.2"])
def test_anything_but_a_lower_bound_is_rejected(tmp_path, requirement):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'[project]\nname = "x"\ndependencies = ["{requirement}"]\n')
    with pytest.raises(ValueError, match="only lower bounds"):
        oldest_deps.lower_bounds(pyproject)


def test_markers_and_extras_are_read(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["numpy>=1.23.2", "tomli>=1; python_version < \'3\'"]\n'
                         '[project.optional-dependencies]\ndata = ["Scikit_Learn>=1.1.3"]\nall = ["x[data]"]\n')
    assert oldest_deps.lower_bounds(pyproject) == [("numpy", "1.23.2", ""), ("scikit-learn", "1.1.3", "data")]


def test_plan_installs_bounds_and_pins_only_what_it_is_told():
    pins = fresh_env.pins()
    plan = {d.name: d for d in oldest_deps.plan(pinned=("torch",))}
    for name, bound, _ in oldest_deps.lower_bounds():
        if name == "torch":
            assert plan[name].version == pins["torch"]
            assert plan[name].proven == (pins["torch"] == bound)
        else:
            assert plan[name].requirement == f"{name}=={bound}" and plan[name].proven
    assert "torch" not in {d.name for d in oldest_deps.plan(skip=("torch",))}


@pytest.mark.oldest
@pytest.mark.slow
def test_oldest_declared_versions_import_test_and_run_chapters(request):
    if "oldest" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("opt-in: pytest -m oldest (or python tools/oldest_deps.py)")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "oldest_deps.py")], capture_output=True, text=True,
                          cwd=ROOT, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
