"""Tests of optlab.bilevel.lv_hba, cheapest first; the chapter's claim on other seeds and wrong variants."""
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import lsq_linear, minimize

from optlab.bilevel import lv_hba as lv
from optlab.claims import ClaimFailed
from optlab.testing import check_bad_inputs, check_grad, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "bilevel" / "lv_hba.ipynb"
# Seeds and sizes of the claim re-runs here; the chapter uses seeds 1-3 and N = 10.
CLAIM_SEEDS = [8101, 8102, 8103]
FAST = {"N_STARTS": 2}
PROBLEMS = [lv.toy_problem(4), lv.box_regression_problem(n_train=30, rng=1)]


# --- oracles and exact identities -------------------------------------------------------------

@pytest.mark.parametrize("p", PROBLEMS, ids=lambda p: p.name)
def test_oracles_match_finite_differences(p):
    rng = np.random.default_rng(0)
    x, y = np.abs(rng.standard_normal(p.x0.shape)), rng.standard_normal(p.y0.shape)
    lam = rng.uniform(0, 1, p.n_constraints)
    for fn, gx, gy in ((p.F, p.grad_Fx, p.grad_Fy), (p.g, p.grad_gx, p.grad_gy),
                       (lambda a, b: lam @ p.h(a, b), lambda a, b: p.jvp_hx(a, b, lam),
                        lambda a, b: p.jvp_hy(a, b, lam))):
        assert check_grad(lambda x_, fn=fn: fn(x_, y), lambda x_, gx=gx: gx(x_, y), x) < 1e-6
        assert check_grad(lambda y_, fn=fn: fn(x, y_), lambda y_, gy=gy: gy(x, y_), y) < 1e-6
    # the constants the step sizes read are upper bounds
    J = np.stack([p.jvp_hy(x, y, e) for e in np.eye(p.n_constraints)])
    assert np.linalg.norm(J, 2) ** 2 <= p.L_hy * (1 + 1e-9)


@pytest.mark.parametrize("p", PROBLEMS, ids=lambda p: p.name)
def test_project_xy_is_the_euclidean_projection(p):
    rng = np.random.default_rng(1)
    X, Y = 2 * rng.standard_normal((50,) + p.x0.shape), 2 * rng.standard_normal((50,) + p.y0.shape)
    Xp, Yp = p.project_xy(X, Y)
    assert np.max(p.h(Xp, Yp)) <= 1e-12
    # idempotent, and the residual is in the normal cone: <w - Pw, c - Pw> <= 0 for feasible c
    Xq, Yq = p.project_xy(Xp, Yp)
    np.testing.assert_allclose(np.c_[Xq, Yq], np.c_[Xp, Yp], atol=1e-12)
    R = np.c_[X - Xp, Y - Yp]
    C = np.c_[Xp[::-1], Yp[::-1]]  # other feasible points
    assert np.max(np.sum(R * (C - np.c_[Xp, Yp]), axis=1)) <= 1e-9


def test_toy_solution_satisfies_kkt_and_is_optimal():
    p = lv.toy_problem(5)
    x, y, lam = p.x_star, p.y_star_point, p.lam_star
    # lower-level KKT at (x*, y*): grad_y g + lam grad_y h = 0, h = 0 (active), lam >= 0
    np.testing.assert_allclose(p.grad_gy(x, y) + p.jvp_hy(x, y, lam), 0, atol=1e-12)
    assert p.h(x, y)[0] == pytest.approx(0.0, abs=1e-12)
    # the reduced upper problem over (x, y2) with 1'y2 = -2 1'x - n, solved by scipy
    n = 5

    def reduced(v):
        xx, y2 = v[:n], v[n:]
        return 0.5 * np.sum((xx - y2) ** 2) + 0.5 * np.sum(xx ** 2)

    cons = {"type": "eq", "fun": lambda v: np.sum(v[n:]) + 2 * np.sum(v[:n]) + n}
    sol = minimize(reduced, np.zeros(2 * n), constraints=[cons], method="SLSQP", tol=1e-12)
    np.testing.assert_allclose(sol.x[:n], x, atol=1e-6)
    np.testing.assert_allclose(sol.x[n:], y[n:], atol=1e-6)


