"""Tests of optlab.stochastic.adadagrad (and its problems, adadagrad_problems), cheapest first; the chapter's
claim on other seeds and wrong variants."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from optlab.claims import ClaimFailed
from optlab.core import as_rng
from optlab.stochastic import adadagrad as ad
from optlab.stochastic import adadagrad_problems as adp
from optlab.testing import check_bad_inputs, check_grad, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "stochastic" / "adadagrad.ipynb"
# Seeds and sizes of the claim re-runs here; the chapter uses seeds 1-3 and a budget of 60 epochs.
CLAIM_SEEDS = [8101, 8102, 8103]
SIZES = {"BUDGET_EPOCHS": 45}


@pytest.fixture(scope="module")
def softmax():
    return adp.digits_softmax()


@pytest.fixture(scope="module")
def mlp():
    pytest.importorskip("torch")
    return adp.digits_mlp(hidden=8)


def quadratic_sum(a):
    """f_i(x) = ||x - a_i||^2 / 2: per-sample gradients x - a_i, minimizer the mean of the a_i."""
    return lambda x, idx: x[None, :] - a[idx]


# --- oracles ---------------------------------------------------------------------------------

def test_softmax_oracles(softmax):
    p, rng = softmax, np.random.default_rng(0)
    x = 0.1 * rng.standard_normal(p.dim)
    assert p.dim == 650 and p.info["n"] == 1437
    assert check_grad(p.f, p.grad, x, n_dirs=20, rng=1) < 1e-7
    G = p.info["per_sample_grad"](x, np.arange(p.info["n"]))
    np.testing.assert_allclose(G.mean(axis=0), p.grad(x), atol=1e-12)
    assert p.info["train"][0].shape == (1437, 65)
    fi, psg = p.info["sample_loss"], p.info["per_sample_grad"]
    for i in (0, 17, 1436):  # a row is the gradient of the one-sample loss (finite differences on f_i)
        assert check_grad(lambda z, i=i: fi(z, i), lambda z, i=i: psg(z, [i])[0], x, n_dirs=20, rng=i) < 1e-7


def test_softmax_smoothness_bound(softmax):
    p, rng = softmax, np.random.default_rng(3)
    for _ in range(5):
        x, y = rng.standard_normal((2, p.dim))
        assert np.linalg.norm(p.grad(x) - p.grad(y)) <= p.L * np.linalg.norm(x - y)


def test_softmax_optimum_matches_scikit_learn(softmax):
    from sklearn.linear_model import LogisticRegression

    p = softmax
    Z, y = p.info["train"]
    lam = p.info["l2"]
    lr = LogisticRegression(C=1 / (len(y) * lam), fit_intercept=False, tol=1e-12, max_iter=5000).fit(Z, y)
    x_sk = lr.coef_.T.ravel()  # (65, 10) flattened like ours
    assert np.linalg.norm(p.grad(x_sk)) < 1e-5, "scikit-learn's minimizer is a stationary point of our F"


def test_mlp_oracles_against_torch_autograd(mlp):
    import torch

    p = mlp
    x = p.x0 + 0.01
    assert check_grad(p.f, p.grad, x, n_dirs=10, rng=0) < 1e-7
    idx = np.array([3, 500, 1200])
    G = p.info["per_sample_grad"](x, idx)
    params = {k: v.clone().requires_grad_(True) for k, v in p.info["unflatten"](x).items()}
    for row, i in zip(G, idx):
        loss = p.info["sample_loss"](params, int(i))
        gs = torch.autograd.grad(loss, list(params.values()))
        np.testing.assert_allclose(row, torch.cat([g.reshape(-1) for g in gs]).numpy(), atol=1e-12)
    np.testing.assert_allclose(p.info["per_sample_grad"](x, np.arange(p.info["n"])).mean(axis=0), p.grad(x), atol=1e-12)


# --- the test's pieces: exact identities ------------------------------------------------------

def test_batch_variance_against_torch_var():
    torch = pytest.importorskip("torch")
    G = np.random.default_rng(0).standard_normal((7, 5))
    official = torch.var(torch.tensor(G), dim=0, correction=1).numpy()  # what the official code computes
    np.testing.assert_allclose(ad.batch_variance(G) * 7, official, rtol=1e-12)
    np.testing.assert_allclose(ad.batch_variance(torch.tensor(G)).numpy(), ad.batch_variance(G), rtol=1e-12)


def test_norm_test_is_the_official_rule():
    """b r / eta^2 = ||sample variance||_1 / (eta^2 ||g||^2), the rule of the official code (tests.py)."""
    rng = np.random.default_rng(1)
    for b in (2, 5, 40):
        G = rng.standard_normal((b, 30)) + 0.3
        g = G.mean(axis=0)
        official = max(b, math.ceil(np.var(G, axis=0, ddof=1).sum() / (0.5 ** 2 * g @ g)))
        assert ad.next_batch_size(ad.estimated_error(G), b, 0.5, 10 ** 9) == official


def test_coordinate_test_handles_zero_columns_and_dominates_the_norm_test():
    G = np.array([[1.0, 0.0, 2.0, 5.0], [3.0, 0.0, 2.0, 4.0], [2.0, 0.0, 2.0, 6.0]])
    g, V = G.mean(axis=0), ad.batch_variance(G)
    r = ad.estimated_error(G, "coordinate")
    assert r == pytest.approx(max(V[0] / g[0] ** 2, V[3] / g[3] ** 2))  # columns 1 (0/0) and 2 (V = 0) impose nothing
    assert np.isfinite(r) and r >= ad.estimated_error(G, "norm")
    # the norm test is the g^2-weighted mean of the coordinate ratios
    w = g ** 2 / (g @ g)
    ratios = np.divide(V, g ** 2, out=np.zeros_like(V), where=V > 0)
    assert ad.estimated_error(G, "norm") == pytest.approx(w @ ratios)
    assert ad.estimated_error(np.array([[1.0, 2.0], [-1.0, 2.0]]), "coordinate") == math.inf  # zero mean, V > 0
    assert ad.estimated_error(np.ones((3, 2)), "norm") == 0.0
    assert ad.next_batch_size(math.inf, 4, 0.5, 99) == 99


def test_estimated_error_agrees_on_numpy_and_torch():
    torch = pytest.importorskip("torch")
    G = np.random.default_rng(2).standard_normal((6, 4)) + 1.0
    G[:, 2] = 0.0
    for test in ("norm", "coordinate"):
        assert ad.estimated_error(torch.tensor(G), test) == pytest.approx(ad.estimated_error(G, test), rel=1e-12)


def test_estimated_error_is_unbiased_for_sampling_without_replacement():
    """E[sum_j V_j] = (n/(n-1)) tr(Sigma)/b: the sample variance of a subset estimates the population's S^2."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((50, 3)) * [1.0, 2.0, 0.5]
    x = np.zeros(3)
    draws = [ad.batch_variance(quadratic_sum(a)(x, rng.choice(50, 8, replace=False))).sum() for _ in range(20000)]
    S2 = a.var(axis=0, ddof=1).sum()
    assert np.mean(draws) == pytest.approx(S2 / 8, rel=0.02)


