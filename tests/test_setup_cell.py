"""Every chapter's setup cell, and what chapters may not do at run time.

* Every chapter in ``_toc.yml`` has exactly one ``setup`` cell, and it starts
  with the one block that ``tools/setup_cell.py`` renders from its template and
  ``_config.yml`` (repository URL and release tag, set once there).
* The tool's ``--check`` fails on a chapter whose block was edited, or whose cell metadata
  (the setup cell collapsed in the book, the solution labels, the alt-text copy) is missing,
  and its write mode repairs it (on copies of a fixture, never on the chapters).
* One release, one source: ``optlab.__version__`` is the version, ``_config.yml``'s
  ``release`` (what the setup cell installs) and ``repository.branch`` (what the Colab
  button opens) are its tag ``v<version>`` (``tools/release.py --check``).
* The block is guarded: where ``optlab`` is importable it installs nothing;
  where it is missing it pip-installs ``OPTLAB_SOURCE`` or the release.
* No chapter downloads anything: code cells are scanned for installs, HTTP
  clients, URLs fed to readers, and data-set or model hubs (the setup block is
  the one place allowed to install).  ``tests/test_colab.py`` backs this up by
  running a chapter with the network closed.
"""
from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import textwrap
import tokenize
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import _book  # noqa: E402
import setup_cell  # noqa: E402

TOOL = ROOT / "tools" / "setup_cell.py"
FIXTURE = ROOT / "tests" / "data" / "colab_chapter.ipynb"
CHAPTERS = _book.notebooks()


def _id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --- the block in every chapter --------------------------------------------------------------------

@pytest.mark.parametrize("chapter", CHAPTERS, ids=_id)
def test_chapter_setup_cell_starts_with_the_template_block(chapter):
    nb = nbformat.read(chapter, as_version=4)
    cell = setup_cell.setup_cell(nb)  # raises unless there is exactly one code cell tagged 'setup'
    assert setup_cell.current_block(cell.source) == setup_cell.block(), (
        f"{_id(chapter)}: the setup block differs from the template: run python tools/setup_cell.py")
    assert cell.source.startswith(setup_cell.BEGIN), f"{_id(chapter)}: the setup cell must start with the block"


