"""Tests of optlab.bilevel.bo_rep, cheapest first; the chapter's claim on other seeds and wrong variants."""
import sys
from pathlib import Path

import numpy as np
import pytest

from optlab.bilevel import bo_rep as br
from optlab.bilevel import core as bc
from optlab.claims import ClaimFailed
from optlab.testing import check_bad_inputs, check_grad, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "bilevel" / "bo_rep.ipynb"
# Seeds and sizes of the claim re-runs here; the chapter uses seeds 1-3.
CLAIM_SEEDS = [8101, 8102, 8103]
FAST = {"N_ITERS": 1500}


# --- oracles and exact identities --------------------------------------------------------------

def _derivatives_match(p, x, y, v, n_dirs=None):
    for fn, gx, gy in ((p.F, p.grad_Fx, p.grad_Fy), (p.g, p.grad_gx, p.grad_gy)):
        assert check_grad(lambda x_, fn=fn: fn(x_, y), lambda x_, gx=gx: gx(x_, y), x, n_dirs=n_dirs) < 1e-6
        assert check_grad(lambda y_, fn=fn: fn(x, y_), lambda y_, gy=gy: gy(x, y_), y) < 1e-6
    assert check_grad(lambda y_: p.grad_gy(x, y_) @ v, lambda y_: p.hvp_yy(x, y_, v), y) < 1e-6
    assert check_grad(lambda x_: p.grad_gy(x_, y) @ v, lambda x_: p.jvp_xy(x_, y, v), x, n_dirs=n_dirs) < 1e-6


