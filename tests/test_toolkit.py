"""The toolkit chapter's claim: on seeds it does not use, and failing on a wrong variant."""
import sys
from pathlib import Path

import pytest

from optlab import baselines
from optlab.claims import ClaimFailed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "toolkit.ipynb"
GD = baselines.gradient_descent


def nesterov_without_momentum(f, grad, x0, *, lr, mu=0.0, n_iters=100, **kwargs):
    """The wrong variant: Nesterov's signature, gradient descent's steps (beta = 0)."""
    return GD(f, grad, x0, lr=lr, n_iters=n_iters, **kwargs)


WRONG_VARIANTS = {"Nesterov's method without momentum": {"optlab.baselines.nesterov": nesterov_without_momentum}}


@pytest.mark.slow
def test_the_claim_holds_on_other_seeds():
    verdict = run_claim(CHAPTER, seeds=[101, 102])
    assert verdict.passed and set(verdict.rejects) == set(WRONG_VARIANTS)


@pytest.mark.slow
@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=[101], patches=WRONG_VARIANTS[variant])