def test_tool_check_passes_on_the_book():
    proc = subprocess.run([sys.executable, str(TOOL), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_install_source_is_built_from_config():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    url, release = cfg["repository"]["url"].rstrip("/"), cfg["release"]
    assert setup_cell.install_source() == f"optlab[data] @ git+{url}@{release}"
    assert f'"OPTLAB_SOURCE", "optlab[data] @ git+{url}@{release}"' in setup_cell.block()
    # Set once in _config.yml: another repository and tag give another block, and the template names neither.
    other = {"repository": {"url": "https://example.org/fork/book/"}, "release": "v9.8.7"}
    assert setup_cell.install_source(other) == "optlab[data] @ git+https://example.org/fork/book@v9.8.7"
    assert "optlab[data] @ git+https://example.org/fork/book@v9.8.7" in setup_cell.block(other)
    assert url not in setup_cell.block(other)
    assert not re.search(r"https?://|github|v\d+\.\d+", setup_cell.TEMPLATE), "the template must not hard-code a source"


def test_release_tag_is_the_package_version():
    """Colab installs the tag ``release`` and opens the notebooks of ``repository.branch``: both must be
    the tag of the optlab version the chapters were run with, which lives in optlab/__init__.py only."""
    import release
    import tomllib

    version = release.package_version()
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["release"] == f"v{version}", f"_config.yml release {cfg['release']!r} is not v{version}"
    assert cfg["repository"]["branch"] == f"v{version}", "the Colab button must open the release's notebooks"
    assert setup_cell.install_source().endswith(f"@v{version}")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"], "one source: optlab/__init__.py"
    assert release.problems() == []
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "release.py"), "--check"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_wheel_has_the_package_version_and_the_licence(tmp_path):
    """``python -m build --wheel``: version from optlab/__init__.py, LICENSE (MIT) shipped."""
    import zipfile

    import release

    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("optlab-*.whl")
    assert wheel.name.startswith(f"optlab-{release.package_version()}-")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        licence = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert licence, f"the wheel does not ship LICENSE: {[n for n in names if 'dist-info' in n]}"
        assert "MIT License" in zf.read(licence[0]).decode()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in meta and "License-File: LICENSE" in meta


# --- the tool: --check fails on an edited copy, the write mode repairs it --------------------------

def _tool(capsys, *args):
    """Run the tool's command line in this process (the CLI itself runs as a subprocess above): (status, stdout)."""
    status = setup_cell.main([str(a) for a in args])
    return status, capsys.readouterr().out


def _source(path):
    return setup_cell.setup_cell(nbformat.read(path, as_version=4)).source


def test_check_fails_on_an_edited_block_and_write_repairs_it(tmp_path, capsys):
    copy = tmp_path / "chapter.ipynb"
    shutil.copy(FIXTURE, copy)
    own = _source(copy)  # the chapter's own imports, without the block

    assert _tool(capsys, "--check", copy)[0] == 1, "a setup cell without the block must fail"
    assert _tool(capsys, copy)[0] == 0
    written = _source(copy)
    assert written == setup_cell.block() + "\n" + own, "the write mode puts the block first, the chapter's code after"
    assert _tool(capsys, "--check", copy)[0] == 0
    meta = setup_cell.setup_cell(nbformat.read(copy, as_version=4)).metadata
    assert "hide-input" in meta["tags"], "collapsed in the HTML book"
    assert meta["mystnb"] == setup_cell.SETUP_PROMPTS == {"code_prompt_show": "Show setup code",
                                                          "code_prompt_hide": "Hide setup code"}

    nb = nbformat.read(copy, as_version=4)
    cell = setup_cell.setup_cell(nb)
    cell.source = cell.source.replace('"--quiet"', '"--upgrade"')
    assert cell.source != written
    nbformat.write(nb, copy)
    status, out = _tool(capsys, "--check", copy)
    assert status == 1 and "differs from the template" in out, out

    assert _tool(capsys, copy)[0] == 0
    assert _source(copy) == written, "the write mode restores the block and keeps the chapter's own code"
    before = copy.read_bytes()
    assert _tool(capsys, copy)[0] == 0
    assert copy.read_bytes() == before, "writing an up-to-date chapter changes nothing"
    assert len(nbformat.read(copy, as_version=4).cells) == len(nbformat.read(FIXTURE, as_version=4).cells)


def test_metadata_of_solutions_and_figures(tmp_path, capsys):
    """Solution cells get ``hide-cell`` and the "Show solution" prompts (a Markdown answer ``hide-cell``
    only: the book's extension labels it "Show answer"); a figure's alt text is copied for nbconvert;
    --check fails until the write mode has done it, and names the cell."""
    nb = nbformat.read(FIXTURE, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION",
                                              metadata={"tags": ["solution"]}))
    nb.cells.append(nbformat.v4.new_markdown_cell("Because x is 1.", metadata={"tags": ["solution"]}))
    figure = next(c for c in nb.cells if "subplots" in c.source)
    figure.metadata["mystnb"] = {"image": {"alt": "A random walk of 50 steps."}}
    copy = tmp_path / "chapter.ipynb"
    nbformat.write(nb, copy)
    status, out = _tool(capsys, "--check", copy)
    assert status == 1 and f"cell {len(nb.cells) - 2}: missing tag(s) ['hide-cell']" in out, out
    assert "mystnb.image.alt" in out, out
    assert _tool(capsys, copy)[0] == 0 and _tool(capsys, "--check", copy)[0] == 0
    written = nbformat.read(copy, as_version=4)
    code, answer = written.cells[-2], written.cells[-1]
    assert code.metadata["tags"] == ["solution", "hide-cell"]
    assert code.metadata["mystnb"] == {"code_prompt_show": "Show solution", "code_prompt_hide": "Hide solution"}
    assert answer.metadata["tags"] == ["solution", "hide-cell"] and "mystnb" not in answer.metadata
    fig = next(c for c in written.cells if c.get("id") == figure.get("id"))
    assert fig.metadata["alt"] == "A random walk of 50 steps."
    assert fig.metadata["mystnb"] == {"image": {"alt": "A random walk of 50 steps."}}


