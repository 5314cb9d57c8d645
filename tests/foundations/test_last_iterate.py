"""Tests of optlab.foundations.last_iterate and optlab.foundations.noise, cheapest first."""
import numpy as np
import pytest
from scipy import stats
from scipy.optimize import minimize_scalar

from optlab.core import Result
from optlab.foundations import last_iterate as li
from optlab.foundations.noise import bounded, gaussian, get_noise, student_t
from optlab.schedules import constant, inverse_sqrt, inverse_time
from optlab.testing import check_grad

# Seeds of the stochastic claims here; the chapter uses others.
CLAIM_SEEDS = [7001, 7002, 7003, 7004]


# --- exact identities --------------------------------------------------------------------------

@pytest.mark.parametrize("v", [-2.3, -0.4, 0.0, 0.25, 1.7])
@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0])
def test_soft_threshold_is_the_prox_of_the_l1_norm(v, tau):
    best = minimize_scalar(lambda z: 0.5 * (z - v) ** 2 + tau * abs(z), bounds=(-5, 5),
                           method="bounded", options={"xatol": 1e-10})
    assert li.soft_threshold(np.array([v]), tau)[0] == pytest.approx(best.x, abs=1e-6)


def test_composite_prox_thresholds_at_lr_times_lambda():
    p = li.composite_problem(dim=3, lam=2.0)
    v = np.array([[3.0, -0.5, 1.5]])
    np.testing.assert_allclose(p.info["prox"](v, 0.5), li.soft_threshold(v, 1.0))


def test_problem_oracles():
    ls = li.least_squares_problem(n_samples=3, dim=5)
    x = np.linspace(-1.0, 1.0, 5)
    assert check_grad(ls.f, ls.grad, x) < 1e-6
    assert ls.f(np.ones(5)) == pytest.approx(0.0)  # b = A 1 is fitted exactly
    assert ls.info["smoothness"] == pytest.approx(np.linalg.eigvalsh(ls.info["A"].T @ ls.info["A"]).max() / 3)
    X = np.arange(15.0).reshape(3, 5) / 10
    for p in (li.l1_norm_problem(5), ls, li.composite_problem(5, lam=0.3)):
        np.testing.assert_allclose(p.f(X), [p.f(row) for row in X])
        assert p.stoch_grad(X, np.random.default_rng(0)).shape == X.shape
        assert p.f(np.zeros(5)) >= p.f_star - 1e-12
    c = li.composite_problem(2, lam=0.3)
    assert c.f(np.array([1.0, -2.0])) == pytest.approx(0.5 * 5 + 0.3 * 3)


def test_loglog_slope():
    t = np.array([10.0, 100.0, 1000.0])
    assert li.loglog_slope(t, 3 * t ** -0.5) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="positive"):
        li.loglog_slope(t, [1.0, 0.0, 1.0])


# --- step-size rules ---------------------------------------------------------------------------

def test_step_size_rules():
    s = li.step_size("constant", eta=2.0, n_iters=400)
    assert s == constant(0.1) and s(0) == s(399) == pytest.approx(0.1)
    assert li.step_size("decaying", eta=2.0) == inverse_sqrt(2.0)
    assert li.step_size("decaying", eta=2.0)(3) == pytest.approx(1.0)
    assert li.step_size("strongly_convex", mu=0.5) == inverse_time(0.5)
    assert li.step_size("strongly_convex", mu=0.5)(3) == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(rule="adaptive"), "rule must be"),
    (dict(rule="constant"), "n_iters"),
    (dict(rule="constant", n_iters=0), "n_iters"),
    (dict(rule="strongly_convex"), "mu"),
    (dict(rule="strongly_convex", mu=-1.0), "mu"),
    (dict(rule="constant", eta=-1.0, n_iters=10), "lr"),
])
def test_step_size_errors(kwargs, match):
    rule = kwargs.pop("rule")
    with pytest.raises(ValueError, match=match):
        li.step_size(rule, **kwargs)


# --- noise models ------------------------------------------------------------------------------

def test_noise_moments_and_tails():
    rng = np.random.default_rng(1)
    n = 200_000
    g = gaussian(2.0)(n, rng)
    assert abs(g.mean()) < 0.02 and g.std() == pytest.approx(2.0, rel=0.01)
    u = bounded(0.5)((n,), rng)
    assert np.abs(u).max() <= 0.5 and u.var() == pytest.approx(0.25 / 3, rel=0.02)
    r = bounded(0.5, kind="rademacher")((100, 2), rng)
    assert set(np.unique(r)) == {-0.5, 0.5}
    t5 = student_t(df=5.0, scale=2.0)(n, rng)
    assert abs(t5.mean()) < 0.03 and t5.var() == pytest.approx(4 * 5 / 3, rel=0.05)
    t15 = student_t(df=1.5)(n, rng)  # infinite variance: the tail P(|t| > 10) matches the t law
    assert np.mean(np.abs(t15) > 10) == pytest.approx(2 * stats.t.sf(10, 1.5), rel=0.1)
    assert np.mean(np.abs(t15) > 10) > 0.01  # a Gaussian of unit scale: about 1e-23


