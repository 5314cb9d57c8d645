"""Tests of optlab.bayesopt (gp, acquisition, loop, gp_bo), cheapest first; the chapter's claim on wrong variants."""
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtr

import optlab.bayesopt.acquisition as acq
from optlab.bayesopt import gp as gpm
from optlab.bayesopt import gp_bo as gb
from optlab.bayesopt import loop
from optlab.claims import ClaimFailed
from optlab.problems import branin
from optlab.testing import check_bad_inputs, check_grad, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "bayesopt" / "gp_bo.ipynb"
# Seeds and sizes of the claim re-runs here; the chapter uses seeds 1-10 with 30 evaluations.
CLAIM_SEEDS = [7001, 7002, 7003, 7004, 7005]
FAST = {"N_MC": 50_000, "N_FANTASIES": 2000}


def data(n=7, d=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    return X, np.sin(3 * X).sum(axis=1) + 0.1 * rng.standard_normal(n)


# --- the GP: kernels, posterior against scikit-learn, the marginal likelihood and its gradient -----

@pytest.mark.parametrize("kernel", gpm.KERNELS)
def test_posterior_equals_scikit_learn(kernel):
    gaussian_process = pytest.importorskip("sklearn.gaussian_process")
    kernels = pytest.importorskip("sklearn.gaussian_process.kernels")
    GaussianProcessRegressor = gaussian_process.GaussianProcessRegressor
    RBF, ConstantKernel, Matern = kernels.RBF, kernels.ConstantKernel, kernels.Matern

    X, y = data()
    ell, s2, lam2 = np.array([0.3, 0.7]), 1.7, 0.05
    base = Matern(ell, "fixed", nu=2.5) if kernel == "matern52" else RBF(ell, "fixed")
    sk = GaussianProcessRegressor(ConstantKernel(s2, "fixed") * base, alpha=lam2, optimizer=None).fit(X, y)
    ours = gpm.GP(X, y, lengthscales=ell, signal_var=s2, noise_var=lam2, kernel=kernel, jitter=0.0)
    Xs = np.random.default_rng(1).uniform(size=(25, 2))
    mean_sk, cov_sk = sk.predict(Xs, return_cov=True)
    mean, cov = ours.predict(Xs, full_cov=True)
    np.testing.assert_allclose(mean, mean_sk, atol=1e-10)
    np.testing.assert_allclose(cov, cov_sk, atol=1e-10)
    np.testing.assert_allclose(ours.predict(Xs)[1], np.diag(cov_sk), atol=1e-10)
    value, _ = gpm.log_marginal_likelihood(np.log(np.r_[ell, s2, lam2]), X, y, kernel, jitter=0.0)
    assert value == pytest.approx(sk.log_marginal_likelihood_value_, abs=1e-10)


@pytest.mark.parametrize("kernel", gpm.KERNELS)
def test_marginal_likelihood_gradient_against_finite_differences(kernel):
    X, y = data(n=9, d=3)
    theta = np.log([0.4, 0.8, 1.5, 1.3, 0.02])
    assert check_grad(lambda t: gpm.log_marginal_likelihood(t, X, y, kernel)[0],
                      lambda t: gpm.log_marginal_likelihood(t, X, y, kernel)[1], theta) < 1e-6


def test_callable_kernel_fits_only_signal_and_noise():
    X, y = data()
    lin = lambda A, B: A @ B.T + 1.0  # noqa: E731
    gp = gpm.fit_gp(X, y, kernel=lin, rng=0)
    assert gp.theta.shape == (2,) and gp.lengthscales is None
    theta = np.log([0.7, 0.1])
    assert check_grad(lambda t: gpm.log_marginal_likelihood(t, X, y, lin)[0],
                      lambda t: gpm.log_marginal_likelihood(t, X, y, lin)[1], theta) < 1e-6
    mean, var = gp.predict(X[:3])
    assert mean.shape == var.shape == (3,) and np.all(var >= 0)


def test_kernels_and_samples():
    K = gpm.kernel_matrix(np.zeros((1, 1)), np.array([[0.0], [1.0]]), [1.0], kernel="matern52")
    r = 1.0
    assert K[0, 1] == pytest.approx((1 + np.sqrt(5) * r + 5 / 3 * r**2) * np.exp(-np.sqrt(5) * r))
    X, y = data()
    gp = gpm.GP(X, y, lengthscales=[0.5, 0.5], noise_var=0.01)
    Xs = np.random.default_rng(2).uniform(size=(4, 2))
    draws = gp.sample(Xs, 40_000, rng=0)
    mean, cov = gp.predict(Xs, full_cov=True)
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.02)
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.02)