def test_steps_are_pure_and_adagrad_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, gs = rng.standard_normal(4), rng.standard_normal((6, 4))
    state, xs = ad.adagrad_state(x), x.copy()
    ref = torch.nn.Parameter(torch.tensor(x))
    opt = torch.optim.Adagrad([ref], lr=0.3, initial_accumulator_value=0.05, eps=0.0)
    for g in gs:
        g0 = g.copy()
        xs, state = ad.adagrad_step(xs, g, state, lr=0.3, v0=0.05)
        assert np.array_equal(g, g0)
        ref.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(xs, ref.detach().numpy(), rtol=1e-12)
    s, x1 = ad.adagrad_norm_state(x), x.copy()
    x2, s2 = ad.adagrad_norm_step(x1, gs[0], s, lr=1.0, v0=1.0)
    np.testing.assert_allclose(x2, x - gs[0] / np.sqrt(1.0 + gs[0] @ gs[0]))
    assert np.array_equal(x1, x) and float(s["s"]) == 0.0 and float(s2["s"]) == pytest.approx(gs[0] @ gs[0])


# --- the torch optimizers: parity with the numpy loop ------------------------------------------

@pytest.mark.parametrize("update", ["norm", "coordinate"])
def test_torch_optimizer_takes_the_numpy_steps(softmax, update):
    """Same batches, same float64 arithmetic: the torch optimizer (two parameter tensors) equals the numpy loop."""
    torch = pytest.importorskip("torch")
    p = softmax
    res = ad.adadagrad(p.info["per_sample_grad"], p.x0, n_samples=p.info["n"], lr=0.7, batch_size=16, test=None,
                       update=update, v0=0.02, max_samples=16 * 25, rng=11)
    Z, y = (torch.tensor(a) for a in p.info["train"])
    W = torch.nn.Parameter(torch.zeros(64, 10, dtype=torch.float64))
    c = torch.nn.Parameter(torch.zeros(1, 10, dtype=torch.float64))
    opt = ad.torch_optimizer("adagrad_norm" if update == "norm" else "adagrad", [W, c], lr=0.7, v0=0.02)
    rng = as_rng(11)
    for _ in range(25):
        idx = torch.as_tensor(rng.choice(p.info["n"], size=16, replace=False))
        opt.zero_grad()
        logits = Z[idx] @ torch.cat([W, c])
        loss = torch.nn.functional.cross_entropy(logits, y[idx]) + p.info["l2"] / 2 * ((W ** 2).sum() + (c ** 2).sum())
        loss.backward()
        opt.step()
    np.testing.assert_allclose(torch.cat([W, c]).detach().numpy().ravel(), res.x, rtol=1e-10, atol=1e-12)


