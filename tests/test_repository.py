"""A repository that stands on its own: its own guide, checker, licences and two commands.

A clone must carry its conventions (CONTRIBUTING.md, tools/check_book.py) instead of pointing
outside the repository; the README tells a newcomer the two commands (a Makefile that creates
the environment), what they cost, and how to get the CPU build of torch; the code is MIT (the
wheel ships LICENSE, tests/test_setup_cell.py), the text and figures CC BY 4.0.
"""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _read(name: str) -> str:
    return (ROOT / name).read_text()


def test_no_pointer_outside_the_repository():
    for name in ("README.md", "CONTRIBUTING.md", "_toc.yml", "_config.yml", "Makefile", "pyproject.toml"):
        assert "../shared" not in _read(name), f"{name} points outside the repository (../shared)"
    ci = _read(".ci/run")
    outside = [line for line in ci.splitlines() if "../shared" in line]
    assert all("if [ -f ../shared/" in line or line.strip().startswith("python ../shared/") for line in outside), \
        f".ci/run may use ../shared only where it exists: {outside}"
    assert "python tools/check_book.py --strict" in ci, ".ci/run runs the repository's own checker"


def test_readme_points_to_the_contributor_guide():
    assert "(CONTRIBUTING.md)" in _read("README.md")
    guide = _read("CONTRIBUTING.md")
    for topic in ("Layout", "`optlab` conventions", "Chapter anatomy", "Notebook hygiene", "Adding a chapter",
                  "Cell conventions", "Citations", "Figures", "Releasing"):
        assert topic in guide, f"CONTRIBUTING.md has no section on {topic!r}"
    for fact in ('"mystnb": {"image": {"alt":', "({cite}", "hide-input", "hide-cell", "Show solution",
                 "FIGURE_WIDTH", "88 characters", "git tag v"):
        assert fact in guide, f"CONTRIBUTING.md does not state the convention {fact!r}"


def test_licences():
    assert _read("LICENSE").startswith("MIT License")
    assert "CC BY 4.0" in _read("README.md") and "LICENSE-BOOK.md" in _read("README.md")
    assert "creativecommons.org/licenses/by/4.0" in _read("LICENSE-BOOK.md")
    footer = yaml.safe_load(_read("_config.yml"))["html"]["extra_footer"]
    assert "CC BY 4.0" in footer and "MIT" in footer, "the book's footer states both licences"


def test_readme_tells_a_newcomer_what_to_expect():
    readme = _read("README.md")
    assert "make book" in readme and "make test" in readme
    assert not re.search(r"@[A-Z]+@", readme), "a measurement placeholder is left in the README"
    assert re.search(r"\d+(\.\d+)? ?GB", readme), "the README says how much disk the environment needs"
    assert re.search(r"about \d+ (s|min)", readme), "the README says how long the build and the tests take"
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme, "how to get torch's CPU build"
    assert "_build/html" in readme
    for machine_specific in ("offline here", "available offline", "found locally"):
        assert machine_specific not in readme, f"a sentence about one machine: {machine_specific!r}"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_two_commands():
    """`make test` is CI's test step and `make book` a clean -W build; both create .venv when missing."""
    dry = subprocess.run(["make", "-n", "-B", "test", "book", "VENV=/nonexistent/venv"], capture_output=True,
                         text=True, cwd=ROOT)
    assert dry.returncode == 0, dry.stderr
    out = dry.stdout
    assert "python3 -m venv /nonexistent/venv" in out and "pip install -r requirements.txt" in out
    assert "/nonexistent/venv/bin/pytest -n 2" in out
    assert "rm -rf _build/html _build/.doctrees _build/jupyter_execute" in out and "build . -W" in out
    assert "make test" in _read(".ci/run") and "make book" in _read(".ci/run")
    assert "export OMP_NUM_THREADS := 1" in _read("Makefile")
    cpu = subprocess.run(["make", "-n", "-B", "env", "VENV=/nonexistent/venv",
                          "TORCH_INDEX=https://download.pytorch.org/whl/cpu"], capture_output=True, text=True, cwd=ROOT)
    assert 'pip install "torch==' in cpu.stdout and "--index-url https://download.pytorch.org/whl/cpu" in cpu.stdout


def test_check_book_uses_the_standard_library_only():
    tree = ast.parse(_read("tools/check_book.py"))
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    outside = modules - set(sys.stdlib_module_names)
    assert not outside, f"not in the standard library: {outside}"


def test_check_book_passes_on_the_book():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "check_book.py"), "--strict"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# A TeX command written through a Python string without a raw prefix loses its backslash: "\rho" becomes
# a carriage return and "ho", "\tau" a tab and "au", "\varepsilon" a vertical tab.  The page then shows
# broken math with no build warning, so the sources are scanned for those control characters.
CONTROL = re.compile(r"[\x07\x08\x0b\x0c\r\t]")


def _text_sources():
    for path in sorted(ROOT.glob("chapters/**/*.md")) + [ROOT / "references.bib", ROOT / "README.md"]:
        yield path, path.read_text()
    for path in sorted(ROOT.glob("chapters/**/*.ipynb")):


        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            yield path.with_name(f"{path.name}, cell {i}"), "".join(cell["source"])


def test_no_control_characters_from_lost_backslashes():
    found = []
    for path, text in _text_sources():
        for m in CONTROL.finditer(text):
            found.append(f"{path.relative_to(ROOT)}: {text[max(0, m.start() - 30):m.end() + 10]!r}")
    assert not found, "control characters (a TeX backslash lost in a Python string?):\n" + "\n".join(found[:10])
