"""Tests of optlab.constrained.augmented_lagrangian, cheapest first; the claim on other seeds and wrong variants."""
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import NonlinearConstraint, minimize

from optlab.claims import ClaimFailed
from optlab.constrained import augmented_lagrangian as al
from optlab.testing import check_bad_inputs, check_grad, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "constrained" / "augmented_lagrangian.ipynb"
CLAIM_SEEDS = [7001, 7002, 7003]  # the chapter uses seeds 0, 1, 2


def solve(p, **kw):
    i = p.info
    return al.sketched_newton(p.f, p.grad, i["c"], i["jac"], i["hess_lag"], p.x0, lam0=i["lam0"], **kw)


def fd_jac(fn, x, eps=1e-6):
    return np.stack([(fn(x + eps * e) - fn(x - eps * e)) / (2 * eps) for e in np.eye(len(x))], axis=-1)


PROBLEMS = [al.logistic_problem(3), al.hs_problem("hs6"), al.hs_problem("hs7"), al.hs_problem("hs28")]


# --- oracles -----------------------------------------------------------------------------------

@pytest.mark.parametrize("p", PROBLEMS, ids=lambda p: p.name)
def test_oracles_match_finite_differences(p):
    rng = np.random.default_rng(0)
    x = p.x0 + 0.1 * rng.standard_normal(p.dim)
    lam = rng.standard_normal(len(p.info["c"](x)))
    assert check_grad(p.f, p.grad, x) < 1e-6
    np.testing.assert_allclose(p.info["jac"](x), fd_jac(p.info["c"], x), atol=1e-6)

    def grad_L(z):
        return p.grad(z) + p.info["jac"](z).T @ lam

    np.testing.assert_allclose(p.info["hess_lag"](x, lam), fd_jac(grad_L, x), atol=1e-6)


def test_merit_gradient_matches_finite_differences():
    p = al.logistic_problem(1)
    c, jac, hess = p.info["c"], p.info["jac"], p.info["hess_lag"]
    n, eta1, eta2 = p.dim, 2.0, 0.3

    def parts(w):
        x, lam = w[:n], w[n:]
        return x, lam, p.grad(x) + jac(x).T @ lam

    def merit(w):
        x, lam, g_L = parts(w)
        return al.merit(p.f(x), c(x), g_L, lam, eta1, eta2)

    def merit_grad(w):
        x, lam, g_L = parts(w)
        return al.merit_grad(c(x), jac(x), hess(x, lam), g_L, eta1, eta2)

    w = np.concatenate([p.x0 / np.sqrt(n), 0.5 * np.ones(11)])
    assert check_grad(merit, merit_grad, w) < 1e-6


# --- exact identities and the inner solver -----------------------------------------------------

def test_block_kaczmarz_solves_a_linear_system():
    rng = np.random.default_rng(1)
    K = rng.standard_normal((20, 20)) + 6 * np.eye(20)
    b = rng.standard_normal(20)
    z, r, rows = al.block_kaczmarz(K, b, np.zeros(20), tol=1e-10, block=5, rng=2)
    np.testing.assert_allclose(z, np.linalg.solve(K, b), atol=1e-8)
    np.testing.assert_allclose(r, b - K @ z, atol=1e-12)
    assert np.linalg.norm(r) <= 1e-10 and rows % 5 == 0
    z1, r1, rows1 = al.block_kaczmarz(K, b, np.zeros(20), tol=1e-10, block=20, rng=2)
    assert rows1 == 20 and np.linalg.norm(r1) < 1e-10, "one block of all rows is a direct solve"
    _, _, capped = al.block_kaczmarz(K, b, np.zeros(20), tol=0.0, block=5, max_rows=50, rng=2)
    assert capped == 50


def test_merit_and_tests_by_hand():
    assert al.merit(1.0, np.array([2.0]), np.array([1.0, 0.0]), np.array([0.5]), 1.0, 0.1) == pytest.approx(4.05)
    assert al.forcing(0.3, True) == 0.3 and al.forcing(3.0, True) == 1.0 and al.forcing(0.3, False) == 1.0
    assert al.descends(-0.06, 1.0, 0.1) and not al.descends(-0.04, 1.0, 0.1)


def test_exact_solve_takes_the_newton_step_on_a_quadratic():
    """hs28 is a convex quadratic with a linear constraint: one Newton step solves it exactly."""
    res = solve(al.hs_problem("hs28"), solver="exact")
    assert res.n_iters == 1 and res.converged and res.history["alpha"][0] == 1.0
    np.testing.assert_allclose(res.x["x"], [0.5, -0.5, 0.5], atol=1e-12)


def test_logistic_problem_feasible_rhs():
    p = al.logistic_problem(4)
    A = p.info["A"]
    assert A.shape == (10, 30) and p.info["offset"] < 1.0, "b = A u with ||u|| = 1 is consistent with the sphere"
    g = al.logistic_problem(11, rhs="gaussian")
    assert g.info["offset"] > 1.0, "this Gaussian draw has an empty feasible set"
    assert p.f(np.zeros(30)) == pytest.approx(np.log(2.0))


# --- comparisons with scipy and known solutions ------------------------------------------------

@pytest.mark.parametrize("name", ["hs6", "hs7", "hs28"])
def test_hock_schittkowski_optimal_values(name):
    p = al.hs_problem(name)
    for solver in ("exact", "sketch"):
        res = solve(p, solver=solver, rng=0)
        assert res.converged and res.kkt <= 1e-10 and abs(res.f - p.f_star) < 1e-8, (solver, res.message)