def test_fit_recovers_a_known_lengthscale_and_beats_the_start():
    rng = np.random.default_rng(3)
    X = rng.uniform(size=(40, 1))
    K = gpm.kernel_matrix(X, X, [0.2]) + 1e-4 * np.eye(40)
    y = np.linalg.cholesky(K) @ rng.standard_normal(40)               # a draw from the prior, plus noise
    gp = gpm.fit_gp(X, y, n_restarts=3, rng=0)
    assert 0.1 < gp.lengthscales[0] < 0.4
    ys = (y - y.mean()) / y.std()
    assert gp.log_ml >= gpm.log_marginal_likelihood(np.log([0.3, 1.0, 1e-3]), X, ys)[0]


def test_fantasy_means_equal_the_rank_one_update():
    X, y = data()
    gp = gpm.GP(X, y, lengthscales=[0.4, 0.6], noise_var=0.05)
    Xn, A = np.random.default_rng(4).uniform(size=(3, 2)), np.random.default_rng(5).uniform(size=(11, 2))
    Y = np.random.default_rng(6).standard_normal((3, 5))
    fm = gp.fantasy_means(Xn, Y, A)
    mean, cov = gp.predict(np.vstack([A, Xn]), full_cov=True)
    s2 = np.diag(cov)[11:] + gp.noise_var
    r1 = mean[None, None, :11] + (cov[:11, 11:] / s2).T[:, None, :] * (Y - mean[11:, None])[:, :, None]
    np.testing.assert_allclose(fm, r1, atol=1e-8)


# --- acquisition functions: exact identities, quadrature, Monte Carlo -----------------------------

def test_expected_improvement_closed_form_against_quadrature_and_monte_carlo():
    rng = np.random.default_rng(7)
    mean, sd = rng.normal(size=20), np.exp(rng.normal(size=20) * 0.5)
    ei = acq.expected_improvement(mean, sd, 0.0)
    np.testing.assert_allclose(gb.ei_quadrature(mean, sd, 0.0), ei, atol=1e-10)
    est, se = gb.ei_monte_carlo(mean, sd, 0.0, 200_000, rng)
    assert np.all(np.abs(est - ei) < 4.5 * se)
    assert acq.expected_improvement(2.0, 0.0, 0.5) == 0.0 and acq.expected_improvement(0.5, 0.0, 2.0) == 1.5


def test_expected_max_of_lines_against_brute_force():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    b[0, 2] = b[0, 4]                                     # a tie in slope
    z = np.linspace(-12, 12, 400_001)
    w = np.exp(-z**2 / 2) / np.sqrt(2 * np.pi) * (z[1] - z[0])
    brute = np.array([(np.max(ai[:, None] + bi[:, None] * z, axis=0) * w).sum() for ai, bi in zip(a, b)])
    np.testing.assert_allclose(acq.expected_max_of_lines(a, b), brute, atol=1e-7)


def test_knowledge_gradient_against_its_simulation():
    X, y = data()
    gp = gpm.GP(X, y, lengthscales=[0.4, 0.6], noise_var=0.05)
    A = np.random.default_rng(9).uniform(size=(30, 2))
    Xt = A[:6]
    kg = acq.knowledge_gradient(gp, Xt, A)
    est, se = gb.kg_simulation(gp, Xt, A, 20_000, rng=0)
    assert np.all(kg >= -1e-12) and np.all(np.abs(est - kg) < 4.5 * se + 1e-9)


