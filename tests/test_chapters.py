"""Every chapter in _toc.yml exists and follows the chapter anatomy (CONTRIBUTING.md, "Chapter anatomy").

nbval (configured in pyproject.toml) re-executes the chapters and compares outputs;
these tests check the structure of the stored notebooks, cheaply, before that:
the anatomy, citations written as links that read well in Colab (no raw MyST), printed
lines that fit the page, and figures with alt text that are sharp and readable on a phone.
"""
import base64
import re
import struct
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "_ext"))
import _book  # noqa: E402
import teaching_table  # noqa: E402
from optlab_book import bib, cells  # noqa: E402

from optlab import plotting  # noqa: E402

CHAPTERS = _book.notebooks()
IDS = [p.relative_to(ROOT).as_posix() for p in CHAPTERS]
ADDRESS = re.compile(r"at 0x[0-9a-fA-F]{6,}|<[a-zA-Z_.]+ object at ")
BIBFILE = ROOT / "references.bib"
#: Printed lines fit the page: 88 characters fit the desktop column without a scroll bar (_static/reader.css).
MAX_LINE = 88


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


def _md(nb):
    return [c for c in nb.cells if c.cell_type == "markdown"]


def test_starts_with_title_and_cites_its_paper(nb):
    md = _md(nb)
    assert md and md[0].source.lstrip().startswith("# "), "the first markdown cell must start with '# Title'"
    links = [link for c in md for link in cells.cite_links(c.source)]
    assert links, ("the chapter must cite its paper with a citation link, "
                   "[Liu and Zhou (2024)]({cite}liu2024revisiting) (tools/cite.py converts {cite} roles)")
    summary = "\n".join(c.source for c in md[:1])
    assert cells.cite_links(summary), "the title cell's summary cites the chapter's paper (a citation link)"


def test_markdown_reads_cleanly_in_colab(nb):
    """No MyST role or directive in a chapter's Markdown: Colab and Jupyter would show it raw."""
    found = [f"cell {i}: {what}" for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
             for what in cells.raw_myst(c.source)]
    assert not found, ("MyST syntax that Colab shows raw (cite with [Authors (Year)]({cite}key) links, "
                       "python tools/cite.py converts {cite} roles; write other directives as plain Markdown):\n"
                       + "\n".join(found))


def test_citation_links_match_the_bibliography(nb):
    """Each ``[text]({cite}key)``: key in references.bib, text as the book prints it."""
    keys = bib.entries(BIBFILE)
    problems = []
    for c in _md(nb):
        for text, key in cells.cite_links(c.source):
            if key not in keys:
                problems.append(f"{{cite}}{key}: no such key in references.bib")
                continue
            forms = (bib.textual(key, BIBFILE), bib.parenthetical(key, BIBFILE))
            if bib.normalize(text) not in forms:
                problems.append(f"[{text}]({{cite}}{key}): write [{forms[0]}] in running text or "
                                f"[{forms[1]}] inside brackets")
    assert not problems, "\n".join(problems)


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
    for c in (c for c in nb.cells if "solution" in _tags(c)):
        assert "hide-cell" in _tags(c), "tag solution cells 'hide-cell' too: collapsed in the HTML book"
    for c in (c for c in _md(nb) if "solution" in _tags(c)):  # an answer in prose: the whole cell
        assert not any(m in c.source for m in cells.MARKERS), f"no markers in an answer in prose:\n{c.source[:200]}"
        assert not re.search(r"(?m)^#{1,6}\s", c.source), f"no headings in an answer in prose:\n{c.source[:200]}"
    checks = [c for c in nb.cells if c.cell_type == "code" and "selfcheck" in _tags(c)]
    assert checks, "no autograded self-check (a code cell tagged 'selfcheck')"
    assert all("assert" in c.source for c in checks), "a self-check cell must assert something"


@pytest.mark.parametrize("path", CHAPTERS, ids=IDS)
def test_exercises_are_numbered(path):
    """3-6 exercises, each starting a paragraph with its bold number (**Exercise 2 (title).** or
    **2. Title.**), numbered 1..n: how tools/teaching_table.py finds them."""
    numbers = [e.number for e in teaching_table.read_chapter(path).exercises]
    assert numbers == list(range(1, len(numbers) + 1)), f"exercises numbered {numbers}"
    assert 3 <= len(numbers) <= 6, f"{len(numbers)} exercises (the anatomy asks for 3 to 6)"


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


