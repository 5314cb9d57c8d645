"""The claims machinery of the book: every chapter's stored verdict, the ledger page, re-runs on other seeds."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import claims  # noqa: E402
from _book import notebooks  # noqa: E402

CHAPTERS = notebooks()
IDS = [p.relative_to(ROOT).as_posix() for p in CHAPTERS]


def chapter_tests(path: Path) -> Path:
    """tests/<part>/test_<slug>.py for chapters/<part>/<slug>.ipynb; tests/test_toolkit.py for the toolkit."""
    rel = path.relative_to(ROOT / "chapters")
    return ROOT / "tests" / rel.parent / f"test_{rel.stem}.py"


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"_chapter_tests_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", CHAPTERS, ids=IDS)
def test_every_chapter_stores_a_passing_verdict_and_tests_its_wrong_variants(path):
    verdict = claims.stored_verdict(path)
    assert verdict["passed"] and verdict["status"] in ("holds", "holds in part", "does not reproduce at this scale")
    assert verdict["seeds"], "the verdict names its seeds"
    assert verdict["rejects"], "a claim with teeth names the wrong variants it was shown to fail on"
    module = load(chapter_tests(path))
    variants = getattr(module, "WRONG_VARIANTS", None)
    assert variants, f"{chapter_tests(path).relative_to(ROOT)} must define WRONG_VARIANTS"
    assert set(verdict["rejects"]) == set(variants), "the verdict's 'rejects' must be the variants the tests run"
    source = claims.claim_sources(path)[1]
    assert source.lstrip().startswith("SEEDS = "), "the claim cell starts with SEEDS = [...] (tools/claims.py)"


def test_the_ledger_page_is_up_to_date():
    assert claims.PAGE.exists(), "run python tools/claims.py --ledger"
    assert claims.PAGE.read_text() == claims.ledger(), "the claims page is out of date: python tools/claims.py --ledger"
    text = claims.PAGE.read_text()
    for path in CHAPTERS:
        assert claims.stored_verdict(path)["statement"] in text


def test_override_replaces_top_level_assignments_only():
    src = "SEEDS = [1, 2]\nN = 10\ndef f():\n    N = 3\n"
    out = claims._override(src, {"SEEDS": [7], "N": 99})
    assert "SEEDS = [7]" in out and "N = 99" in out and "    N = 3" in out
    with pytest.raises(ValueError, match="no top-level assignment of \\['M'\\]"):
        claims._override(src, {"M": 1})


def test_patches_are_restored():
    import optlab.baselines as B

    original = B.nesterov
    with claims._patched({"optlab.baselines.nesterov": "patched"}):
        assert B.nesterov == "patched"
    assert B.nesterov is original


@pytest.mark.slow
def test_the_command_line_reruns_a_claim_on_other_seeds():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "claims.py"), "--seeds", "5", "6",
                          str(ROOT / "chapters" / "toolkit.ipynb")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "CLAIM classical HOLDS" in out.stdout and "seeds 5, 6" in out.stdout