def test_noisy_ei_is_kg_over_the_evaluated_points_plus_x_and_tends_to_ei():
    X, y = data()
    Xs = np.random.default_rng(10).uniform(size=(8, 2))
    gp = gpm.GP(X, y, lengthscales=[0.4, 0.6], noise_var=0.05)
    nei = acq.noisy_expected_improvement(gp, Xs, X)
    mean_obs = gp.predict(X)[0]
    mean_x = gp.predict(Xs)[0]
    kg = np.array([acq.knowledge_gradient(gp, x[None], np.vstack([X, x]))[0] for x in Xs])
    np.testing.assert_allclose(nei, kg + np.maximum(mean_obs.min() - mean_x, 0.0), atol=1e-12)
    gaps = []
    for lam2 in (1e-2, 1e-4, 1e-8):
        g = gpm.GP(X, y, lengthscales=[0.4, 0.6], noise_var=lam2)
        m, v = g.predict(Xs)
        best = g.predict(X)[0].min()                          # tends to min y as the noise vanishes
        gaps.append(np.abs(acq.noisy_expected_improvement(g, Xs, X) - acq.expected_improvement(m, np.sqrt(v), best)
                           ).max())
    assert gaps[-1] < 1e-6 and gaps[0] > gaps[1] > gaps[2]


def test_entropy_search_and_mes():
    f, bounds, X, y = gb.one_d_example()
    U = (X - bounds[:, 0]) / np.ptp(bounds)
    gp = gpm.GP(U, y, lengthscales=[0.15], noise_var=1e-6)
    grid = np.linspace(0, 1, 81)[:, None]
    es = gb.entropy_search(gp, grid[::4], grid, rng=0)
    assert np.all(es > -0.05) and es.max() > 0.3
    np.testing.assert_array_equal(es, gb.entropy_search(gp, grid[::4], grid, rng=0))
    at_data = gb.entropy_search(gp, U, grid, rng=0)
    assert at_data.max() < 0.05, "observing a noise-free point again teaches nothing"
    m, v = gp.predict(grid)
    mes = acq.max_value_entropy(m, np.sqrt(v), np.array([-1.5, -1.3]))
    assert np.all(mes >= -1e-12) and mes.argmax() != 0


def test_maximize_acquisition_polishes():
    score = lambda U: -np.sum((U - 0.3141) ** 2, axis=1)  # noqa: E731
    x_fixed, _ = acq.maximize_acquisition(score, 2, rng=0, n_candidates=64, scales=())
    x, s = acq.maximize_acquisition(score, 2, rng=0, n_candidates=64)
    assert s > -1e-5 and np.abs(x - 0.3141).max() < 3e-3 < np.abs(x_fixed - 0.3141).max()


# --- the loop: contract, history, random search --------------------------------------------------

def run(rng=0, callback=None, **kw):
    p = branin()
    return loop.bayes_opt(p.f, p.bounds, n_init=4, n_iters=3, f_star=p.f_star, n_candidates=64, rng=rng,
                          callback=callback, **kw)


def test_core_contract():
    check_method_contract(run)
    check_method_contract(lambda rng=0, callback=None: loop.random_search(
        branin().f, branin().bounds, n_evals=10, rng=rng, callback=callback))


def test_history_and_result():
    res = run()
    h = res.history
    assert res.n_evals == {"f": 7} and len(h) == 4 and list(h["t"]) == [0, 1, 2, 3]
    assert np.all(np.diff(h["best"]) <= 0) and np.allclose(h["regret"], h["best"] - branin().f_star)
    assert res.f == pytest.approx(res.y.min()) and res.X.shape == (7, 2) and np.isnan(h["acq"][0])
    assert np.all((res.X >= branin().bounds[:, 0]) & (res.X <= branin().bounds[:, 1]))
    noisy = run(stoch_f=lambda X, rng: branin().f(X) + rng.standard_normal(len(X)), acquisition="noisy_ei")
    assert noisy.n_evals == {"stoch_f": 7} and noisy.params["recommend"] == "best_mean"
    assert noisy.f == pytest.approx(branin().f(noisy.x[None])[0])
    for name in ("ucb", "mes"):
        assert run(acquisition=name).n_evals == {"f": 7}