def test_value_function_against_scipy_and_its_bounds():
    p = lv.toy_problem(3)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(3), rng.standard_normal(6)
    x, y = p.project_xy(x, y)
    z = np.array([0.7])
    out = lv.prox_lagrangian_value(p, x, y, z, gamma1=2.0, gamma2=3.0, tol=1e-12)

    def phi(th):  # the max over lambda >= 0 in closed form
        hh = float(p.h(x, th)[0])
        lam = max(0.0, z[0] + 3.0 * hh)
        return float(p.g(x, th)) + lam * hh + np.sum((th - y) ** 2) / 4.0 - (lam - z[0]) ** 2 / 6.0

    ref = minimize(phi, y, method="BFGS", options={"gtol": 1e-10})
    assert float(out["value"]) == pytest.approx(ref.fun, abs=1e-7)
    assert float(p.g(x, y) - out["value"]) >= -1e-12, "v_gamma <= g on the feasible set"
    # Danskin: the y- and z-gradients of v are (y - theta)/gamma1 and (lam - z)/gamma2
    for name, arg, grad in (("y", y, (y - out["theta"]) / 2.0), ("z", z, (out["lam"] - z) / 3.0)):
        def val(a, name=name):
            kw = {"y": y, "z": z, name: a}
            return float(lv.prox_lagrangian_value(p, x, kw["y"], kw["z"], gamma1=2.0, gamma2=3.0,
                                                  tol=1e-12)["value"])
        assert check_grad(val, lambda a, grad=grad: grad, arg) < 1e-5


def test_inner_steps_converge_to_the_saddle_point():
    p = lv.toy_problem(4)
    x, y = p.project_xy(np.zeros(4), np.ones(8))
    z = np.array([1.0])
    ref = lv.prox_lagrangian_value(p, x, y, z, gamma1=10.0, gamma2=10.0, tol=1e-12)
    theta, lam = y.copy(), np.ones(1)
    for _ in range(20000):
        theta, lam = lv.inner_step(p, x, y, z, theta, lam, eta=0.01, gamma1=10.0, gamma2=10.0, r=1e3)
    np.testing.assert_allclose(theta, ref["theta"], atol=1e-6)
    np.testing.assert_allclose(lam, ref["lam"], atol=1e-6)


# --- the method -------------------------------------------------------------------------------

def test_lv_hba_on_the_toy_from_random_starts():
    p = lv.toy_problem(10)
    rng = np.random.default_rng(5)
    res = lv.lv_hba(p, rng.standard_normal((3, 10)), rng.standard_normal((3, 20)), alpha=0.008, beta=0.02,
                    eta=0.01, n_iters=20000, n_log=5)
    err = np.linalg.norm(res.x - p.x_star, axis=1) / np.linalg.norm(p.x_star)
    assert np.all(err < 0.03) and np.max(p.h(res.x, res.y)) <= 1e-12
    np.testing.assert_allclose(res.lam, 1.0, atol=0.02), "the multiplier of -(1'x + 1'y) <= 0 is +1"
    assert res.n_evals["grad_gy"] == 40000 and "hvp_yy" not in res.n_evals


def test_per_row_schedules_equal_separate_runs():
    p = lv.toy_problem(3)
    x0, y0 = np.ones((2, 3)), np.zeros((2, 6))
    both = lv.lv_hba(p, x0, y0, alpha=0.008, beta=0.02, eta=0.01, c_lower=[1.0, 0.5], power=[0.3, 0.1],
                     n_iters=200)
    for k, (c, pw) in enumerate(((1.0, 0.3), (0.5, 0.1))):
        one = lv.lv_hba(p, x0[k], y0[k], alpha=0.008, beta=0.02, eta=0.01, c_lower=c, power=pw, n_iters=200)
        np.testing.assert_allclose(both.x[k], one.x, atol=1e-12)


def test_box_regression_learns_radii_better_than_the_start_against_lsq_linear():
    p = lv.box_regression_problem(n_train=40, rng=0)
    res = lv.lv_hba(p, p.x0, p.y0, alpha=0.02, beta=0.1, eta=0.05, gamma1=1.0, gamma2=1.0, c_lower=0.1,
                    n_iters=5000)
    assert np.all(np.abs(res.y) <= res.x + 1e-12)
    assert p.info["psi"](res.x) < p.info["psi"](p.x0) - 0.01
    # psi uses scipy's bounded least squares: at radius 0 it is the zero model
    assert p.info["psi"](np.zeros(10)) == pytest.approx(float(p.F(p.x0, np.zeros(10))))
    A, b = p.info["A"], p.info["b"]
    big = lsq_linear(A, b, bounds=(-1e6, 1e6)).x
    np.testing.assert_allclose(big, np.linalg.lstsq(A, b, rcond=None)[0], atol=1e-6)


