"""Tests of optlab.networks.group_envelope, cheapest first; the chapter's claim on other seeds and wrong variants."""
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from optlab.claims import ClaimFailed
from optlab.networks import group_envelope as ge
from optlab.testing import check_bad_inputs, check_grad, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "networks" / "group_envelope.ipynb"
# Seeds and sizes of the claim re-runs here; the chapter uses seeds 1-3, 64 hidden neurons and k = 16.
CLAIM_SEEDS = [7001, 7002]
FAST = {"N_INSTANCES": 4}


def _instance(rng, n=10, size=3, weighted=True):
    v = rng.standard_normal(n * size)
    g = np.repeat(np.arange(n), size)
    d = rng.uniform(0.5, 2.0, n) if weighted else None
    return v, g, d


def brute_sef(z, k):
    """s_k = (1/2) min over theta in Theta_k of sum z^2/theta, by enumerating the saturated sets."""
    z = np.abs(np.asarray(z, float))
    best, n = 0.0, len(z)
    for sat in range(0, k):
        for S in itertools.combinations(range(n), sat):
            rest = [i for i in range(n) if i not in S]
            t = z[rest].sum()
            mu = t / (k - sat)
            theta = np.ones(n)
            theta[rest] = z[rest] / mu if mu > 0 else 0.0
            if np.all(theta <= 1 + 1e-12):
                val = 0.5 * (np.sum(z[list(S)] ** 2) + t ** 2 / (k - sat))
                best = val if best == 0.0 else min(best, val)
    return best


# --- exact identities ----------------------------------------------------------------------------

def test_sef_identities_and_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        z = rng.standard_normal(6)
        k = int(rng.integers(1, 6))
        s = ge.sef(z, k)
        assert s == pytest.approx(brute_sef(z, k), rel=1e-10)
        assert s >= max(0.5 * z @ z, np.abs(z).sum() ** 2 / (2 * k)) - 1e-12
        assert ge.sef(z, 1) == pytest.approx(0.5 * np.abs(z).sum() ** 2)
        assert ge.sef(z, 6) == pytest.approx(0.5 * z @ z)
    z = np.array([3.0, 0.0, -1.0, 0.0])
    assert ge.sef(z, 2) == pytest.approx(5.0), "s_k = ||z||^2/2 when ||z||_0 <= k"


def test_wgsef_and_group_norms():
    v = np.array([3.0, 4.0, 1.0, 0.0, 5.0])
    g = np.array([0, 0, 1, 1, -1])
    np.testing.assert_allclose(ge.group_norms(v, g), [5.0, 1.0])
    assert ge.wgsef(v, g, 1) == pytest.approx(0.5 * 36.0)
    assert ge.wgsef(v, g, 1, weights=[4.0, 1.0]) == pytest.approx(0.5 * 11.0 ** 2)
    assert ge.n_active(v, g) == 2 and ge.n_active(np.zeros(5), g) == 0


def test_prox_is_the_minimizer_of_its_objective():
    rng = np.random.default_rng(1)
    for _ in range(10):
        v, g, d = _instance(rng)
        lam, k = rng.uniform(0.1, 3.0), int(rng.integers(1, 6))
        x = ge.wgsef_prox(v, lam, groups=g, k=k, weights=d)

        def F(z, v=v, lam=lam, g=g, k=k, d=d):
            return 0.5 * np.sum((z - v) ** 2) + lam * ge.wgsef(z, g, k, d)

        f0 = F(x)
        for _ in range(30):
            assert F(x + 1e-3 * rng.standard_normal(x.size)) >= f0 - 1e-12


def test_prox_keeps_at_least_k_groups_and_special_cases():
    rng = np.random.default_rng(2)
    for _ in range(200):
        v, g, d = _instance(rng, n=12)
        k = int(rng.integers(1, 12))
        lam = 10.0 ** rng.uniform(-2, 3)
        assert ge.n_active(ge.wgsef_prox(v, lam, groups=g, k=k, weights=d), g) >= k
    v = np.array([3.0, -1.0, 0.0])
    np.testing.assert_allclose(ge.wgsef_prox(v, 1.0, groups=[0, 1, 2], k=2), v / 2)  # ||v||_0 <= k: ridge
    v, g, _ = _instance(rng, n=5)
    np.testing.assert_allclose(ge.wgsef_prox(v, 0.5, groups=g, k=5), v / 1.5)
    # k = 1 and singletons: the prox of (lam/2)||x||_1^2, soft-thresholding at lam ||x||_1
    v = rng.standard_normal(8)
    x = ge.wgsef_prox(v, 0.3, groups=np.arange(8), k=1)
    t = 0.3 * np.abs(x).sum()
    np.testing.assert_allclose(x, np.sign(v) * np.maximum(np.abs(v) - t, 0.0), atol=1e-12)