@pytest.mark.parametrize("n_setup", [0, 2])
def test_check_and_write_reject_a_chapter_without_exactly_one_setup_cell(tmp_path, capsys, n_setup):
    nb = nbformat.read(FIXTURE, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code[:2]):
        cell.metadata["tags"] = ["setup"] if i < n_setup else []
    copy = tmp_path / "chapter.ipynb"
    nbformat.write(nb, copy)
    before = copy.read_bytes()
    for args in (["--check", copy], [copy]):
        status, out = _tool(capsys, *args)
        assert status == 1 and f"found {n_setup}" in out, out
    assert copy.read_bytes() == before


# --- the block's guard -----------------------------------------------------------------------------

#: Runs the block with subprocess.run recorded; ``HIDE`` makes ``optlab`` look missing to the guard.
RUNNER = textwrap.dedent('''
    import importlib.util, json, subprocess, sys
    HIDE = {hide}
    calls = []
    def fake_run(cmd, *args, **kwargs):
        calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 0)
    real_find_spec = importlib.util.find_spec
    if HIDE:
        importlib.util.find_spec = lambda name, *a: None if name == "optlab" else real_find_spec(name, *a)
        subprocess.run = fake_run
    else:
        real_run = subprocess.run
        subprocess.run = lambda cmd, *a, **k: fake_run(cmd) and real_run(cmd, *a, **k)
    exec(compile({block!r}, "<setup block>", "exec"))
    import matplotlib as mpl
    print(json.dumps({{"calls": calls, "facecolor": mpl.rcParams["figure.facecolor"]}}))
''')


def _run_block(hide: bool, env_source):
    import json
    import os

    env = {k: v for k, v in os.environ.items() if k != "OPTLAB_SOURCE"}
    if env_source is not None:
        env["OPTLAB_SOURCE"] = env_source
    code = RUNNER.format(hide=hide, block=setup_cell.block())
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT / "tests")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_block_installs_nothing_where_optlab_is_importable():
    # A bogus source would make any install fail: the block must not even try.
    out = _run_block(hide=False, env_source="/nonexistent/optlab-0.0.0-py3-none-any.whl")
    assert out["calls"] == [], f"the block ran {out['calls']} although optlab is installed"
    assert out["facecolor"] == "white", "the block applies the book's plotting style"


@pytest.mark.parametrize("env_source", [None, "/tmp/dist/optlab-0.1.0-py3-none-any.whl"])
def test_block_installs_optlab_where_it_is_missing(env_source):
    out = _run_block(hide=True, env_source=env_source)
    source = env_source or setup_cell.install_source()
    assert out["calls"] == [[sys.executable, "-m", "pip", "install", "--quiet", source]]


# --- no chapter downloads anything -----------------------------------------------------------------

_SHELL = r"get_ipython\(\)\.(?:system|getoutput|run_cell_magic)\("
_HUBS = r"datasets|huggingface_hub|tensorflow_datasets|kagglehub|openml|torchvision\.datasets|torchtext\.datasets"
#: (what, pattern), matched against each line of a code cell after IPython's transforms, without comments.
NETWORK = [
    ("a shell command that installs or downloads",
     _SHELL + r".*\b(?:pip3?|conda|mamba|uv|apt|apt-get|wget|curl|git|gdown|kaggle|huggingface-cli)\b"),
    ("a %pip / %conda magic", r"get_ipython\(\)\.run_line_magic\(\s*['\"](?:pip|conda|mamba|uv)['\"]"),
    ("pip run from Python", r"['\"]pip['\"]|['\"]pip install\b|\bpip\.main\b|\bensurepip\b"),
    ("an HTTP client", r"^\s*(?:import|from)\s+(?:requests|httpx|aiohttp|urllib3|http\.client|pycurl|wget|gdown"
                       r"|ftplib|socket)\b"),
    ("urllib downloading", r"\burllib\.request\b|\bfrom\s+urllib\s+import\s+request\b|\burlopen\s*\(|\burlretrieve\b"),
    ("a scikit-learn fetch_* loader (downloads)", r"\bfetch_\w+\s*\(|sklearn\.datasets\s+import\s+.*\bfetch_\w+"),
    ("a data-set or model hub", rf"^\s*(?:import|from)\s+(?:{_HUBS})\b"
                                r"|\b(?:torchvision|torchtext|torchaudio)\.datasets\b|\bfrom\s+torchvision\s+import\s+.*\bdatasets\b|\bkeras\.datasets\b|\btorch\.hub\b"
                                r"|\b(?:load_dataset|hf_hub_download|snapshot_download|from_pretrained)\s*\("),
    ("a download flag", r"\bdownload\s*=\s*True\b"),
    ("a URL read by code", r"\b(?!print\b)\w+\s*\(\s*[rbuf]*['\"](?:https?|ftp|s3|gs)://"
                           r"|\b\w*url\w*\s*=\s*[rbuf]*['\"](?:https?|ftp|s3|gs)://"),
]