START = np.array([0.5, -0.5, 0.2])


def run(rng=0, x0=START, callback=None):
    return lv.lv_hba(lv.toy_problem(3), x0, np.zeros(6), alpha=0.008, beta=0.02, eta=0.01, n_iters=20,
                     rng=rng, callback=callback)


def test_core_contract():
    res = check_method_contract(run, stochastic=False)
    assert set(res.extras) == {"y", "z", "theta", "lam"} and res.method == "lv_hba"
    for col in ("f", "x_err", "violation", "c"):
        assert col in res.history.columns


def test_non_finite_iterates_stop_the_run():
    with np.errstate(over="ignore", invalid="ignore"):
        res = lv.lv_hba(lv.toy_problem(3), START, np.zeros(6), alpha=1e200, beta=0.02, eta=0.01, n_iters=50)
    assert "non-finite" in res.message and np.isnan(res.f)


TOY = lv.toy_problem(3)
BAD_INPUT = {
    "lv_hba": (lambda **kw: lv.lv_hba(TOY, **kw),
               dict(x0=START, y0=np.zeros(6), alpha=0.01, beta=0.01, eta=0.01, n_iters=2),
               {"x0": [[np.nan, 0.0, 0.0], np.ones((1, 1, 3))], "y0": [np.zeros((2, 6))],
                "alpha": [0.0, -1.0], "beta": [0.0], "eta": [-0.1], "gamma1": [0.0], "gamma2": [-1.0],
                "c_lower": [0.0, [1.0, 2.0]], "power": [0.5, -0.1], "r": [0.0], "z0": [np.ones(2)],
                "lam0": [[np.nan]], "n_iters": [0], "n_log": [1], "rng": [-1], "callback": [3]}, ()),
    "prox_lagrangian_value": (lambda **kw: lv.prox_lagrangian_value(TOY, **kw),
                              dict(x=START, y=np.zeros(6), z=np.ones(1), gamma1=1.0, gamma2=1.0),
                              {"x": [[np.nan, 0.0, 0.0]], "gamma1": [0.0], "gamma2": [-1.0], "r": [0.0],
                               "tol": [0.0]}, ("y", "z")),
    "toy_problem": (lv.toy_problem, dict(n=3), {"n": [0, 2.5]}, ()),
    "box_regression_problem": (lv.box_regression_problem, dict(n_train=30), {"n_train": [5, 10_000]}, ()),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


# --- the chapter's claim: other seeds and sizes, and wrong variants that must fail it ------------

OUTER = lv.outer_directions


def without_multiplier_term(p, x, y, z, theta, lam, c, *, gamma1, gamma2):
    """d_x without -grad_x h(x, theta)' lam: the x-dependence of the coupled constraint ignored."""
    d_x = p.grad_Fx(x, y) / c + p.grad_gx(x, y) - p.grad_gx(x, theta)
    d_y = p.grad_Fy(x, y) / c + p.grad_gy(x, y) - (y - theta) / gamma1
    return d_x, d_y, -(lam - z) / gamma2


def z_ascent(p, x, y, z, theta, lam, c, *, gamma1, gamma2):
    """The z-step with the sign of the inner multiplier's ascent step."""
    d_x, d_y, d_z = OUTER(p, x, y, z, theta, lam, c, gamma1=gamma1, gamma2=gamma2)
    return d_x, d_y, -d_z


def constant_penalty(c_lower, power, k):
    """A constant penalty c_k = c_lower (power 0), not an increasing one."""
    return c_lower + 0.0 * k


MODULE = "optlab.bilevel.lv_hba"
WRONG_VARIANTS = {
    "the x-direction without the multiplier term of the coupled constraint":
        {f"{MODULE}.outer_directions": without_multiplier_term},
    "a constant penalty c_k = c (p = 0)": {f"{MODULE}.penalty_weight": constant_penalty},
    "the z-step in the ascent direction": {f"{MODULE}.outer_directions": z_ascent},
}


@pytest.mark.slow
def test_the_claim_holds_on_seeds_and_sizes_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS, sizes={"N_STARTS": 4, "N": 12})
    assert verdict.passed
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=CLAIM_SEEDS[:1], sizes=FAST, patches=WRONG_VARIANTS[variant])
