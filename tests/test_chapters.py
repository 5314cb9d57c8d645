"""Every chapter in _toc.yml exists and follows the chapter anatomy (DESIGN.md section 4).

nbval (configured in pyproject.toml) re-executes the chapters and compares outputs;
these tests check the structure of the stored notebooks, cheaply, before that.
"""
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import _book  # noqa: E402

CHAPTERS = _book.notebooks()
IDS = [p.relative_to(ROOT).as_posix() for p in CHAPTERS]
ADDRESS = re.compile(r"at 0x[0-9a-fA-F]{6,}|<[a-zA-Z_.]+ object at ")


def _tags(cell):
    return set(cell.metadata.get("tags", []))


def _text(out):
    if out.output_type == "stream":
        return out.text
    return "".join(out.get("data", {}).get("text/plain", ""))


@pytest.fixture(params=CHAPTERS, ids=IDS)
def nb(request):
    return nbformat.read(request.param, as_version=4)


def test_every_toc_file_exists():
    missing = [f for f in _book.toc_files()
               if not any((ROOT / (f + ext)).exists() for ext in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"


def test_every_chapter_notebook_is_in_the_toc():
    on_disk = {p.relative_to(ROOT).with_suffix("").as_posix()
               for p in (ROOT / "chapters").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
    assert on_disk <= set(_book.toc_files()), f"notebooks missing from _toc.yml: {on_disk - set(_book.toc_files())}"


def test_starts_with_title_and_cites_its_paper(nb):
    md = [c for c in nb.cells if c.cell_type == "markdown"]
    assert md and md[0].source.lstrip().startswith("# "), "the first markdown cell must start with '# Title'"
    assert any("{cite" in c.source for c in md), "the chapter must cite its paper with {cite}"


def test_has_setup_and_claim_cells_in_order(nb):
    code = [c for c in nb.cells if c.cell_type == "code"]
    setup = [i for i, c in enumerate(code) if "setup" in _tags(c)]
    claim = [i for i, c in enumerate(code) if "claim" in _tags(c)]
    assert setup == [0], "the first code cell, and only it, must be tagged 'setup'"
    assert claim, "no code cell tagged 'claim'"


def test_has_exercises_with_solutions_and_selfcheck(nb):
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert re.search(r"(?m)^#+ .*Exercises", md), "no 'Exercises' heading"
    sols = [c for c in nb.cells if c.cell_type == "code" and "solution" in _tags(c)]
    assert sols, "no code cell tagged 'solution'"
    for c in sols:
        assert "### BEGIN SOLUTION" in c.source and "### END SOLUTION" in c.source, \
            f"solution cell lacks the nbgrader markers:\n{c.source[:200]}"
        assert "hide-cell" in _tags(c), "tag solution cells 'hide-cell' too: collapsed in the HTML book"
    checks = [c for c in nb.cells if c.cell_type == "code" and "selfcheck" in _tags(c)]
    assert checks, "no autograded self-check (a code cell tagged 'selfcheck')"
    assert all("assert" in c.source for c in checks), "a self-check cell must assert something"


def test_outputs_come_from_one_clean_run(nb):
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert counts == list(range(1, len(counts) + 1)), \
        "execution counts must be 1..n: store outputs with tools/execute.py"
    for c in nb.cells:
        assert "execution" not in c.metadata, "timing metadata in a cell: store outputs with tools/execute.py"


def test_no_errors_stderr_or_addresses_in_outputs(nb):
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        for out in c.outputs:
            assert out.output_type != "error", f"a stored error: {out.get('ename')}"
            assert not (out.output_type == "stream" and out.name == "stderr"), f"stderr output: {out.text[:120]!r}"
            assert not ADDRESS.search(_text(out)), f"a memory address in an output: {_text(out)[:120]!r}"
            if "image/png" not in out.get("data", {}):
                assert "<Figure size" not in _text(out), "a bare '<Figure size ...>' output: end with plt.show()"


@pytest.mark.parametrize("path", CHAPTERS, ids=IDS)
def test_has_a_figure_and_stays_small(path):
    nb = nbformat.read(path, as_version=4)
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert pngs >= 1, "a chapter shows at least one figure"
    size = path.stat().st_size
    assert size < 3_000_000, f"{size / 1e6:.1f} MB: keep a chapter under 3 MB"


def test_primary_module_and_tests_exist():
    for path in CHAPTERS:
        rel = path.relative_to(ROOT / "chapters")
        if len(rel.parts) != 2:  # the toolkit chapter tours the core modules
            continue
        part, slug = rel.parts[0], rel.stem
        assert (ROOT / "optlab" / part / f"{slug}.py").exists(), f"missing optlab/{part}/{slug}.py"
        assert (ROOT / "tests" / part / f"test_{slug}.py").exists(), f"missing tests/{part}/test_{slug}.py"


def test_preface_links_every_chapter():
    preface = (ROOT / "chapters" / "intro.md").read_text()
    for path in CHAPTERS:
        link = path.relative_to(ROOT / "chapters").as_posix()
        assert f"({link})" in preface, f"the preface's table of parts should link {link}"