def test_ungrouped_entries_pass_through_and_group_lasso():
    v = np.array([3.0, 4.0, 0.1, 7.0])
    g = np.array([0, 0, 1, -1])
    assert ge.wgsef_prox(v, 1.0, groups=g, k=1)[3] == 7.0
    np.testing.assert_allclose(ge.group_lasso_prox(v, 1.0, groups=g), [2.4, 3.2, 0.0, 7.0])
    np.testing.assert_allclose(ge.group_lasso_prox(v, 1.0, groups=g, weights=[4.0, 1.0]), [1.8, 2.4, 0.0, 7.0])


# --- the trusted library: cvxpy -------------------------------------------------------------------

def test_prox_equals_cvxpy_reduced_and_joint_forms():
    rng = np.random.default_rng(3)
    for weighted in (False, True):
        for _ in range(3):
            v, g, d = _instance(rng, n=12, weighted=weighted)
            lam, k = rng.uniform(0.1, 3.0), int(rng.integers(1, 8))
            x = ge.wgsef_prox(v, lam, groups=g, k=k, weights=d)
            assert np.abs(x - ge.cvxpy_wgsef_prox(v, lam, groups=g, k=k, weights=d)).max() < 1e-6
            raw = ge.cvxpy_wgsef_prox(v, lam, groups=g, k=k, weights=d, polish=False)
            assert np.abs(x - raw).max() < 1e-5, "the interior-point answer before the crossover"
            # the joint (x, theta) form is degenerate at zeroed groups: about 1e-5 at best
            assert np.abs(x - ge.cvxpy_wgsef_prox(v, lam, groups=g, k=k, weights=d, joint=True)).max() < 1e-4


# --- the network ----------------------------------------------------------------------------------

def test_mlp_gradient_against_finite_differences_and_torch():
    torch = pytest.importorskip("torch")
    net = ge.digits_mlp(5, rng=0)
    x = net["x0"] + 0.05
    assert check_grad(net["loss"], net["grad"], x, n_dirs=5, rng=0) < 1e-6
    W1, W2 = (torch.tensor(w, requires_grad=True) for w in net["unpack"](x.copy()))
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    Xtr, _, ytr, _ = train_test_split(X / 16.0, y, test_size=0.3, random_state=0, stratify=y)
    A = torch.tensor(Xtr)
    out = torch.relu(A @ W1[:, :-1].T + W1[:, -1]) @ W2[:, :-1].T + W2[:, -1]
    loss = torch.nn.functional.cross_entropy(out, torch.tensor(ytr))
    loss.backward()
    assert float(loss.detach()) == pytest.approx(net["loss"](x), rel=1e-10)
    np.testing.assert_allclose(np.concatenate([W1.grad.numpy().ravel(), W2.grad.numpy().ravel()]),
                               net["grad"](x), atol=1e-10)
    assert net["groups"].max() == 4 and np.sum(net["groups"] == 0) == 65


def test_prox_sgd_converges_on_a_convex_problem():
    """Deterministic proximal gradient on 1/2||x - c||^2 + WGSEF: converges to prox_{WGSEF}(c)."""
    c = np.array([3.0, 2.0, -1.0, 0.5])
    g = np.arange(4)
    res = ge.prox_sgd(lambda x, r: x - c, np.zeros(4), lr=0.5, n_iters=200, groups=g,
                      prox=lambda v, lr: ge.wgsef_prox(v, lr * 0.4, groups=g, k=2))
    np.testing.assert_allclose(res.x, ge.wgsef_prox(c, 0.4, groups=g, k=2), atol=1e-10)
    assert res.n_evals == {"stoch_grad": 200, "prox": 200} and res.history["n_active"][-1] >= 2


START = np.ones(65 * 3 + 40)


def run(rng=0, x0=START, callback=None):
    net = ge.digits_mlp(3, rng=0)
    g = net["groups"]
    return ge.prox_sgd(net["stoch_grad"], x0 * 0.1, lr=0.1, n_iters=20, groups=g, f=net["loss"], rng=rng,
                       callback=callback, prox=lambda v, lr: ge.wgsef_prox(v, lr, groups=g, k=2))


def test_core_contract():
    res = check_method_contract(run)
    assert set(res.history.columns) >= {"t", "n_evals", "lr", "n_active", "f"}


def test_group_lasso_path_and_at_count():
    net = ge.digits_mlp(8, rng=0)
    path = ge.group_lasso_path(net, [0.05, 0.3, 1.0], lr=0.1, n_iters=30, rng=0)
    counts = [p[0] for p in path]
    assert counts[0] >= counts[-1] and all(0.0 <= p[1] <= 1.0 for p in path)
    assert ge.at_count(path, counts[-1])[0] == counts[-1] and ge.at_count(path, 0)[0] == min(counts)