def test_noise_is_reproducible_and_named():
    assert np.array_equal(gaussian()(5, 3), gaussian()(5, 3))
    assert get_noise("bounded", scale=2.0) == bounded(2.0)
    assert get_noise(student_t(3.0)) == student_t(3.0)
    assert repr(student_t(3.0)) == "student_t(df=3.0, scale=1.0)"


@pytest.mark.parametrize("make, match", [
    (lambda: student_t(df=0.0), "df"), (lambda: student_t(df=-1.0), "df"),
    (lambda: gaussian(-1.0), "sigma"), (lambda: bounded(1.0, kind="box"), "kind"),
    (lambda: get_noise("cauchy"), "noise must be one of"), (lambda: gaussian(1.0)((-1, 2)), "shape"),
])
def test_noise_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_noise_type_errors():
    with pytest.raises(TypeError, match="sigma"):
        gaussian("1")
    with pytest.raises(TypeError, match="df"):
        student_t(True)


# --- convergence on deterministic problems -----------------------------------------------------

def exact(p):
    return lambda x, rng: p.grad(x)


def test_deterministic_composite_reaches_the_minimizer_exactly():
    p = li.composite_problem(dim=4, lam=0.1)
    res = li.sgd(exact(p), np.array([3.0, -2.0, 0.5, 0.0]), lr=0.5, n_iters=60, f=p.f, prox=p.info["prox"])
    assert np.array_equal(res.x, np.zeros(4)) and res.f == 0.0
    assert res.history["sparsity"][-1] == 1.0


def test_deterministic_least_squares_and_subgradient():
    ls = li.least_squares_problem()
    res = li.sgd(exact(ls), ls.x0, lr=1.0 / ls.info["smoothness"], n_iters=3000, f=ls.f)
    assert res.f < 1e-10
    l1 = li.l1_norm_problem(3)
    res = li.sgd(exact(l1), l1.x0, lr=li.step_size("decaying", eta=0.5), n_iters=2000, f=l1.f)
    assert res.f < 3 * 0.5 / np.sqrt(2000)  # the subgradient method oscillates within a step of 0


def test_projection_onto_a_box():
    c = np.array([2.0, -3.0, 0.2])
    res = li.sgd(lambda x, rng: x - c, np.zeros(3), lr=0.5, n_iters=100,
                 project=lambda x: np.clip(x, -1.0, 1.0))
    np.testing.assert_allclose(res.x, [1.0, -1.0, 0.2], atol=1e-12)
    assert res.n_evals == {"stoch_grad": 100, "project": 100}


# --- the API contract --------------------------------------------------------------------------

def run(rng=0, x0=None, n_iters=200, **kw):
    p = li.l1_norm_problem(3)
    x0 = np.ones((50, 3)) if x0 is None else x0
    return li.sgd(p.stoch_grad, x0, lr=li.step_size("constant", n_iters=n_iters), n_iters=n_iters,
                  f=p.f, rng=rng, **kw)


def test_result_fields_and_history():
    res = run(n_log=10, quantiles=(0.5, 0.9))
    assert isinstance(res, Result) and isinstance(res, li.LastIterateResult)
    assert res.method == "sgd" and res.n_iters == 200 and res.message == "reached n_iters=200"
    assert res.x.shape == res.x_avg.shape == (50, 3) and not res.converged
    assert res.params["n_replicas"] == 50 and res.n_evals == {"stoch_grad": 200}
    assert res.f == pytest.approx(li.l1_norm_problem(3).f(res.x).mean())
    assert res.f_avg == pytest.approx(li.l1_norm_problem(3).f(res.x_avg).mean())
    for col in ("t", "n_evals", "lr", "f", "f_avg", "f_q50", "f_q90", "f_avg_q90", "sparsity", "sparsity_avg"):
        assert col in res.history.columns
    t = res.history["t"]
    assert t[0] == 0 and t[-1] == 200 and len(t) <= 11 and np.all(np.diff(t) > 0)
    assert res.history["f"][0] == pytest.approx(3.0)
    assert "sgd" in repr(res) and "0x" not in repr(res)


def test_single_replica_and_no_objective():
    res = run(x0=np.ones(3))
    assert res.x.shape == (3,) and np.isfinite(res.f)
    p = li.l1_norm_problem(3)
    res = li.sgd(p.stoch_grad, np.ones(3), lr=0.01, n_iters=20, rng=0)
    assert np.isnan(res.f) and "f" not in res.history.columns and "sparsity" in res.history.columns


def test_x0_not_mutated_and_reproducible():
    x0 = np.ones((20, 3))
    a, b, c = run(rng=3, x0=x0), run(rng=3, x0=x0), run(rng=4, x0=x0)
    assert np.array_equal(x0, np.ones((20, 3)))
    assert np.array_equal(a.history["f"], b.history["f"]) and np.array_equal(a.x, b.x)
    assert not np.array_equal(a.history["f"], c.history["f"])