def _without_comments(code: str) -> str:
    lines = code.splitlines(keepends=True)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return code
    for tok in reversed(tokens):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col] + lines[row - 1][tok.end[1]:]
    return "".join(lines)


def network_uses(source: str) -> list[str]:
    """What in one code cell's source would reach the network, as readable findings (empty if nothing)."""
    from IPython.core.inputtransformer2 import TransformerManager

    code = _without_comments(TransformerManager().transform_cell(source))
    found = []
    for line in code.splitlines():
        for what, pattern in NETWORK:
            if re.search(pattern, line, re.IGNORECASE if "url" in what.lower() else 0):
                found.append(f"{what}: {line.strip()}")
    return found


def chapter_network_uses(nb) -> list[str]:
    """Findings for every code cell of a notebook; the setup block itself is exempt (it installs optlab)."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        source = cell.source
        block = setup_cell.current_block(source)
        if block is not None:
            source = source.replace(block, "")
        name = f"cell {index} (id {cell.get('id', '?')}, tags {cell.metadata.get('tags', [])})"
        found += [f"{name}: {hit}" for hit in network_uses(source)]
    return found


@pytest.mark.parametrize("chapter", CHAPTERS, ids=_id)
def test_chapter_downloads_nothing(chapter):
    found = chapter_network_uses(nbformat.read(chapter, as_version=4))
    assert not found, f"{_id(chapter)} would reach the network at run time:\n" + "\n".join(found)


DOWNLOADS = [
    "!pip install optlab",
    "%pip install torch",
    "!wget https://example.org/data.csv",
    "%%bash\ncurl -sO https://example.org/x.npz\n",
    "import requests\nr = requests.get(u)",
    "from urllib.request import urlopen",
    "import urllib.request\nurllib.request.urlretrieve(u, 'x')",
    "from sklearn.datasets import fetch_openml",
    "X = sklearn.datasets.fetch_california_housing()",
    "from datasets import load_dataset",
    "from huggingface_hub import hf_hub_download",
    "model = AutoModel.from_pretrained('bert-base-uncased')",
    "from torchvision import datasets",
    "ds = torchvision.datasets.MNIST('.', download=True)",
    "net = torch.hub.load('pytorch/vision', 'resnet18')",
    "df = pd.read_csv('https://example.org/data.csv')",
    "DATA_URL = 'https://example.org/data.npz'",
    "subprocess.run([sys.executable, '-m', 'pip', 'install', 'x'])",
]
OFFLINE = [
    "from sklearn.datasets import load_digits, load_breast_cancer\nX, y = load_digits(return_X_y=True)",
    "# bundled with scikit-learn (https://scikit-learn.org): nothing is downloaded\nx = 1",
    "print('the paper: https://arxiv.org/abs/2301.00001')",
    "from optlab import problems\np = problems.breast_cancer_logistic()",
    "import torch\ntorch.set_num_threads(1)",
    "fig, ax = plt.subplots()\nplt.show()",
    setup_cell.block(),
]


@pytest.mark.parametrize("source", DOWNLOADS)
def test_scanner_finds_downloads(source):
    assert network_uses(source), f"not caught: {source!r}"


@pytest.mark.parametrize("source", OFFLINE)
def test_scanner_passes_offline_code(source):
    if source == setup_cell.block():  # exempt only as the setup block of a chapter, not in general
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source + "\nimport numpy as np")])
        assert chapter_network_uses(nb) == []
        assert network_uses(source), "outside the setup block, pip-installing is a finding"
    else:
        assert network_uses(source) == []


def test_scanner_names_the_cell():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"),
                                         nbformat.v4.new_code_cell("!wget https://example.org/x", id="dl")])
    (finding,) = chapter_network_uses(nb)
    assert finding.startswith("cell 1 (id dl") and "wget" in finding