def test_quartic_problem_oracles_and_closed_forms():
    rng = np.random.default_rng(0)
    for cond in (1.0, 30.0):
        p = br.quartic_problem(cond=cond, rng=3)
        x, y, v = rng.standard_normal(5), rng.standard_normal(10), rng.standard_normal(10)
        _derivatives_match(p, x, y, v)
        assert check_grad(p.hyper, p.hypergrad, x) < 1e-6
        np.testing.assert_allclose(p.grad_gy(x, p.y_star(x)), 0, atol=1e-10)
        g, _ = bc.implicit_hypergrad(p, x, p.y_star(x))           # the core's CG hypergradient
        np.testing.assert_allclose(g, p.hypergrad(x), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(br.quartic_problem(cond=1.0, rng=0).info["A"], np.eye(10), atol=1e-12)


def test_quartic_upper_level_is_l0_l1_smooth_but_not_smooth():
    p, rng = br.quartic_problem(rng=0), np.random.default_rng(1)
    c = p.info["c"]
    for scale in (0.1, 1.0, 10.0, 100.0):
        y = c + scale * rng.standard_normal(10)
        hess = 3 * np.sum((y - c) ** 2)                            # the top eigenvalue of the Hessian of F
        assert hess <= 3 + 3 * np.linalg.norm(p.grad_Fy(None, y)) + 1e-9
    assert 3 * 100.0**2 * 10 > 1e4                                # and it is unbounded


def test_hyper_cleaning_oracles():
    p, rng = br.hyper_cleaning_problem(n_train=40, n_val=20, rng=2), np.random.default_rng(0)
    x, y, v = rng.standard_normal(40), 0.3 * rng.standard_normal(31), rng.standard_normal(31)
    _derivatives_match(p, x, y, v, n_dirs=6)
    assert p.info["corrupted"].sum() == 12 and len(p.info["b_test"]) == 569 - 60


def test_lower_level_of_hyper_cleaning_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    p = br.hyper_cleaning_problem(n_train=100, n_val=50, reg=0.05, rng=1)
    x = np.random.default_rng(3).standard_normal(100)
    y, _ = bc.lower_solve(lambda w: p.grad_gy(x, w), p.y0, lr=1 / p.L_gy, tol=1e-10)
    weights = 0.5 * (1 + np.tanh(0.5 * x))
    # newton-cg: scikit-learn 1.1's lbfgs stops at about 2e-5 from the optimum whatever its tol
    lr = LogisticRegression(C=1 / (100 * 0.05), fit_intercept=False, solver="newton-cg", tol=1e-12, max_iter=10_000)
    lr.fit(p.info["A"], p.info["b"], sample_weight=weights)
    np.testing.assert_allclose(y, lr.coef_[0], atol=1e-5)


def test_hypergrad_estimate_is_exact_at_the_fixed_point():
    p = br.quartic_problem(cond=5.0, rng=4)
    x = np.array([0.5, -1.0, 0.2, 0.0, 1.0])
    y = p.y_star(x)
    z = np.linalg.solve(p.info["A"], p.grad_Fy(x, y))
    d, z_new = br.hypergrad_estimate(p, x, y, z, nu=0.1)
    np.testing.assert_allclose(z_new, z, atol=1e-12)
    np.testing.assert_allclose(d, p.hypergrad(x), rtol=1e-10)
    # off the fixed point, one step contracts the error in z by (I - nu A)
    d2, z2 = br.hypergrad_estimate(p, x, y, np.zeros(10), nu=0.1)
    np.testing.assert_allclose(z2 - z, (np.eye(10) - 0.1 * p.info["A"]) @ (-z), atol=1e-12)


def test_lower_sgd_converges_and_normalized_step_has_length_lr():
    p = br.quartic_problem(cond=10.0, rng=0)
    x = np.ones(5)
    y = br.lower_sgd(p, x, p.y0, lr=0.1, n_steps=400)
    np.testing.assert_allclose(y, p.y_star(x), atol=1e-8)
    x1 = br.normalized_step(x, np.array([3.0, 4.0, 0, 0, 0]), 0.2)
    assert np.linalg.norm(x1 - x) == pytest.approx(0.2)
    assert np.array_equal(br.normalized_step(x, np.zeros(5), 0.2), x)


# --- the methods -----------------------------------------------------------------------------

def test_bo_rep_takes_steps_of_length_lr_and_counts_its_oracles():
    p = br.quartic_problem(rng=0)
    xs = []
    res = br.bo_rep(p, p.x0, lr=0.1, n_iters=7, inner_lr=0.5, period=3, n_inner=4, n_refine=50,
                    noise=0.1, rng=0, callback=lambda rec: xs.append(rec) and False)
    assert res.n_evals == {"grad_gy": 50 + 3 * 4, "hvp_yy": 7, "grad_Fy": 7, "grad_Fx": 7, "jvp_xy": 7}
    assert len(xs) == 8 and res.n_iters == 7
    one = br.bo_rep(p, p.x0, lr=0.1, n_iters=1, inner_lr=0.5, rng=0)
    assert np.linalg.norm(one.x - p.x0) == pytest.approx(0.1)


def test_periodic_updates_freeze_the_lower_variable_between_updates():
    p = br.quartic_problem(cond=50.0, rng=1)
    res = br.bo_rep(p, p.x0, lr=0.05, n_iters=6, inner_lr=0.02, period=3, n_inner=5, n_refine=0, rng=0)
    assert res.history["y_error"][0] == pytest.approx(np.linalg.norm(p.y_star(p.x0)))
    n = res.history["n_evals"]
    assert list(np.diff(n)) == [9, 4, 4, 9, 4, 4]                    # 5 lower steps at t = 0 and 3


def test_deterministic_bo_rep_reaches_a_stationary_point():
    p = br.quartic_problem(rng=2)
    res = br.bo_rep(p, p.x0, lr=lambda t: 0.2 / np.sqrt(t + 1), n_iters=3000, inner_lr=0.5, rng=0)
    assert res.history["hypergrad_norm"][-1] < 1e-3 * res.history["hypergrad_norm"][0]
    assert res.converged is False and res.message == "reached n_iters=3000"


def test_plain_hypergradient_descent_converges_at_a_small_step_and_diverges_at_a_large_one():
    p = br.quartic_problem(rng=0)
    small = br.hypergrad_sgd(p, np.full(5, 1.0), lr=0.02, n_iters=2000, inner_lr=0.5, n_inner=5)
    h = small.history["hypergrad_norm"]
    assert small.n_iters == 2000 and h[-1] < 0.01 * h[0]
    big = br.hypergrad_sgd(p, p.x0, lr=0.1, n_iters=2000, inner_lr=0.5, nu=0.3, noise=0.1, rng=1)
    assert "max_norm" in big.message and big.n_iters < 100 and np.isnan(big.f)


START = br.quartic_problem(rng=0).x0


def run(rng=0, x0=START, callback=None):
    return br.bo_rep(br.quartic_problem(rng=0), x0, lr=0.1, n_iters=5, inner_lr=0.5, noise=0.1,
                     rng=rng, callback=callback)


def run_sgd(rng=0, x0=START, callback=None):
    return br.hypergrad_sgd(br.quartic_problem(rng=0), x0, lr=0.01, n_iters=5, inner_lr=0.5,
                            noise=0.1, rng=rng, callback=callback)


def test_core_contract():
    res = check_method_contract(run)
    assert set(res.extras) == {"y", "z", "m"} and res.method == "bo_rep"
    for col in ("f", "estimate_norm", "hypergrad_norm", "y_error"):
        assert col in res.history.columns
    assert check_method_contract(run_sgd).method == "hypergrad_sgd"


def test_non_finite_iterates_stop_the_run():
    p = br.quartic_problem(rng=0)
    with np.errstate(all="ignore"):
        res = br.bo_rep(p, p.x0, lr=1e300, n_iters=5, inner_lr=0.5, rng=0)
    assert ("non-finite" in res.message or "max_norm" in res.message) and np.isnan(res.f)


P = br.quartic_problem(rng=0)
X, Y, Z = np.ones(5), np.zeros(10), np.zeros(10)
BAD_INPUT = {
    "lower_sgd": (lambda **kw: br.lower_sgd(P, **kw), dict(x=X, y=Y, lr=0.1, n_steps=2),
                  {"x": [[np.nan] * 5, np.ones((1, 5))], "lr": [0.0, -1.0], "n_steps": [-1], "noise": [-0.1]},
                  ()),
    "hypergrad_estimate": (lambda **kw: br.hypergrad_estimate(P, **kw), dict(x=X, y=Y, z=Z, nu=0.1),
                           {"z": [np.zeros(3), [np.nan] * 10], "nu": [0.0], "noise": [-1.0]}, ()),
    "normalized_step": (lambda **kw: br.normalized_step(**kw), dict(x=X, m=X, lr=0.1), {"lr": [-0.1]},
                        ("x", "m")),
    "bo_rep": (lambda **kw: br.bo_rep(P, **kw), dict(x0=X, lr=0.1, n_iters=2, inner_lr=0.5),
               {"x0": [[np.nan] * 5, np.ones((2, 5))], "lr": [-0.1], "n_iters": [0], "inner_lr": [0.0],
                "beta": [1.0, -0.1], "nu": [0.0], "period": [0], "n_inner": [-1], "n_refine": [-1],
                "noise": [-1.0], "max_norm": [0.0], "rng": [-1], "callback": [3]}, ()),
    "hypergrad_sgd": (lambda **kw: br.hypergrad_sgd(P, **kw), dict(x0=X, lr=0.1, n_iters=2, inner_lr=0.5),
                      {"x0": [[np.inf] * 5], "lr": [-0.1], "n_iters": [0], "inner_lr": [-1.0], "nu": [0.0],
                       "n_inner": [-1], "noise": [-1.0], "max_norm": [-1.0], "rng": [-1]}, ()),
    "quartic_problem": (br.quartic_problem, dict(dim_x=2, dim_y=3),
                        {"dim_x": [0], "dim_y": [0], "cond": [0.5], "start": [np.nan], "c_scale": [-1.0]}, ()),
    "hyper_cleaning_problem": (br.hyper_cleaning_problem, dict(n_train=50, n_val=20),
                               {"n_train": [5, 10_000], "n_val": [5, 10_000], "flip": [1.5], "reg": [0.0]}, ()),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


# --- the chapter's claim: other seeds and sizes, and wrong variants that must fail it ------------

HYPERGRAD_ESTIMATE = br.hypergrad_estimate


def unnormalized_step(x, m, lr):
    """Momentum without normalization: x - lr m."""
    return x - lr * m


def without_second_order_term(problem, x, y, z, *, nu, noise=0.0, gen=None):
    """The estimate grad_x F alone, without the implicit term -grad_xy g z."""
    d, z = HYPERGRAD_ESTIMATE(problem, x, y, z, nu=nu, noise=noise, gen=gen)
    return problem.grad_Fx(x, y), z


def wrong_sign_in_z(problem, x, y, z, *, nu, noise=0.0, gen=None):
    """z <- z - nu (H z + grad_y F): the linear term of the quadratic with the wrong sign."""
    flipped = {"grad_Fy": lambda x_, y_: -problem.grad_Fy(x_, y_)}
    d, z = HYPERGRAD_ESTIMATE(bc.BilevelProblem(**{**vars(problem), **flipped}), x, y, z,
                              nu=nu, noise=noise, gen=gen)
    return d, z


MODULE = "optlab.bilevel.bo_rep"
WRONG_VARIANTS = {
    "momentum without normalization": {f"{MODULE}.normalized_step": unnormalized_step},
    "the hypergradient estimate without its second-order term":
        {f"{MODULE}.hypergrad_estimate": without_second_order_term},
    "the z update with the wrong sign of grad_y F": {f"{MODULE}.hypergrad_estimate": wrong_sign_in_z},
}


@pytest.mark.slow
def test_the_claim_holds_on_seeds_and_sizes_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS, sizes=FAST)
    assert verdict.passed and verdict.status == "holds in part"
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=CLAIM_SEEDS[:1], sizes=FAST, patches=WRONG_VARIANTS[variant])