def test_printed_lines_fit_the_page(nb):
    """Every stored text output line (prints, tables, the claim's verdict) has at most 88 characters."""
    long = []
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        for out in c.outputs:
            long += [f"cell {i}: {len(line)} characters: {line[:60]}..." for line in _text(out).splitlines()
                     if len(line) > MAX_LINE]
    assert not long, f"printed lines longer than {MAX_LINE} characters (wrap them):\n" + "\n".join(long)


def _pngs(cell):
    return [out for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]


def png_info(b64: str) -> tuple[int, int, float | None]:
    """(width, height, dpi or None) of a base64 PNG, from its IHDR and pHYs chunks."""
    data = base64.b64decode(b64)
    width, height = struct.unpack(">II", data[16:24])
    k = data.find(b"pHYs")
    dpi = None
    if k > 0:
        ppu_x, _, unit = struct.unpack(">IIB", data[k + 4:k + 13])
        dpi = ppu_x * 0.0254 if unit == 1 else None
    return width, height, dpi


def test_every_figure_has_alt_text(nb):
    """One figure per plotting cell, with ``"mystnb": {"image": {"alt": "..."}}`` saying what it shows."""
    problems = []
    for i, c in enumerate(nb.cells):
        pngs = _pngs(c)
        if not pngs:
            continue
        if len(pngs) > 1:
            problems.append(f"cell {i}: {len(pngs)} figures in one cell (one figure per cell: it has one alt text)")
        alt = c.metadata.get("mystnb", {}).get("image", {}).get("alt")
        if not isinstance(alt, str) or len(alt.split()) < 4:
            problems.append(f"cell {i}: no alt text: add cell metadata "
                            '"mystnb": {"image": {"alt": "<what the figure shows, in a sentence>"}}')
        elif re.search(r"\.(png|svg|jpe?g)\b|^[\w./-]+$", alt):
            problems.append(f"cell {i}: alt text {alt!r} looks like a file name: say what the figure shows")
    assert not problems, "\n".join(problems)


def test_figures_are_sharp_and_fit_a_phone(nb):
    """The figure rule (optlab.plotting): high-DPI PNGs shown at half size, at most FIGURE_WIDTH
    inches wide, no font smaller than the style's; see CONTRIBUTING.md, "Figures"."""
    problems = []
    limit = plotting.FIGURE_WIDTH + 2 * plotting.STYLE["savefig.pad_inches"] + 0.02
    smallest = plotting.min_font_size()
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        for out in _pngs(c):
            width, _, dpi = png_info(out["data"]["image/png"])
            shown = out.get("metadata", {}).get("image/png", {}).get("width")
            if not shown or width < 2 * int(shown) - 1:
                problems.append(f"cell {i}: a {width}-px PNG shown at {shown} px: not a high-DPI figure "
                                "(apply optlab.plotting.use_style(), which the setup cell does, before plotting)")
            if dpi and width / dpi > limit:
                problems.append(f"cell {i}: the figure is {width / dpi:.2f} in wide, more than "
                                f"{plotting.FIGURE_WIDTH} in: use optlab.plotting.subplots(n_panels) (panels stacked)")
        code = re.sub(r"#.*", "", c.source)
        for m in re.finditer(r"figsize\s*=\s*\(\s*([\d.]+)", code):
            if float(m.group(1)) > plotting.FIGURE_WIDTH:
                problems.append(f"cell {i}: figsize width {m.group(1)} > {plotting.FIGURE_WIDTH} in "
                                "(unreadable on a phone): use optlab.plotting.subplots")
        for m in re.finditer(r"\b(?:fontsize|labelsize)\s*=\s*([\d.]+|['\"](?:x{0,2}-?small)['\"])", code):
            value = m.group(1).strip("'\"")
            if not value[0].isdigit() or float(value) < smallest:
                problems.append(f"cell {i}: {m.group(0)}: smaller than the book's smallest font, {smallest} pt")
    assert not problems, "\n".join(problems)


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


def test_preface_assignments_table_is_up_to_date():
    """The preface's table of points and exercises graded by hand is what tools/teaching_table.py writes."""
    preface = (ROOT / "chapters" / "intro.md").read_text()
    assert teaching_table.BEGIN in preface, "the preface lost its assignments table markers"
    assert teaching_table.with_table(preface, teaching_table.render()) == preface, (
        "the preface's assignments table is out of date: run python tools/teaching_table.py")
    assert "checksum" in preface, "the preface mentions nbgrader's harmless checksum warning"


def test_preface_links_every_chapter():
    preface = (ROOT / "chapters" / "intro.md").read_text()
    for path in CHAPTERS:
        link = path.relative_to(ROOT / "chapters").as_posix()
        assert f"({link})" in preface, f"the preface's table of parts should link {link}"
