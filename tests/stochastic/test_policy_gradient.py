"""Tests of optlab.stochastic.policy_gradient and its test problem optlab.stochastic.lqr, cheapest first; the
chapter's claim on other seeds and wrong variants."""
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import solve_discrete_lyapunov

from optlab.claims import ClaimFailed
from optlab.stochastic import lqr
from optlab.stochastic import policy_gradient as pg
from optlab.testing import check_bad_inputs, check_grad, check_hvp, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "stochastic" / "policy_gradient.ipynb"
# Seeds and sizes of the claim re-runs here; the chapter uses seeds 1-5, 40 replicas and 1000 trajectories.
CLAIM_SEEDS = [7001, 7002, 7003]
OTHER_SIZES = {"N_REPLICAS": 60, "BUDGET": 1500, "N_DRAWS": 30000}
FAST = {"N_REPLICAS": 40, "BUDGET": 1000, "N_DRAWS": 20000}

P = lqr.lqr_problem()
ENV = P.info["env"]
POINTS = np.array([[0.0, 0.0], [-0.3, -0.4], [0.2, -0.9]])


def fd_hvp(x, v, eps=1e-5):
    return (P.grad(x + eps * v) - P.grad(x - eps * v)) / (2 * eps)


def mc_mean(fn, n=200_000, chunks=4, seed=0):
    """Mean and standard error of an (R, d)-valued estimator over n draws."""
    rng = np.random.default_rng(seed)
    draws = np.concatenate([fn(n // chunks, rng) for _ in range(chunks)])
    return draws.mean(axis=0), draws.std(axis=0, ddof=1) / np.sqrt(len(draws))


# --- the exact objective ------------------------------------------------------------------------

def test_exact_gradient_matches_finite_differences():
    for x in POINTS:
        assert check_grad(P.f, P.grad, x) < 1e-7
    hard = lqr.lqr_problem(A=[[0.9, 0.3, 0.0], [0.0, 0.9, 0.2], [0.1, 0.0, 0.8]],
                           B=[[1.0, 0.0], [0.0, 0.5], [0.3, 1.0]], gamma=0.95, horizon=7, sigma=0.4)
    rng = np.random.default_rng(1)
    for _ in range(3):
        assert check_grad(hard.f, hard.grad, 0.3 * rng.standard_normal(hard.dim)) < 1e-7


def test_cost_is_the_sum_of_discounted_mean_costs_and_is_row_wise():
    K, _, M, _ = ENV.gains(POINTS)
    mean_cost = np.einsum("rij,rtji->rt", M, ENV.covariances(POINTS)) + ENV.sigma ** 2 * np.trace(ENV.R)
    np.testing.assert_allclose(P.f(POINTS), mean_cost @ ENV.discount, rtol=1e-12)
    np.testing.assert_allclose(P.f(POINTS), [P.f(x) for x in POINTS], rtol=1e-12)
    np.testing.assert_allclose(P.grad(POINTS), [P.grad(x) for x in POINTS], rtol=1e-12)


def test_monte_carlo_cost_matches_the_closed_form():
    x = POINTS[1]
    rng = np.random.default_rng(2)
    _, cost, _ = ENV.sample(np.tile(x, (200_000, 1)), rng)
    disc = cost @ ENV.discount
    assert abs(disc.mean() - P.f(x)) < 4 * disc.std() / np.sqrt(len(disc))


def test_the_long_horizon_cost_is_the_lyapunov_solution_and_its_minimizer_the_riccati_gain():
    """Trusted library: scipy's discrete Lyapunov and Riccati solvers give the infinite-horizon answers."""
    long = lqr.lqr_problem(horizon=300)
    env, x = long.info["env"], POINTS[1]
    K = x.reshape(1, 2)
    AK, M = env.A + env.B @ K, env.Q + K.T @ env.R @ K
    Pinf = solve_discrete_lyapunov(np.sqrt(env.gamma) * AK.T, M)      # P = M + gamma AK' P AK
    g = env.gamma
    c_inf = (np.trace(Pinf @ env.S0) + g / (1 - g) * np.trace(Pinf @ env.W_eff)
             + env.sigma ** 2 * np.trace(env.R) / (1 - g))
    assert long.f(x) == pytest.approx(c_inf, rel=1e-10)
    np.testing.assert_allclose(long.x_star, long.info["K_inf"], atol=1e-6)
    assert np.linalg.norm(P.grad(P.x_star)) < 1e-8 and P.f_star < P.f(P.x_star + 1e-3)


def test_value_function_is_the_conditional_cost_to_go():
    Pj, kappa = ENV.value(POINTS[:1])
    assert ENV.cost(POINTS[:1])[0] == pytest.approx(np.trace(Pj[0, 0] @ ENV.S0) + kappa[0, 0])
    rng = np.random.default_rng(3)
    S, cost, _ = ENV.sample(np.tile(POINTS[0], (100_000, 1)), rng)
    to_go = np.cumsum((ENV.discount * cost)[:, ::-1], axis=1)[:, ::-1]
    V = np.einsum("rti,tij,rtj->rt", S, Pj[0], S) + kappa[0]
    resid = to_go - V                                   # mean zero given s_j: uncorrelated with s_j s_j'
    for j in (0, 4, 9):
        assert abs(resid[:, j].mean()) < 4 * resid[:, j].std() / np.sqrt(len(resid))
        cov = np.mean(resid[:, j] * S[:, j, 0] ** 2)
        assert abs(cov) < 4 * np.std(resid[:, j] * S[:, j, 0] ** 2) / np.sqrt(len(resid))


def test_fisher_information_of_the_gaussian_policy():
    """E[psi psi'] = I kron (the discounted state covariance) / sigma^2; its smallest eigenvalue is mu_F > 0."""
    rng = np.random.default_rng(4)
    S, _, score = ENV.sample(np.tile(POINTS[0], (200_000, 1)), rng)
    F_mc = np.einsum("t,rtd,rte->de", ENV.discount, score, score) / len(score) / ENV.discount.sum()
    Sbar = np.einsum("t,tij->ij", ENV.discount, ENV.covariances(POINTS[0])[0]) / ENV.discount.sum()
    np.testing.assert_allclose(F_mc, Sbar / ENV.sigma ** 2, rtol=0.03, atol=0.01)
    assert np.linalg.eigvalsh(Sbar).min() / ENV.sigma ** 2 > 0.1


# --- the estimators -----------------------------------------------------------------------------

@pytest.mark.parametrize("baseline", lqr.BASELINES)
def test_gradient_estimators_are_unbiased(baseline):
    x = POINTS[1]
    m, se = mc_mean(lambda n, rng: lqr.gradient_estimate(ENV, np.tile(x, (n, 1)), rng, baseline=baseline))
    assert np.all(np.abs(m - P.grad(x)) < 4.5 * se)
    m, se = mc_mean(lambda n, rng: lqr.gradient_estimate(ENV, np.tile(x, (n, 1)), rng, estimator="reinforce"))
    assert np.all(np.abs(m - P.grad(x)) < 4.5 * se)


@pytest.mark.parametrize("form", ["per_step", "trajectory"])
@pytest.mark.parametrize("baseline", ["value", "none"])
def test_hessian_vector_estimators_are_unbiased(form, baseline):
    x, v = POINTS[1], np.array([0.6, -0.8])
    assert check_hvp(P.grad, lambda z, u: fd_hvp(z, u), x, v) < 1e-7
    m, se = mc_mean(lambda n, rng: lqr.hessian_vector_estimate(ENV, np.tile(x, (n, 1)), v, rng, baseline=baseline,
                                                              form=form))
    assert np.all(np.abs(m - fd_hvp(x, v)) < 4.5 * se)


def test_baselines_reduce_the_variance():
    rng = np.random.default_rng(5)
    X = np.tile(POINTS[0], (50_000, 1))
    var = {b: lqr.gradient_estimate(ENV, X, rng, baseline=b).var(axis=0).sum() for b in lqr.BASELINES}
    var["reinforce"] = lqr.gradient_estimate(ENV, X, rng, estimator="reinforce").var(axis=0).sum()
    assert var["value"] < var["mean"] < var["none"] < var["reinforce"]
    hv = {f: lqr.hessian_vector_estimate(ENV, X, [1.0, 0.0], rng, form=f).var(axis=0).sum()
          for f in ("per_step", "trajectory")}
    assert hv["per_step"] < hv["trajectory"]


def test_the_harpg_correction_is_unbiased_for_the_gradient_difference():
    x_prev, x = POINTS[0], POINTS[1]
    m, se = mc_mean(lambda n, rng: pg.harpg_correction(P.info["stoch_hvp"], np.tile(x, (n, 1)), np.tile(x_prev, (n, 1)),
                                                       rng))
    assert np.all(np.abs(m - (P.grad(x) - P.grad(x_prev))) < 4.5 * se)
    endpoint = fd_hvp(x, x - x_prev)                    # the Hessian at the end point is clearly different
    assert np.all(np.abs(endpoint - (P.grad(x) - P.grad(x_prev))) > 20 * se)


# --- the building blocks and the methods on exact problems ---------------------------------------

def quadratic(d=3, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((d, d))
    H = A @ A.T + np.eye(d)
    b = rng.standard_normal(d)
    return H, b, (lambda x, rng=None: x @ H - b), np.linalg.solve(H, b)


def test_implicit_gradient_transport_is_exact_on_a_quadratic():
    """beta grad(x_prev) + (1 - beta) grad(extrapolate(x, x_prev, beta)) = grad(x) when grad is affine."""
    H, b, g, _ = quadratic()
    rng = np.random.default_rng(0)
    x, x_prev = rng.standard_normal((2, 4, 3))
    for beta in (0.0, 0.5, 0.95):
        np.testing.assert_allclose(beta * g(x_prev) + (1 - beta) * g(pg.extrapolate(x, x_prev, beta)), g(x), atol=1e-10)
    # hence with exact gradients N-PG-IGT's direction is exactly the current gradient; momentum's is not
    log = []
    res = pg.n_pg_igt(g, np.ones(3), lr=lqr.power(0.5, 1.0, 2), beta=lqr.momentum(1.0, 0.8), n_iters=40, grad=g,
                      n_log=40)
    log = res.history["grad_err"][1:]
    assert np.nanmax(log) < 1e-20
    mom = pg.n_pg_igt(g, np.ones(3), lr=lqr.power(0.5, 1.0, 2), beta=lqr.momentum(1.0, 0.8), n_iters=40,
                      transport=False, grad=g, n_log=40)
    assert np.nanmax(mom.history["grad_err"][1:]) > 1e-2


def test_harpg_with_exact_hessians_tracks_the_gradient_exactly():
    H, b, g, _ = quadratic()
    res = pg.n_harpg(g, lambda x, v, rng: v @ H, np.ones(3), lr=lqr.power(0.5, 1.0, 2), beta=lqr.momentum(1.0, 1.0),
                     n_iters=40, grad=g, n_log=40)
    assert np.nanmax(res.history["grad_err"][1:]) < 1e-20 and res.n_evals == {"stoch_grad": 40, "stoch_hvp": 39}


def test_normalized_steps_have_the_step_length():
    rng = np.random.default_rng(1)
    x, d = rng.standard_normal((2, 5, 3))
    d[2] = 0.0
    step = pg.normalized_step(x, d, 0.3) - x
    np.testing.assert_allclose(np.linalg.norm(step, axis=1), [0.3, 0.3, 0.0, 0.3, 0.3])


def test_methods_converge_with_exact_gradients():
    exact = lambda x, rng: P.grad(x)  # noqa: E731
    gd = pg.n_pg_igt(exact, P.x0, lr=0.01, beta=0.0, transport=False, normalize=False, n_iters=3000, f=P.f)
    assert np.linalg.norm(gd.x - P.x_star) < 1e-6
    for transport in (True, False):
        res = pg.n_pg_igt(exact, P.x0, lr=lqr.power(0.3, 1.0, 2), beta=lqr.momentum(1.0, 0.8), n_iters=2000,
                          transport=transport, f=P.f)
        assert np.linalg.norm(res.x - P.x_star) < 1e-2 and P.gap(res.x) < 1e-4  # normalized: zigzags at the step scale
    res = pg.n_harpg(exact, lambda x, v, rng: fd_hvp(x, v), P.x0, lr=lqr.power(0.3, 1.0, 2), beta=0.0, n_iters=2000,
                     f=P.f)
    assert P.gap(res.x) < 1e-4


def test_vanilla_policy_gradient_on_sampled_trajectories():
    res = pg.n_pg_igt(P.stoch_grad, np.tile(P.x0, (50, 1)), lr=lqr.power(0.003, 2 / 3), beta=0.0, transport=False,
                      normalize=False, n_iters=800, f=P.f, rng=11)
    assert res.method == "pg" and P.gap(res.x).mean() < 0.25 * P.gap(P.x0)


# --- the API contract ----------------------------------------------------------------------------

START = np.zeros((8, 2))
KW = dict(lr=lqr.power(0.3, 1.0, 2), n_iters=30, f=P.f, grad=P.grad)


def run_igt(rng=0, x0=START, callback=None, **kw):
    return pg.n_pg_igt(P.stoch_grad, x0, beta=lqr.momentum(1.0, 0.8), rng=rng, callback=callback, **{**KW, **kw})


def run_harpg(rng=0, x0=START, callback=None, **kw):
    return pg.n_harpg(P.stoch_grad, P.info["stoch_hvp"], x0, beta=lqr.momentum(2.0, 1.0), rng=rng,
                      callback=callback, **{**KW, **kw})


@pytest.mark.parametrize("run", [run_igt, run_harpg])
def test_core_contract(run):
    check_method_contract(run)


def test_result_fields_and_history():
    res = run_igt(n_log=10)
    assert res.method == "n_pg_igt" and res.n_iters == 30 and res.n_evals == {"stoch_grad": 30}
    assert res.x.shape == (8, 2) and res.d.shape == (8, 2) and set(res.extras) == {"d"}
    assert res.f == pytest.approx(P.f(res.x).mean())
    for col in ("t", "n_evals", "lr", "f", "f_q10", "f_q50", "f_q90", "grad_err"):
        assert col in res.history.columns
    h = res.history
    assert h["t"][0] == 0 and h["t"][-1] == 30 and np.isnan(h["lr"][0]) and np.isnan(h["grad_err"][0])
    np.testing.assert_allclose(h["lr"][1:], 0.3 / (h["t"][1:] - 1 + 2))
    assert h["f"][0] == pytest.approx(P.f(P.x0))
    one = pg.n_harpg(P.stoch_grad, P.info["stoch_hvp"], P.x0, lr=0.1, beta=0.5, n_iters=5, rng=0)
    assert one.x.shape == (2,) and np.isnan(one.f) and one.method == "n_harpg"
    assert pg.n_pg_igt(P.stoch_grad, P.x0, lr=0.1, beta=0.5, n_iters=3, rng=0, transport=False).method == \
        "normalized_momentum"
    assert "0x" not in repr(res)


def test_non_finite_iterates_stop_the_run():
    with np.errstate(all="ignore"):
        res = pg.n_pg_igt(P.stoch_grad, np.full((4, 2), 3.0), lr=10.0, beta=0.0, transport=False, normalize=False,
                          n_iters=200, f=P.f, rng=0)
    assert "non-finite" in res.message and res.n_iters < 200 and np.isnan(res.f)


def test_power_schedule():
    s = lqr.power(0.3, 1.0, 2)
    assert s(0) == pytest.approx(0.15) and s(8) == pytest.approx(0.03)
    assert lqr.power(1.0, 0.8)(0) == 1.0 and lqr.power(2.0, 1.0)(3) == 0.5
    m = lqr.momentum(2.0, 1.0)
    assert [m(t) for t in (0, 1, 3)] == [0.0, 0.0, 0.5] and lqr.momentum(1.0, 0.8)(1) == pytest.approx(1 - 2 ** -0.8)


# --- bad input -----------------------------------------------------------------------------------

I2 = np.eye(2)
LQR_GOOD = dict(A=[[0.5, 0.5], [0.0, 0.5]], B=[[0.0], [1.0]], Q=I2, R=[[0.1]], W=0.1 * I2, S0=I2, sigma=1.0,
                gamma=0.8, horizon=5)
BAD_INPUT = {
    "LQR": (lambda **kw: lqr.LQR(**kw), LQR_GOOD,
            {"A": [np.eye(3), [[np.nan, 0], [0, 1]]], "B": [np.ones(2)], "Q": [-I2, [[1.0, 2.0], [0.0, 1.0]]],
             "R": [[[0.0]], [[-1.0]]], "W": [-I2], "S0": [-I2, np.eye(3)], "sigma": [0.0, -1.0, np.nan],
             "gamma": [0.0, 1.5], "horizon": [0, 2.5]}, ()),
    "lqr_problem": (lqr.lqr_problem, dict(horizon=5),
                    {"baseline": ["critic"], "sigma": [-1.0], "gamma": [1.2], "horizon": [0], "A": [np.eye(3)]}, ()),
    "gradient_estimate": (lqr.gradient_estimate, dict(env=ENV, x=np.zeros((3, 2)), rng=0),
                          {"x": [np.zeros(3), np.zeros((2, 2, 2)), [np.nan, 0.0]], "baseline": ["critic"],
                           "estimator": ["reinforce++"], "rng": [-1]}, ("env",)),
    "hessian_vector_estimate": (lqr.hessian_vector_estimate, dict(env=ENV, x=np.zeros((3, 2)), v=[1.0, 0.0], rng=0),
                                {"x": [np.zeros(3)], "v": [np.zeros(3), [np.inf, 0.0]], "form": ["full"],
                                 "baseline": ["mean+"], "rng": ["seed"]}, ("env",)),
    "harpg_correction": (pg.harpg_correction, dict(stoch_hvp=P.info["stoch_hvp"], x=np.ones((3, 2)),
                                                   x_prev=np.zeros((3, 2)), rng=0),
                         {"stoch_hvp": [3, (lambda x, v, rng: np.zeros(5), "stoch_hvp returned shape")],
                          "x": [np.ones(2)], "x_prev": [np.zeros((4, 2))], "rng": [-1]}, ("stoch_hvp",)),
    "extrapolate": (pg.extrapolate, dict(x=np.ones((3, 2)), x_prev=np.zeros((3, 2)), beta=0.5),
                    {"beta": [1.0, -0.5, np.nan], "x_prev": [np.zeros((2, 2))], "x": [np.ones(2)]}, ()),
    "normalized_step": (pg.normalized_step, dict(x=np.ones((3, 2)), d=np.ones((3, 2)), lr=0.1),
                        {"lr": [-0.1, np.inf], "d": [np.ones((3, 3))]}, ()),
    "power": (lqr.power, dict(c=1.0, p=0.8, t0=1.0), {"c": [0.0, -1.0], "p": [-0.5], "t0": [0.0, np.nan]}, ()),
    "momentum": (lqr.momentum, dict(c=2.0, p=1.0), {"c": [0.0], "p": [-1.0], "t0": [-1.0]}, ()),
    "n_pg_igt": (pg.n_pg_igt, dict(stoch_grad=P.stoch_grad, x0=np.zeros((3, 2)), lr=0.1, beta=0.5, n_iters=3, f=P.f,
                                   grad=P.grad, rng=0),
                 {"x0": [np.zeros((2, 2, 2)), [np.nan, 0.0], []], "lr": [-0.1, (lambda t: -1.0, "lr schedule")],
                  "beta": [(1.0, "beta schedule"), -0.1, (lambda t: np.nan, "beta schedule")],
                  "n_iters": [0, 2.5], "transport": ["yes"], "normalize": [1], "n_log": [1],
                  "quantiles": [(0.5, 1.5)],
                  "stoch_grad": [None, (lambda x, rng: np.zeros(7), "stoch_grad returned shape")],
                  "f": [(lambda x: np.zeros(5), "f must be row-wise")],
                  "grad": [(lambda x: np.zeros(3), "grad returned shape")],
                  "rng": ["seed"], "callback": [3]}, ()),
    "n_harpg": (pg.n_harpg, dict(stoch_grad=P.stoch_grad, stoch_hvp=P.info["stoch_hvp"], x0=np.zeros((3, 2)), lr=0.1,
                                 beta=0.5, n_iters=3, rng=0),
                {"stoch_hvp": [None, (lambda x, v, rng: np.zeros(1), "stoch_hvp returned shape")],
                 "beta": [(2.0, "beta schedule")], "normalize": ["no"], "x0": [[[np.inf, 0.0]]], "n_iters": [-1]}, ()),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


# --- the chapter's claim: other seeds and sizes, and wrong variants that must fail it -------------

MODULE, PROBLEM = "optlab.stochastic.policy_gradient", "optlab.stochastic.lqr"


def hessian_without_the_score_outer_product(env, x, v, rng, **kw):
    """A wrong B: only the second derivatives of log pi, the term g grad log p' (the score product) dropped."""
    X = np.atleast_2d(x)
    S, score, A = lqr._trajectory(env, X, rng, kw.get("baseline", "value"))
    V = np.broadcast_to(v, X.shape).reshape(-1, env.m, env.n)
    hess_log = -(np.einsum("rij,rtj->rti", V, S)[..., :, None] * S[..., None, :]).reshape(score.shape) / env.sigma ** 2
    return np.einsum("rt,rtd->rd", A, hess_log)


def correction_at_the_new_point(stoch_hvp, x, x_prev, rng):
    """A wrong correction: the Hessian at theta_t instead of at the random interpolate."""
    return stoch_hvp(x, x - x_prev, rng)


def extrapolate_one_step(x, x_prev, beta):
    """A wrong IGT point: beta in place of beta/(1 - beta), so the gradient is transported one step only."""
    return x + beta * (x - x_prev)


def unnormalized_step(x, d, lr):
    """A wrong step: theta - eta d, the normalization dropped (eta is a length, not a rate)."""
    return x - lr * d


WRONG_VARIANTS = {
    "the Hessian estimate without the score outer product": {f"{PROBLEM}.hessian_vector_estimate":
                                                             hessian_without_the_score_outer_product},
    "the Hessian correction at the new point instead of the random interpolate": {f"{MODULE}.harpg_correction":
                                                                                  correction_at_the_new_point},
    "the IGT extrapolation by beta instead of beta/(1 - beta)": {f"{MODULE}.extrapolate": extrapolate_one_step},
    "the normalized step without its normalization": {f"{MODULE}.normalized_step": unnormalized_step},
}


@pytest.mark.slow
def test_the_claim_holds_on_seeds_and_sizes_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS, sizes=OTHER_SIZES)
    assert verdict.passed and verdict.status == "holds in part"
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.slow
@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"), np.errstate(all="ignore"):  # a wrong step overflows
        run_claim(CHAPTER, seeds=CLAIM_SEEDS, sizes=FAST, patches=WRONG_VARIANTS[variant])