def test_bo_finds_the_minimum_of_a_quadratic():
    res = loop.bayes_opt(lambda X: np.sum((X - 0.3) ** 2, axis=1), [[0.0, 1.0], [0.0, 1.0]], n_init=4,
                         n_iters=8, f_star=0.0, rng=1)
    assert res.history["regret"][-1] < 1e-3


def test_random_search_and_non_finite_values():
    res = loop.random_search(lambda X: X[:, 0] ** 2, [[-1.0, 1.0]], n_evals=50, f_star=0.0, rng=0)
    assert res.n_evals == {"f": 50} and np.all(np.diff(res.history["best"]) <= 0) and res.f < 0.01
    bad = loop.bayes_opt(lambda X: np.where(X[:, 0] > -1, np.nan, 0.0) if len(X) == 1 else X[:, 0],
                         [[0.0, 1.0]], n_init=3, n_iters=2, n_candidates=16, rng=0)
    assert "non-finite" in bad.message and bad.n_iters == 0


def probability_of_improvement_score(model, X_obs, y_obs, rng):
    best = y_obs.min()
    return lambda X: ndtr((best - model.predict(X)[0]) / np.sqrt(model.predict(X)[1] + 1e-12))


def test_a_custom_acquisition_and_surrogate():
    res = run(acquisition=probability_of_improvement_score, surrogate=gpm.GPSurrogate(kernel="se", noise_var=1e-6))
    assert res.n_evals == {"f": 7} and "se" in res.params["surrogate"]