NET = ge.digits_mlp(3, rng=0)
BAD_INPUT = {
    "sef": (ge.sef, dict(z=[1.0, 2.0], k=1), {"z": [[np.nan]], "k": [0, 1.5]}, ()),
    "group_norms": (ge.group_norms, dict(x=[1.0, 2.0], groups=[0, 1]),
                    {"groups": [[0], [0.5, 1.0], [-2, 0]]}, ()),
    "wgsef": (ge.wgsef, dict(x=[1.0, 2.0], groups=[0, 1], k=1, weights=[1.0, 2.0]),
              {"weights": [[1.0], [0.0, 1.0]], "k": [0]}, ()),
    "wgsef_prox": (ge.wgsef_prox, dict(v=[1.0, 2.0], lam=0.5, groups=[0, 1], k=1),
                   {"lam": [0.0, -1.0, np.nan], "k": [0], "groups": [[0, 1, 2]], "v": [[np.inf, 1.0]],
                    "weights": [[-1.0, 1.0]]}, ()),
    "group_lasso_prox": (ge.group_lasso_prox, dict(v=[1.0, 2.0], lam=0.5, groups=[0, 1]),
                         {"lam": [0.0], "groups": [[1]]}, ()),
    "cvxpy_wgsef_prox": (ge.cvxpy_wgsef_prox, dict(v=[1.0, 2.0], lam=0.5, groups=[0, 1], k=1),
                         {"k": [3, 0], "lam": [-1.0]}, ("joint", "eps")),
    "n_active": (ge.n_active, dict(x=[1.0, 0.0], groups=[0, 1]), {"groups": [[0]]}, ()),
    "prox_sgd": (ge.prox_sgd, dict(stoch_grad=lambda x, r: x, x0=np.ones(2), prox=lambda v, lr: v, lr=0.1,
                                   n_iters=3, groups=[0, 1]),
                 {"lr": [-0.1], "n_iters": [0], "n_log": [0], "groups": [[0]],
                  "prox": [(lambda v, lr: v[:1], "prox returned shape")]}, ()),
    "digits_mlp": (ge.digits_mlp, dict(hidden=3, batch=8, rng=0), {"hidden": [0], "batch": [0]}, ()),
    "group_lasso_path": (ge.group_lasso_path, dict(net=NET, lams=[0.1, 0.2], lr=0.1, n_iters=2, rng=0),
                         {"lams": [[0.2, 0.1], [-1.0]], "n_iters": [0], "lr": [-1.0]}, ("net",)),
    "at_count": (ge.at_count, dict(path=[(3, 0.9, None), (1, 0.5, None)], m=2), {"m": [5, -1]}, ("path",)),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


# --- the claim: wrong variants must fail it, other seeds must pass it -----------------------------

_theta = ge._theta


def _hard_top_k(a, w, lam, k):
    """The l0 projection instead of its envelope: theta = 1 on the k largest weighted norms, 0 elsewhere."""
    theta = np.zeros_like(a)
    theta[np.argsort(-w * a, kind="stable")[:k]] = 1.0
    return theta * (a > 0)


def _unweighted_threshold(a, w, lam, k):
    """The weights forgotten in the threshold (kept in the rescaling)."""
    return _theta(a, np.ones_like(w), lam, k)


def _uncapped(a, w, lam, k):
    """The constraint theta <= 1 dropped: theta_i = max(tau w_i a_i - lam w_i^2, 0), sum = k."""
    s, c = w * a, lam * w ** 2
    lo, hi = 0.0, (k + c.sum()) / s.max()
    for _ in range(200):
        tau = 0.5 * (lo + hi)
        lo, hi = (tau, hi) if np.maximum(tau * s - c, 0).sum() < k else (lo, tau)
    return np.maximum(hi * s - c, 0.0)


WRONG_VARIANTS = {
    "hard top-k selection instead of the envelope prox": {"optlab.networks.group_envelope._theta": _hard_top_k},
    "group weights dropped from the threshold": {"optlab.networks.group_envelope._theta": _unweighted_threshold},
    "the cap theta <= 1 dropped": {"optlab.networks.group_envelope._theta": _uncapped},
}


def test_the_claim_cell_rejects_exactly_the_wrong_variants():
    from claims import claim_sources
    _, cell = claim_sources(CHAPTER)
    for name in WRONG_VARIANTS:
        assert repr(name) in cell or f'"{name}"' in cell, name


@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_a_wrong_variant_fails_the_claim(variant):
    with pytest.raises(ClaimFailed):
        run_claim(CHAPTER, seeds=[1], patches=WRONG_VARIANTS[variant], sizes=FAST)


@pytest.mark.slow
def test_the_claim_holds_on_other_seeds():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS)
    assert verdict.passed
