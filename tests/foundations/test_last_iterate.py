"""Tests of optlab.foundations.last_iterate, cheapest first; the chapter's claim on other seeds and wrong variants."""
import sys
from pathlib import Path

import numpy as np
import pytest

from optlab.claims import ClaimFailed
from optlab.foundations import last_iterate as li
from optlab.prox import soft_threshold
from optlab.schedules import capped, constant, inverse_sqrt, inverse_time, linear_decay
from optlab.testing import check_bad_inputs, check_grad, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "foundations" / "last_iterate.ipynb"
# Seeds and sizes of the claim re-runs here; the chapter uses seeds 1-3 at 1000 replicas.
CLAIM_SEEDS = [7001, 7002, 7003]
FAST = {"N_REPLICAS": 300}


# --- exact identities and oracles --------------------------------------------------------------

def test_composite_problem_splits_smooth_and_nonsmooth_parts():
    p = li.composite_problem(dim=3, lam=2.0)
    v = np.array([[3.0, -0.5, 1.5]])
    np.testing.assert_allclose(p.prox(v, 0.5), soft_threshold(v, 1.0))
    x = np.array([1.0, -2.0, 0.5])
    assert p.f(x) == pytest.approx(0.5 * 5.25) and p.h(x) == pytest.approx(2.0 * 3.5)
    assert p.F(x) == pytest.approx(p.f(x) + p.h(x)) and p.gap(x) == pytest.approx(p.F(x))
    assert check_grad(p.f, p.grad, x) < 1e-8, "grad is the gradient of the smooth part f"
    assert (p.L, p.mu) == (1.0, 1.0)


def test_problem_oracles():
    ls = li.least_squares_problem(n_samples=3, dim=5)
    x = np.linspace(-1.0, 1.0, 5)
    assert check_grad(ls.f, ls.grad, x) < 1e-6
    assert ls.f(np.ones(5)) == pytest.approx(0.0)  # b = A 1 is fitted exactly
    assert ls.L == pytest.approx(np.linalg.eigvalsh(ls.info["A"].T @ ls.info["A"]).max() / 3)
    l1 = li.l1_norm_problem(4)
    assert l1.G == pytest.approx(2.0) and check_grad(l1.f, l1.grad, np.array([0.3, -0.7, 1.2, -2.0])) < 1e-8
    X = np.arange(15.0).reshape(3, 5) / 10
    for p in (li.l1_norm_problem(5), ls, li.composite_problem(5, lam=0.3)):
        np.testing.assert_allclose(p.F(X), [p.F(row) for row in X])
        assert p.stoch_grad(X, np.random.default_rng(0)).shape == X.shape
        assert p.F(np.zeros(5)) >= p.f_star - 1e-12


def test_stochastic_gradients_are_unbiased():
    rng = np.random.default_rng(3)
    x = np.array([0.5, -1.0, 2.0])
    for p in (li.l1_norm_problem(3), li.composite_problem(3), li.least_squares_problem(2, 3)):
        g = p.stoch_grad(np.tile(x, (40_000, 1)), rng).mean(axis=0)
        np.testing.assert_allclose(g, p.grad(x), atol=0.03)


# --- step-size rules ---------------------------------------------------------------------------

def test_step_size_rules():
    s = li.step_size("horizon", eta=2.0, n_iters=400)
    assert s == constant(0.1) and s(0) == s(399) == pytest.approx(0.1)
    assert li.step_size("anytime", eta=2.0) == inverse_sqrt(2.0) and li.step_size("anytime", eta=2.0)(3) == 1.0
    assert li.step_size("strongly_convex", mu=0.5) == inverse_time(0.5)
    assert li.step_size("strongly_convex", mu=0.5)(3) == pytest.approx(0.5)
    lin = li.step_size("linear_decay", eta=1.0, n_iters=100)
    assert lin == linear_decay(0.1, n_iters=100)
    assert [lin(t) for t in (0, 50, 99)] == pytest.approx([100 / 1000, 50 / 1000, 1 / 1000])  # eta (T - t)/T^1.5


def test_the_smooth_cap_is_one_over_2L():
    s = li.step_size("horizon", eta=1.0, n_iters=4, L=2.0)
    assert s == capped(constant(0.5), 0.25) and s(0) == 0.25
    assert li.step_size("horizon", eta=1.0, n_iters=100, L=2.0)(0) == pytest.approx(0.1)  # below the cap
    assert li.step_size("strongly_convex", mu=1.0, L=1.0)(0) == 0.5