def test_adagrad_norm_optimizer_has_one_accumulator():
    torch = pytest.importorskip("torch")
    a = torch.nn.Parameter(torch.tensor([3.0, 0.0], dtype=torch.float64))
    b = torch.nn.Parameter(torch.tensor([4.0], dtype=torch.float64))
    opt = ad.torch_optimizer("adagrad_norm", [a, b], lr=1.0, v0=0.0 + 1e-300)
    a.grad, b.grad = a.detach().clone(), b.detach().clone()
    opt.step()  # the step divides by the norm of the whole gradient, 5, not by each tensor's norm
    np.testing.assert_allclose(a.detach().numpy(), [3.0 - 0.6, 0.0])
    np.testing.assert_allclose(b.detach().numpy(), [4.0 - 0.8])
    with pytest.raises(TypeError, match="unknown hyperparameters"):
        ad.torch_optimizer("adagrad_norm", [a], momentum=0.9)
    with pytest.raises(ValueError, match="same lr and v0"):
        ad.torch_optimizer("adagrad_norm", [{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.2}]).step()


# --- convergence and the mechanism on a quadratic finite sum -----------------------------------

def test_full_batch_adagrad_norm_converges_to_the_mean():
    a = np.random.default_rng(6).standard_normal((40, 3)) + 2.0
    res = ad.adadagrad(quadratic_sum(a), np.zeros(3), n_samples=40, lr=1.0, batch_size=40, test=None,
                       max_samples=40 * 400, rng=0)
    np.testing.assert_allclose(res.x, a.mean(axis=0), atol=1e-6)
    assert res.n_iters == 400 and res.n_evals == {"per_sample_grad": 16000}


def test_the_batch_grows_as_the_gradient_shrinks_and_the_test_stops_at_the_cap():
    a = np.random.default_rng(7).standard_normal((500, 4))
    res = ad.adadagrad(quadratic_sum(a), np.full(4, 3.0), n_samples=500, lr=1.0, batch_size=2, eta=0.5,
                       max_samples=30_000, rng=1)
    bs = res.batch_sizes
    assert bs[0] == 2 and bs[-1] == 500 and np.all(np.diff(bs) >= 0)
    assert np.all(np.isnan(res.est_error[bs == 500])) and np.all(np.isfinite(res.est_error[bs < 500]))
    assert res.samples[-1] == bs.sum() <= 30_000 and res.samples[-1] + bs[-1] > 30_000
    k = np.flatnonzero((bs[1:] > bs[:-1]) & (bs[1:] < 500))[:5]
    for i in k:  # each raise is the rule applied to the step before
        assert bs[i + 1] == max(bs[i], math.ceil(bs[i] * res.est_error[i] / 0.25))


def test_coordinate_update_and_test_run(softmax):
    p = softmax
    res = ad.adadagrad(p.info["per_sample_grad"], p.x0, n_samples=p.info["n"], lr=0.5, batch_size=4, eta=0.5,
                       test="coordinate", update="coordinate", max_samples=10_000, f=p.f, rng=0)
    assert res.batch_sizes[1] == p.info["n"], "zero-mean coordinates with variance send the batch to the cap"
    assert np.isfinite(res.f) and res.f < p.f(p.x0)


# --- the API contract --------------------------------------------------------------------------

A = np.random.default_rng(8).standard_normal((60, 3))
START = np.full(3, 2.0)


def run(rng=0, x0=START, callback=None, **kw):
    args = dict(n_samples=60, lr=0.5, batch_size=2, max_samples=600, f=lambda x: 0.5 * np.mean(np.sum((x - A) ** 2, 1)),
                grad=lambda x: x - A.mean(axis=0))
    return ad.adadagrad(quadratic_sum(A), x0, rng=rng, callback=callback, **{**args, **kw})


def test_core_contract():
    check_method_contract(run)


def test_result_fields_and_history():
    res = run(n_log=8)
    assert res.method == "adadagrad" and res.n_evals["per_sample_grad"] == res.samples[-1] <= 600
    assert set(res.extras) == {"batch_sizes", "samples", "est_error", "rel_error"}
    assert len(res.batch_sizes) == len(res.rel_error) == res.n_iters
    for col in ("t", "n_evals", "samples", "batch_size", "f", "grad_norm"):
        assert col in res.history.columns
    assert res.history["t"][0] == 0 and res.history["samples"][-1] == res.samples[-1] and len(res.history) <= 10
    assert res.f == pytest.approx(0.5 * np.mean(np.sum((res.x - A) ** 2, 1)))
    assert "adadagrad" in repr(res) and "0x" not in repr(res)