def test_matches_scipy_trust_constr_on_logistic_regression():
    p = al.logistic_problem(5)
    con = NonlinearConstraint(p.info["c"], 0.0, 0.0, jac=p.info["jac"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = minimize(p.f, p.x0, jac=p.grad, method="trust-constr", constraints=[con],
                       options={"gtol": 1e-10, "xtol": 1e-12, "maxiter": 500})
    res = solve(p, rng=5, tol=1e-8)
    assert res.converged and res.n_iters <= 30
    assert abs(res.f - ref.fun) < 1e-8 and np.linalg.norm(res.x["x"] - ref.x) < 1e-5


def test_superlinear_with_sharpening_linear_without():
    p = al.logistic_problem(6)
    kkt = {}
    for sharpen in (True, False):
        res = solve(p, rng=6, tol=1e-8, sharpen=sharpen)
        k = np.append(res.history["kkt"], res.kkt)
        kkt[sharpen] = k[1:] / k[:-1]
    assert kkt[True][-1] < 1e-3 and np.all(np.diff(kkt[True][-3:]) < 0)
    assert np.all(kkt[False][-3:] > 0.05), "a fixed accuracy delta = 0.1 gives ratios near delta"


def test_penalties_change_where_the_merit_rises_on_the_gaussian_draw():
    res = solve(al.logistic_problem(0, rhs="gaussian"), solver="exact", tol=1e-8)
    h = res.history
    assert res.converged and np.all(h["armijo"] == 1) and 1 <= h["changed"].sum() <= 10
    rises = np.flatnonzero(np.diff(h["merit"]) > 0) + 1
    assert set(rises) <= set(np.flatnonzero(h["changed"])), "the merit rises only where the penalties change"
    assert np.all(h["merit_new"] <= h["merit"] + 1e-12)


def test_infeasible_draw_hits_the_safeguard():
    res = solve(al.logistic_problem(11, rhs="gaussian"), solver="exact", n_iters=100)
    assert not res.converged and res.eta1 > 1e8 and res.kkt > 1e-2


# --- the API contract and bad input ------------------------------------------------------------

HS7 = al.hs_problem("hs7")


def run(rng=0, callback=None, x0=HS7.x0):
    i = HS7.info
    return al.sketched_newton(HS7.f, HS7.grad, i["c"], i["jac"], i["hess_lag"], x0, rng=rng, callback=callback)


def test_core_contract():
    res = check_method_contract(run)
    assert res.converged and set(res.x) == {"x", "lam"} and set(res.extras) == {"kkt", "eta1", "eta2"}
    assert res.n_evals["hess_lag"] == res.n_iters and res.n_evals["f"] >= res.n_iters + 1
    for col in ("kkt", "merit", "merit_new", "slope", "alpha", "armijo", "changed", "rows", "shift"):
        assert col in res.history.columns
    assert "KKT residual" in res.message


def test_non_finite_iterates_stop_the_run():
    p = al.hs_problem("hs28")
    i = p.info
    with np.errstate(all="ignore"):
        res = al.sketched_newton(lambda x: float("nan"), lambda x: np.full(3, np.nan), i["c"], i["jac"],
                                 i["hess_lag"], p.x0, solver="exact", n_iters=5)
    assert not res.converged and "non-finite" in res.message


P28 = al.hs_problem("hs28")
GOOD = dict(f=P28.f, grad=P28.grad, c=P28.info["c"], jac=P28.info["jac"], hess_lag=P28.info["hess_lag"],
            x0=P28.x0, rng=0)
BAD_INPUT = {
    "sketched_newton": (al.sketched_newton, GOOD,
                        {"x0": [[1.0, np.nan, 0.0], np.ones((2, 3))], "lam0": [[0.0, 0.0]],
                         "eta1": [0.0, -1.0], "eta2": [0.0], "delta": [0.0, 1.0], "xi_B": [-0.1],
                         "beta": [0.0, 0.5], "nu": [1.0], "solver": ["gmres"], "block": [0, 2.5],
                         "sharpen": [1], "tol": [0.0], "eta1_max": [-1.0], "max_rows": [0], "n_iters": [0],
                         "f": [None], "grad": [(lambda x: np.ones(2), "grad returned shape")],
                         "jac": [(lambda x: np.ones((2, 3)), "jac returned shape")],
                         "hess_lag": [(lambda x, lam: np.eye(2), "hess_lag returned shape")],
                         "rng": ["seed"], "callback": [3]}, ("f", "grad", "c", "jac", "hess_lag")),
    "block_kaczmarz": (al.block_kaczmarz, dict(K=np.eye(3), b=np.ones(3), z=np.zeros(3), tol=1e-8),
                       {"K": [np.ones((2, 3)), np.ones(3)], "b": [np.ones(2)], "z": [np.zeros(4)],
                        "tol": [-1.0], "block": [0], "max_rows": [0]}, ()),
    "logistic_problem": (al.logistic_problem, dict(seed=0), {"seed": [-1, 1.5], "n_eq": [-1, 29],
                                                             "rhs": ["uniform"]}, ()),
    "hs_problem": (al.hs_problem, dict(name="hs6"), {"name": ["hs71", 6]}, ()),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


# --- the chapter's claim: other seeds, and wrong variants that must fail it ---------------------

MODULE = "optlab.constrained.augmented_lagrangian"
WRONG_VARIANTS = {
    "a fixed sketch accuracy (theta_k = 1, no sharpening)": {f"{MODULE}.forcing": lambda kkt, sharpen: 1.0},
    "no descent test (the penalties never adapt)": {f"{MODULE}.descends": lambda slope, kkt, eta2: True},
}


@pytest.mark.slow
def test_the_claim_holds_on_seeds_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS)
    assert verdict.passed
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.slow
@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=CLAIM_SEEDS[:1], patches=WRONG_VARIANTS[variant])