BAD_INPUT = {
    "sgd": (li.sgd, dict(stoch_grad=lambda x, rng: np.sign(x), x0=np.ones((4, 3)), lr=0.1, n_iters=5,
                         f=lambda x: np.abs(x).sum(axis=-1), prox=lambda v, lr: v, project=lambda x: x),
            {"x0": [np.ones((2, 2, 2)), [[1.0, np.nan]], []],
             "lr": [-0.1, (lambda t: -1.0, "lr schedule"), (lambda t: np.nan, "lr schedule")],
             "n_iters": [0, 2.5], "n_log": [1, "30"], "quantiles": [(0.5, 1.5), (0.95, 0.9500001), "0.5"],
             "stoch_grad": [None, (lambda x, rng: np.zeros(7), "stoch_grad returned shape")],
             "prox": ["soft", (lambda v, lr: 1.0, "prox returned shape")],
             "project": [(lambda x: x[:2], "project returned shape")],
             "f": [(lambda x: np.abs(x).sum(), "f must be row-wise")], "rng": ["seed"], "callback": [3]}, ()),
    "sgd/R=d": (li.sgd, dict(stoch_grad=lambda x, rng: np.sign(x), x0=np.ones((3, 3)), lr=0.1, n_iters=5),
                {"f": [(lambda x: np.abs(x).sum(axis=0), "f must be row-wise")]},
                ("stoch_grad", "x0", "lr", "n_iters")),
    "step_size": (li.step_size, dict(rule="horizon", eta=1.0, n_iters=10),
                  {"rule": ["adaptive", "constant"], "eta": [-1.0, 0.0, np.nan], "n_iters": [0, 2.5],
                   "mu": [(1.0, "does not use mu")], "L": [0.0, -1.0]}, ()),
    "step_size/strongly_convex": (li.step_size, dict(rule="strongly_convex", mu=0.5),
                                  {"mu": [0.0, -1.0], "eta": [(1.0, "does not use eta")],
                                   "n_iters": [(10, "does not use n_iters")]}, ("rule",)),
    "step_size/needs": (lambda **kw: li.step_size(**kw), dict(rule="anytime"),
                        {"rule": [("horizon", "needs the horizon n_iters"), ("linear_decay", "n_iters"),
                                  ("strongly_convex", "needs mu")]}, ("rule",)),
    "horizon_sweep": (li.horizon_sweep, dict(problem=li.l1_norm_problem(2), horizons=[5, 10], lr=lambda T: 0.1,
                                             n_replicas=3, rng=0),
                      {"horizons": [[0, 10], [2.5]], "n_replicas": [0], "lr": [3], "x0": [[1.0, np.nan]]},
                      ("problem", "horizons")),
    "l1_norm_problem": (li.l1_norm_problem, dict(dim=3), {"dim": [0, 2.5], "noise": ["levy"]}, ()),
    "least_squares_problem": (li.least_squares_problem, dict(n_samples=3, dim=5),
                              {"n_samples": [0, -2], "dim": [0], "rng": [-1]}, ()),
    "composite_problem": (li.composite_problem, dict(dim=3, lam=1.0), {"lam": [-1.0, np.nan], "dim": [0]}, ()),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


# --- convergence on deterministic problems -----------------------------------------------------

def exact(p):
    return lambda x, rng: p.grad(x)


def test_deterministic_composite_reaches_the_minimizer_exactly():
    p = li.composite_problem(dim=4, lam=0.1)
    res = li.sgd(exact(p), np.array([3.0, -2.0, 0.5, 0.0]), lr=0.5, n_iters=60, f=p.F, prox=p.prox)
    assert np.array_equal(res.x, np.zeros(4)) and res.f == 0.0
    assert res.history["sparsity"][-1] == 1.0


def test_deterministic_least_squares_and_subgradient():
    ls = li.least_squares_problem()
    res = li.sgd(exact(ls), ls.x0, lr=1.0 / ls.L, n_iters=3000, f=ls.F)
    assert res.f < 1e-10
    l1 = li.l1_norm_problem(3)
    res = li.sgd(exact(l1), l1.x0, lr=li.step_size("anytime", eta=0.5), n_iters=2000, f=l1.F)
    assert res.f < 3 * 0.5 / np.sqrt(2000)  # the subgradient method oscillates within a step of 0


def test_projection_onto_a_box():
    c = np.array([2.0, -3.0, 0.2])
    res = li.sgd(lambda x, rng: x - c, np.zeros(3), lr=0.5, n_iters=100, project=lambda x: np.clip(x, -1.0, 1.0))
    np.testing.assert_allclose(res.x, [1.0, -1.0, 0.2], atol=1e-12)
    assert res.n_evals == {"stoch_grad": 100, "project": 100}


def test_linear_decay_last_iterate_beats_the_constant_step_on_a_sharp_problem():
    """On the sharp l1 norm the last iterate ends at the scale of its last steps (experiment 1c)."""
    p = li.l1_norm_problem(5)
    const = li.horizon_sweep(p, [1000], lr=lambda T: li.step_size("horizon", n_iters=T), n_replicas=300, rng=7300)
    decay = li.horizon_sweep(p, [1000], lr=lambda T: li.step_size("linear_decay", n_iters=T), n_replicas=300,
                             rng=7301)
    assert decay["f"][0] < 0.1 * const["f"][0]


# --- the API contract --------------------------------------------------------------------------

START = np.ones((50, 3))


def run(rng=0, x0=START, callback=None, n_iters=200, **kw):
    p = li.l1_norm_problem(3)
    return li.sgd(p.stoch_grad, x0, lr=li.step_size("horizon", n_iters=n_iters), n_iters=n_iters, f=p.F, rng=rng,
                  callback=callback, **kw)


def test_core_contract():
    check_method_contract(run)


def test_result_fields_and_history():
    res = run(n_log=10, quantiles=(0.5, 0.9))
    assert res.method == "sgd" and res.n_iters == 200 and res.message == "reached n_iters=200"
    assert res.x.shape == res.x_avg.shape == (50, 3) and not res.converged and set(res.extras) == {"x_avg", "f_avg"}
    assert res.params["n_replicas"] == 50 and res.n_evals == {"stoch_grad": 200}
    assert res.f == pytest.approx(li.l1_norm_problem(3).F(res.x).mean())
    assert res.f_avg == pytest.approx(li.l1_norm_problem(3).F(res.x_avg).mean())
    for col in ("t", "n_evals", "lr", "f", "f_avg", "f_q50", "f_q90", "f_avg_q90", "sparsity", "sparsity_avg"):
        assert col in res.history.columns
    t = res.history["t"]
    assert t[0] == 0 and t[-1] == 200 and len(t) <= 11 and np.all(np.diff(t) > 0)
    assert res.history["f"][0] == pytest.approx(3.0)
    lr = res.history["lr"]
    assert np.isnan(lr[0]) and np.allclose(lr[1:], 1 / np.sqrt(200)), "lr: the step that reached the row"
    assert "sgd" in repr(res) and "0x" not in repr(res)


def test_the_running_average_is_the_mean_of_the_iterates():
    rng = np.random.default_rng(5)
    xs, x = [], np.ones(2)
    noise = rng.standard_normal((30, 2))
    for t in range(30):
        x = x - 0.1 * (np.sign(x) + noise[t])
        xs.append(x)
    it = iter(noise)
    res = li.sgd(lambda z, r: np.sign(z) + next(it), np.ones(2), lr=0.1, n_iters=30)
    np.testing.assert_allclose(res.x, xs[-1]) and np.testing.assert_allclose(res.x_avg, np.mean(xs, axis=0))


def test_single_replica_and_no_objective():
    res = run(x0=np.ones(3))
    assert res.x.shape == (3,) and np.isfinite(res.f)
    p = li.l1_norm_problem(3)
    res = li.sgd(p.stoch_grad, np.ones(3), lr=0.01, n_iters=20, rng=0)
    assert np.isnan(res.f) and "f" not in res.history.columns and "sparsity" in res.history.columns


def test_non_finite_iterates_stop_the_run():
    with np.errstate(over="ignore", invalid="ignore"):
        res = li.sgd(lambda x, rng: -1e300 * x, np.ones(2), lr=1e10, n_iters=50, f=lambda x: float(x @ x))
    assert "non-finite" in res.message and res.n_iters < 50 and np.isnan(res.f)


# --- the chapter's claim: other seeds and sizes, and wrong variants that must fail it ------------

def average_instead_of_last(*args, **kwargs):
    """A wrong sgd: returns (and logs) the running average as if it were the last iterate."""
    res = SGD(*args, **kwargs)
    h = res.history
    for col in list(h.columns):
        if col.startswith("f_avg") or col == "sparsity_avg":
            h._cols[col.replace("_avg", "", 1)] = h._cols[col]
    res.x, res.f = res.x_avg, res.f_avg
    return res


def half_threshold_composite(*args, **kwargs):
    """The composite problem with a prox that thresholds at lr * lam / 2 instead of lr * lam."""
    p = COMPOSITE(*args, **kwargs)
    p.prox = lambda v, lr: soft_threshold(v, lr * p.info["lam"] / 2)
    return p


def step_without_horizon(rule, **kwargs):
    """The step rules with eta in place of eta/sqrt(T): the horizon scaling is missing."""
    if rule == "horizon":
        return constant(kwargs.get("eta") or 1.0)
    return STEP(rule, **kwargs)


SGD, COMPOSITE, STEP = li.sgd, li.composite_problem, li.step_size
MODULE = "optlab.foundations.last_iterate"
WRONG_VARIANTS = {
    "the running average returned as the last iterate": {f"{MODULE}.sgd": average_instead_of_last},
    "a prox that thresholds at half the level": {f"{MODULE}.composite_problem": half_threshold_composite},
    "a step that ignores the horizon (eta instead of eta/sqrt(T))": {f"{MODULE}.step_size": step_without_horizon},
}


@pytest.mark.slow
def test_the_claim_holds_on_seeds_and_sizes_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS, sizes=FAST)
    assert verdict.passed and verdict.status == "holds"
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.slow
@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=CLAIM_SEEDS[:1], sizes=FAST, patches=WRONG_VARIANTS[variant])


def test_heavy_tails_blow_up_the_quantiles():
    from optlab.noise import gaussian, student_t

    rng = np.random.default_rng(7100)
    q95 = {}
    for name, noise in (("gauss", gaussian(1.0)), ("t1.5", student_t(1.5))):
        p = li.l1_norm_problem(5, noise=noise)
        q95[name] = li.horizon_sweep(p, [1000], lr=lambda T: li.step_size("horizon", n_iters=T), n_replicas=300,
                                     rng=rng)["f_q95"][0]
    assert q95["t1.5"] > 10 * q95["gauss"]
