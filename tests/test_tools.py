"""The maintenance tools: deterministic execution and the runtime status page."""
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import _book  # noqa: E402
import runtime_report  # noqa: E402


def test_executor_is_byte_deterministic(tmp_path):
    nb = new_notebook(cells=[
        new_markdown_cell("# A tiny chapter"),
        new_code_cell("import numpy as np\nimport matplotlib.pyplot as plt\nrng = np.random.default_rng(0)"),
        new_code_cell("print(f'{rng.standard_normal(3).sum():.6f}')"),
        new_code_cell("fig, ax = plt.subplots()\nax.plot(rng.random(10))\nplt.show()"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    runs = []
    for _ in range(2):
        subprocess.run([sys.executable, str(ROOT / "tools" / "execute.py"), str(path)], check=True,
                       capture_output=True, cwd=ROOT)
        runs.append(path.read_bytes())
    assert runs[0] == runs[1], "two executions must give byte-identical notebooks"
    out = nbformat.read(path, as_version=4)
    assert [c.execution_count for c in out.cells if c.cell_type == "code"] == [1, 2, 3]
    assert all("execution" not in c.metadata for c in out.cells)
    assert any("image/png" in o.get("data", {}) for o in out.cells[3].outputs)


def test_runtime_page_lists_every_chapter_within_budget():
    page = (ROOT / "chapters" / "appendix" / "runtime.md").read_text()
    for path in _book.notebooks():
        rel = path.relative_to(ROOT).as_posix()
        row = re.search(rf"`{re.escape(rel)}` \| ([\d.]+) \|", page)
        assert row, f"{rel} is missing from the runtime page: run tools/runtime_report.py"
        assert float(row.group(1)) <= runtime_report.BUDGET_S, f"{rel} takes {row.group(1)} s"
    for lib in ("Python", "numpy", "scipy", "torch", "matplotlib"):
        assert f"| {lib} |" in page


def test_render_flags_over_budget_and_missing():
    first = _book.notebooks()[0].relative_to(ROOT).as_posix()
    text = runtime_report.render({first: runtime_report.BUDGET_S + 1})
    assert "**over budget**" in text
    if len(_book.notebooks()) > 1:
        assert "**not measured**" in text


TOOLS = ["execute.py", "runtime_report.py", "setup_cell.py", "assignment.py", "oldest_deps.py", "cite.py",
         "teaching_table.py", "release.py", "check_book.py"]


@pytest.mark.parametrize("tool", TOOLS)
def test_tools_have_help(tool):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / tool), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage" in out.stdout


def test_split_prints_are_coalesced():
    import execute

    outs = [{"output_type": "stream", "name": "stdout", "text": "a"},
            {"output_type": "stream", "name": "stdout", "text": "b\n"},
            {"output_type": "display_data", "data": {}},
            {"output_type": "stream", "name": "stdout", "text": "c\n"}]
    merged = execute.coalesce_streams(outs)
    assert [o.get("text") for o in merged] == ["ab\n", None, "c\n"]


def test_teaching_table_counts_points_and_hand_grading(tmp_path):
    """Points = self-checks; graded by hand = no self-check, or an answer in prose."""
    import teaching_table

    tag = lambda *t: {"tags": list(t)}  # noqa: E731
    nb = new_notebook(cells=[
        new_markdown_cell("# A chapter"),
        new_markdown_cell("**Exercise 1 (not yet).** Text before the Exercises heading is not an exercise."),
        new_markdown_cell("## Exercises\n\n**1. A gradient.** Write it."),
        new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", metadata=tag("solution", "hide-cell")),
        new_code_cell("assert x == 1", metadata=tag("selfcheck")),
        new_code_cell("assert x > 0", metadata=tag("selfcheck")),
        new_markdown_cell("**2. Why?** Explain."),
        new_markdown_cell("Because.", metadata=tag("solution", "hide-cell")),
        new_markdown_cell("**Exercise 3 (research).** An open question."),
    ])
    path = tmp_path / "ch.ipynb"
    nbformat.write(nb, path)
    ch = teaching_table.read_chapter(path)
    assert [(e.number, e.selfchecks, e.prose_answers, e.by_hand) for e in ch.exercises] == [
        (1, 2, 0, False), (2, 0, 1, True), (3, 0, 0, True)]
    assert ch.points == 2 and ch.title == "A chapter"


def test_teaching_table_check_passes_on_the_book():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "teaching_table.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