X5, Y5 = data(5, 2)
GP5 = gpm.GP(X5, Y5, lengthscales=[0.5, 0.5], noise_var=0.01)
BAD_INPUT = {
    "GP": (gpm.GP, dict(X=X5, y=Y5, lengthscales=[0.5, 0.5], noise_var=0.01),
           {"X": [np.ones(5), [[np.nan, 1.0]] * 5], "y": [np.ones(4)], "lengthscales": [[0.5], [-1.0, 1.0]],
            "signal_var": [0.0, -1.0], "noise_var": [-1.0], "kernel": ["rbf"], "mean": [np.nan]}, ()),
    "fit_gp": (gpm.fit_gp, dict(X=X5, y=Y5, n_restarts=0),
               {"X": [np.ones(5)], "y": [np.ones(3)], "kernel": ["rbf"], "n_restarts": [-1, 1.5],
                "noise_var": [-1.0], "lengthscale_bounds": [(1.0, 0.1)], "signal_bounds": [(0.0, 1.0)],
                "noise_bounds": [(1e-6, np.inf)]}, ()),
    "GPSurrogate": (gpm.GPSurrogate, dict(), {"kernel": ["rbf"], "n_restarts": [-1]}, ()),
    "log_marginal_likelihood": (lambda **kw: gpm.log_marginal_likelihood(**kw)[0],
                                dict(theta=np.log([0.5, 0.5, 1.0, 0.01]), X=X5, y=Y5),
                                {"kernel": [("rbf", "kernel")]}, ("theta", "X", "y", "kernel")),
    "knowledge_gradient": (lambda **kw: acq.knowledge_gradient(GP5, **kw), dict(X=X5[:2], A=X5),
                           {"X": [np.ones(3)], "A": [[[np.nan, 0.0]]]}, ()),
    "noisy_expected_improvement": (lambda **kw: acq.noisy_expected_improvement(GP5, **kw), dict(X=X5[:2], X_obs=X5),
                                   {"X": [np.ones(3)], "X_obs": [np.ones(2)]}, ()),
    "sobol_design": (acq.sobol_design, dict(n=4, d=2), {"n": [0, 2.5], "d": [0]}, ()),
    "maximize_acquisition": (acq.maximize_acquisition, dict(score=lambda U: -U.sum(axis=1), dim=2, n_candidates=8),
                             {"score": [3], "n_top": [0], "scales": [(0.1, -1.0)], "anchors": [np.ones((2, 3))]},
                             ("dim",)),
    "bayes_opt": (loop.bayes_opt, dict(f=lambda X: X.sum(axis=1), bounds=[[0.0, 1.0]], n_init=2, n_iters=1,
                                       n_candidates=8),
                  {"f": [None, (lambda X: X, "f returned shape")], "bounds": [[[1.0, 0.0]], [0.0, 1.0]],
                   "acquisition": ["pi"], "n_init": [0], "n_iters": [-1], "init": ["lhs"],
                   "recommend": ["last"], "f_star": [np.nan], "n_candidates": [0], "surrogate": [3],
                   "stoch_f": [3]}, ("surrogate",)),
    "random_search": (loop.random_search, dict(f=lambda X: X.sum(axis=1), bounds=[[0.0, 1.0]], n_evals=3),
                      {"f": [None], "bounds": [[[0.0, 0.0]]], "n_evals": [0], "f_star": [np.inf]}, ()),
    "ei_quadrature": (gb.ei_quadrature, dict(mean=[0.0, 1.0], sd=[1.0, 1.0], best=0.0),
                      {"mean": [[np.nan]], "sd": [[1.0, 0.0], [1.0]], "best": [np.nan], "n_nodes": [1]}, ()),
    "ei_monte_carlo": (gb.ei_monte_carlo, dict(mean=[0.0], sd=[1.0], best=0.0, n_samples=10),
                       {"sd": [[-1.0]], "n_samples": [1, 2.5], "rng": [-1]}, ()),
    "kg_simulation": (lambda **kw: gb.kg_simulation(GP5, **kw), dict(X=X5[:2], A=X5, n_fantasies=10),
                      {"X": [np.ones(2)], "A": [[[np.inf, 0.0]]], "n_fantasies": [1]}, ()),
    "entropy_search": (lambda **kw: gb.entropy_search(GP5, **kw), dict(X=X5[:2], grid=X5, n_paths=8),
                       {"X": [np.ones(2)], "grid": [[[np.nan, 0.0]]], "n_paths": [1], "n_fantasies": [0]}, ()),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


# --- the chapter's claim: other seeds, and wrong variants that must fail it -----------------------

def ei_maximization_convention(mean, sd, best):
    """A wrong EI: the tutorial's maximization formula E[(f - f*)^+] kept in a minimizing code."""
    return EI(2 * best - np.asarray(mean, dtype=float), sd, best)


def ei_with_variance(model, X_obs, y_obs, rng):
    """A wrong EI acquisition: the posterior variance passed where the standard deviation belongs."""
    best = float(np.min(y_obs))

    def score(X):
        mean, var = model.predict(X)
        return acq.expected_improvement(mean, var, best)
    return score


def kg_without_noise(model, X, A):
    """A wrong KG: the slopes divide by sigma_n(x), forgetting the observation noise."""
    class Noiseless:
        noise_var = 0.0
        predict = staticmethod(model.predict)
    return KG(Noiseless(), X, A)


EI, KG = acq.expected_improvement, acq.knowledge_gradient
MODULE = "optlab.bayesopt.acquisition"
WRONG_VARIANTS = {
    "EI in the maximization convention (improvement above the incumbent)": {
        f"{MODULE}.expected_improvement": ei_maximization_convention},
    "EI with the posterior variance in place of the standard deviation": {
        f"{MODULE}.ACQUISITIONS": {**acq.ACQUISITIONS, "ei": ei_with_variance}},
    "KG slopes without the observation noise": {f"{MODULE}.knowledge_gradient": kg_without_noise},
}


def test_wrong_variants_are_wrong():
    mean, sd = np.array([0.3, -0.2]), np.array([1.0, 0.5])
    assert not np.allclose(ei_maximization_convention(mean, sd, 0.0), EI(mean, sd, 0.0))
    X, y = data()
    gp = gpm.GP(X, y, lengthscales=[0.4, 0.6], noise_var=0.05)
    assert not np.allclose(kg_without_noise(gp, X[:2], X), KG(gp, X[:2], X))


@pytest.mark.slow
def test_the_claim_holds_on_seeds_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS, sizes=FAST)
    assert verdict.passed and verdict.status == "holds"
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.slow
@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=CLAIM_SEEDS[:3], sizes=FAST, patches=WRONG_VARIANTS[variant])