def test_callback_stops_the_run():
    seen = []
    res = run(callback=lambda rec: seen.append(rec["t"]) or rec["t"] >= 10)
    assert res.message == "stopped by callback" and 10 <= res.n_iters < 200
    assert seen[-1] == res.n_iters == res.history["t"][-1]


def test_non_finite_iterates_stop_the_run():
    with np.errstate(over="ignore", invalid="ignore"):
        res = li.sgd(lambda x, rng: -1e300 * x, np.ones(2), lr=1e10, n_iters=50)
    assert "non-finite" in res.message


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(lr=-0.1), ValueError, "lr"),
    (dict(lr=lambda t: -1.0), ValueError, "lr"),
    (dict(x0=np.ones((2, 2, 2))), ValueError, "x0"),
    (dict(x0=[1.0, np.nan]), ValueError, "x0"),
    (dict(x0=[]), ValueError, "x0"),
    (dict(n_iters=0), ValueError, "n_iters"),
    (dict(n_log=1), ValueError, "n_log"),
    (dict(quantiles=(0.5, 1.5)), ValueError, "quantiles"),
    (dict(stoch_grad=None), TypeError, "stoch_grad"),
    (dict(stoch_grad=lambda x, rng: np.zeros(7)), ValueError, "stoch_grad returned shape"),
    (dict(prox="soft"), TypeError, "prox"),
    (dict(rng="seed"), TypeError, "rng"),
    (dict(callback=3), TypeError, "callback"),
])
def test_bad_input_gives_clear_errors(kwargs, error, match):
    args = dict(stoch_grad=li.l1_norm_problem(2).stoch_grad, x0=np.ones(2), lr=0.1, n_iters=5)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        li.sgd(args.pop("stoch_grad"), args.pop("x0"), **args)


def test_problem_errors():
    with pytest.raises(ValueError, match="dim"):
        li.l1_norm_problem(0)
    with pytest.raises(ValueError, match="lam"):
        li.composite_problem(lam=-1.0)
    with pytest.raises(ValueError, match="noise"):
        li.l1_norm_problem(noise="levy")


# --- the stochastic claims, at reduced size, on seeds the chapter does not use --------------------

def claim_slopes(seed, n_replicas=300, horizons=(100, 300, 1000, 3000)):
    """Slopes of the mean and 95th percentile of the last-iterate gap (Lipschitz, then composite)."""
    rng = np.random.default_rng(seed)
    p = li.l1_norm_problem(5)
    mean, q95 = [], []
    for T in horizons:
        res = li.sgd(p.stoch_grad, np.ones((n_replicas, 5)), lr=li.step_size("constant", n_iters=T),
                     n_iters=T, f=p.f, n_log=2, rng=rng)
        mean.append(res.history["f"][-1])
        q95.append(res.history["f_q95"][-1])
    c = li.composite_problem(5)
    res = li.sgd(c.stoch_grad, np.ones((n_replicas, 5)), lr=li.step_size("strongly_convex", mu=1.0),
                 n_iters=horizons[-1], f=c.f, prox=c.info["prox"], n_log=20, rng=rng)
    h = res.history
    keep = h["t"] >= horizons[0]
    return (li.loglog_slope(horizons, mean), li.loglog_slope(horizons, q95),
            li.loglog_slope(h["t"][keep], h["f"][keep]), li.loglog_slope(h["t"][keep], h["f_q95"][keep]))


@pytest.mark.parametrize("seed", CLAIM_SEEDS)
def test_last_iterate_rates_hold_in_mean_and_in_the_95th_percentile(seed):
    lip_mean, lip_q95, sc_mean, sc_q95 = claim_slopes(seed)
    assert -0.6 <= lip_mean <= -0.4 and -0.6 <= lip_q95 <= -0.4
    assert -1.15 <= sc_mean <= -0.85 and -1.15 <= sc_q95 <= -0.85


def test_heavy_tails_blow_up_the_quantiles():
    rng = np.random.default_rng(7100)
    q95 = {}
    for name, noise in (("gauss", gaussian(1.0)), ("t1.5", student_t(1.5))):
        p = li.l1_norm_problem(5, noise=noise)
        res = li.sgd(p.stoch_grad, np.ones((300, 5)), lr=li.step_size("constant", n_iters=1000), n_iters=1000,
                     f=p.f, n_log=2, rng=rng)
        q95[name] = res.history["f_q95"][-1]
    assert q95["t1.5"] > 10 * q95["gauss"]


def test_prox_last_iterate_is_sparse_but_the_average_is_not():
    c = li.composite_problem(5)
    res = li.sgd(c.stoch_grad, np.ones((200, 5)), lr=li.step_size("strongly_convex", mu=1.0), n_iters=500,
                 f=c.f, prox=c.info["prox"], rng=7200)
    assert res.history["sparsity"][-1] > 0.5 and res.history["sparsity_avg"][-1] < 0.05