def test_n_iters_and_non_finite_iterates():
    res = run(n_iters=3)
    assert res.n_iters == 3 and res.history["t"][-1] == 3
    with np.errstate(over="ignore", invalid="ignore"):
        res = ad.adadagrad(lambda x, idx: np.full((len(idx), 2), np.inf), np.ones(2), n_samples=10, lr=1.0,
                           batch_size=2, test=None, max_samples=100)
    assert "non-finite" in res.message and res.n_iters == 1 and np.isnan(res.f)


BAD_INPUT = {
    "adadagrad": (ad.adadagrad, dict(per_sample_grad=quadratic_sum(A), x0=START, n_samples=60, lr=0.5, batch_size=2,
                                     max_samples=100),
                  {"x0": [np.ones((2, 3)), [1.0, np.nan, 0.0], []], "n_samples": [1, 2.5], "lr": [0.0, -1.0, np.inf],
                   "batch_size": [1, 0, 61, 2.0], "max_samples": [1], "eta": [0.0, -0.5], "test": ["inner"],
                   "update": ["adam", None], "v0": [0.0], "max_batch": [0, 61], "n_iters": [0],
                   "n_log": [1],
                   "per_sample_grad": [None, (lambda x, idx: np.zeros(3), "per_sample_grad returned shape")],
                   "f": [3], "grad": [(lambda x: np.zeros(2), "grad returned shape")], "rng": ["seed"],
                   "callback": [3]}, ()),
    "adadagrad/constant": (ad.adadagrad, dict(per_sample_grad=quadratic_sum(A), x0=START, n_samples=60, lr=0.5,
                                              batch_size=1, test=None, max_samples=100),
                           {"batch_size": [0, 61]},
                           ("per_sample_grad", "x0", "n_samples", "lr", "max_samples", "test")),
    "estimated_error": (ad.estimated_error, dict(G=np.ones((3, 2)), test="norm"),
                        {"G": [np.ones(3), np.ones((1, 4))], "test": ["max"]}, ()),
    "next_batch_size": (ad.next_batch_size, dict(ratio=1.0, b=4, eta=0.5, max_batch=100),
                        {"ratio": [-1.0, np.nan, "1"], "b": [0, 2.5], "eta": [0.0], "max_batch": [3]}, ()),
    "torch_optimizer": (lambda **kw: ad.torch_optimizer(**kw),
                        dict(name="adagrad", params=[np.zeros(1)], lr=0.1), {"name": ["adam"], "lr": [0.0, -1.0]},
                        ("params",)),
    "digits_softmax": (adp.digits_softmax, dict(l2=1e-3), {"l2": [-1.0, np.nan], "test_size": [5, 2000],
                                                          "rng": [-1]}, ()),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    if row == "torch_optimizer":
        torch = pytest.importorskip("torch")
        good = {**good, "params": [torch.nn.Parameter(torch.zeros(1))]}
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


def test_bad_input_of_digits_mlp():
    pytest.importorskip("torch")
    assert check_bad_inputs(adp.digits_mlp, dict(hidden=2), {"hidden": [0, 2.5], "l2": [-1.0]}) > 0


# --- the chapter's claim: other seeds and sizes, and wrong variants that must fail it ------------

def variance_not_divided_by_b(G):
    """The per-sample variance used as the variance of the batch mean (the division by b forgotten)."""
    return VARIANCE(G) * G.shape[0]


def batch_size_without_b(ratio, b, eta, max_batch):
    """The new batch set to r/eta^2 instead of b r/eta^2 (the factor b_t dropped)."""
    return max(b, NEXT(ratio, 1, eta, max_batch))


def tolerance_not_squared(ratio, b, eta, max_batch):
    """The estimated error compared with eta instead of eta^2."""
    return NEXT(ratio, b, math.sqrt(eta), max_batch)


VARIANCE, NEXT = ad.batch_variance, ad.next_batch_size
MODULE = "optlab.stochastic.adadagrad"
WRONG_VARIANTS = {
    "the variance of the batch gradient not divided by the batch size": {f"{MODULE}.batch_variance":
                                                                         variance_not_divided_by_b},
    "the new batch size without the factor b_t (r_t/eta^2 instead of b_t r_t/eta^2)": {f"{MODULE}.next_batch_size":
                                                                                      batch_size_without_b},
    "the estimated error compared with eta instead of eta^2": {f"{MODULE}.next_batch_size": tolerance_not_squared},
}


@pytest.mark.slow
def test_the_claim_holds_on_seeds_and_sizes_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS, sizes=SIZES)
    assert verdict.passed and verdict.status == "holds in part"
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.slow
@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=CLAIM_SEEDS[:1], sizes=SIZES, patches=WRONG_VARIANTS[variant])
