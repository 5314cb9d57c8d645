"""Tests of optlab.foundations.schedule_refinement and its runs (schedule_refinement_sgd), cheapest first; the
chapter's claim on other seeds and variants."""
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import median_filter
from scipy.optimize import minimize, minimize_scalar

from optlab.claims import ClaimFailed
from optlab.foundations import schedule_refinement as sr
from optlab.foundations import schedule_refinement_sgd as srs
from optlab.schedules import constant, cosine, inverse_sqrt, linear_decay
from optlab.testing import check_bad_inputs, check_grad, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "foundations" / "schedule_refinement.ipynb"
# Seeds and sizes of the claim re-runs here; the chapter uses seeds 1-3, horizons 100 and 300, 20 replicas.
CLAIM_SEEDS = [7001, 7002, 7003]
OTHER_SIZES = {"HORIZONS": [150, 400], "T_PROFILE": 300, "N_REPLICAS": 12}


def bound_by_definition(eta, G, D):
    """B(eta) written term by term with Python loops, straight from the chapter's equation."""
    T = len(eta)
    S = [sum(eta[k:]) for k in range(T)]
    V = [sum(eta[t] ** 2 * G[t] ** 2 for t in range(k, T)) for k in range(T)]
    return (D ** 2 + V[0]) / (2 * S[0]) + 0.5 * sum(eta[k] * V[k] / (S[k] * S[k + 1]) for k in range(T - 1))


# --- oracle checks -----------------------------------------------------------------------------

def test_bound_matches_its_definition_and_its_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    for T in (2, 3, 17):
        eta, G, D = rng.random(T) + 0.05, rng.random(T) + 0.5, 1.0 + rng.random()
        assert sr.last_iterate_bound(eta, G, D) == pytest.approx(bound_by_definition(eta, G, D), rel=1e-12)
        f = lambda e, G=G, D=D: sr.last_iterate_bound(e, G, D)  # noqa: E731
        assert check_grad(f, lambda e, G=G, D=D: sr.last_iterate_bound(e, G, D, gradient=True), eta) < 1e-7


def test_a_number_of_grad_norms_means_constant_norms():
    eta = np.linspace(1.0, 0.1, 10)
    assert sr.last_iterate_bound(eta, 2.0, 3.0) == pytest.approx(sr.last_iterate_bound(eta, np.full(10, 2.0), 3.0))


# The official code's closed form (facebookresearch/adaptive_scheduling, find_schedule.py,
# find_closed_form_schedule with its default weights G^-2), run on this non-constant profile: golden values.
OFFICIAL_G = [1.0, 1.5207354924039485, 1.654648713412841, 1.3705600040299337, 1.021598752346036,
              1.0205378626684307, 1.4602922509005372, 2.0284932993593947, 2.294679123311691, 2.106059242620878,
              1.7279894445553152, 1.6000048967246483]
OFFICIAL_SCHEDULE = [13.059137575651388, 5.1682006251673585, 4.023988735269421, 5.139535608963555,
                     6.90008506150373, 4.554361543741782, 1.6613979541094117, 0.7098070119275773,
                     0.4623487463523626, 0.41874886711435894, 0.33490206814966456, 0.0]


def test_refinement_matches_the_official_closed_form_on_a_non_constant_profile():
    official = np.array(OFFICIAL_SCHEDULE)
    ours = sr.refine(OFFICIAL_G)
    np.testing.assert_allclose(ours, official / official.max(), rtol=1e-12, atol=1e-15)
    assert ours[-1] == 0.0 and ours.argmax() == 0
    # the official code divides w_t * sum_{p>t} w_p by the last weight w_{T-1}; ours by the total (or the peak)
    w = np.array(OFFICIAL_G) ** -2.0
    np.testing.assert_allclose(sr.weights_to_steps(w) * w.sum() / w[-1], official, rtol=1e-12)
    assert not np.allclose(sr.refine(np.array(OFFICIAL_G) ** 0.5), ours, atol=1e-3), "the exponent matters here"


def test_the_optimizer_reaches_the_official_optimum_and_agrees_with_scipy_numerical_gradients():
    # B at the official find_schedule's solution (T = 100, G = D = 1), computed from its returned schedule
    assert sr.optimal_schedule(1.0, n_steps=100).f == pytest.approx(0.20011435821119195, abs=1e-10)
    G = 1.0 + np.linspace(0.0, 1.0, 15) ** 2
    ours = sr.optimal_schedule(G)
    fd = minimize(lambda e: sr.last_iterate_bound(e, G), np.full(15, 0.25), method="L-BFGS-B",
                  bounds=[(1e-8, None)] * 15, options={"ftol": 1e-14, "gtol": 1e-10, "maxfun": 100000})
    assert ours.f <= fd.fun + 1e-9 and ours.converged
    np.testing.assert_allclose(ours.x, fd.x, rtol=2e-3)


def test_best_scale_agrees_with_a_scalar_minimization():
    rng = np.random.default_rng(1)
    eta, G = rng.random(30) + 0.1, rng.random(30) + 0.3
    value, scale = sr.bound_at_best_scale(eta, G, D=2.0)
    res = minimize_scalar(lambda c: sr.last_iterate_bound(c * eta, G, 2.0), bounds=(1e-4, 100), method="bounded",
                          options={"xatol": 1e-10})
    assert value == pytest.approx(res.fun, rel=1e-9) and scale == pytest.approx(res.x, rel=1e-4)
    assert sr.last_iterate_bound(scale * eta, G, 2.0) == pytest.approx(value, rel=1e-12)


def test_the_median_filter_against_a_window_by_window_median():
    rng = np.random.default_rng(2)
    g = np.exp(rng.standard_normal(50))
    out = sr.smooth_grad_norms(g, tau=0.1)  # width 5: 2 entries on each side
    padded = np.concatenate([[g[0], g[0]], g, g[-2:-4:-1]])  # nearest at the start, reflection at the end
    np.testing.assert_allclose(out, [np.median(padded[i:i + 5]) for i in range(50)])
    np.testing.assert_array_equal(sr.smooth_grad_norms(g, tau=0.0), g)
    assert np.array_equal(out[2:-2], median_filter(g, size=5)[2:-2])


# --- exact identities --------------------------------------------------------------------------

def test_constant_norms_refine_to_linear_decay_with_a_zero_last_step():
    for T, c in ((2, 1.0), (5, 0.3), (1000, 7.0)):
        s = sr.refine(np.full(T, c))
        assert s[-1] == 0.0 and s[0] == 1.0
        np.testing.assert_allclose(s, 1 - np.arange(T) / (T - 1), atol=1e-12)
    assert sr.weights_to_steps(np.ones(4)).tolist() == [0.75, 0.5, 0.25, 0.0]


def test_refinement_bound_identities():
    T, G, D = 400, 3.0, 2.0
    assert sr.refinement_bound(np.ones(T), G, D) == pytest.approx(D * G / np.sqrt(T))  # linear decay: DG/sqrt(T)
    rng = np.random.default_rng(3)
    Gt = np.exp(rng.standard_normal(T))
    best = sr.refinement_bound(Gt ** -2.0, Gt, D)
    assert best == pytest.approx(D / np.sqrt(np.sum(Gt ** -2.0)))
    for _ in range(20):  # Cauchy-Schwarz: no other weights do better
        assert sr.refinement_bound(Gt ** -2.0 * np.exp(0.3 * rng.standard_normal(T)), Gt, D) >= best


def test_the_conversion_theorem_holds_on_random_piecewise_linear_problems():
    """SGD with eta_t = gamma w_t W_{t+1}/W_0 satisfies f(x_{T-1}) - f(u) <= (|x0-u|^2/gamma + gamma sum w^2 G^2)/(2W0)
    for every u, and B(eta) bounds f(x_{T-1}) - f(u) for every positive schedule: both, deterministically."""
    rng = np.random.default_rng(4)
    worst_refined, worst_chained = np.inf, np.inf
    for _ in range(300):
        d, T, m = rng.integers(1, 4), rng.integers(2, 30), rng.integers(1, 6)
        A, b = rng.standard_normal((m, d)), rng.standard_normal(m)
        f = lambda x, A=A, b=b: np.max(A @ x + b)  # noqa: E731
        x0, u = 3 * rng.standard_normal(d), rng.standard_normal(d)
        for kind in ("refined", "chained"):
            w = rng.random(T) + 0.01
            gamma = rng.random() * 2
            eta = gamma * sr.weights_to_steps(w) if kind == "refined" else w * gamma
            x, norms = x0.copy(), []
            for t in range(T):
                g = A[np.argmax(A @ x + b)]
                norms.append(np.linalg.norm(g))
                x_last, x = x, x - eta[t] * g
            D = np.linalg.norm(x0 - u)
            gap = f(x_last) - f(u)
            if kind == "refined":
                bound = (D ** 2 / gamma + gamma * np.sum(w ** 2 * np.square(norms))) / (2 * w.sum())
                worst_refined = min(worst_refined, bound - gap)
            else:
                worst_chained = min(worst_chained, sr.last_iterate_bound(eta, norms, D) - gap)
    assert worst_refined >= -1e-9 and worst_chained >= -1e-9


def test_schedule_values_and_tabulated():
    np.testing.assert_allclose(srs.schedule_values(linear_decay(1.0, 4), 4), [1.0, 0.75, 0.5, 0.25])
    s = srs.tabulated(np.array([0.5, 0.25, 0.0]))
    assert [s(t) for t in (0, 1, 2, 5)] == [0.5, 0.25, 0.0, 0.0] and s == srs.tabulated([0.5, 0.25, 0.0])


def test_linear_decay_beats_the_other_schedules_on_the_bound_at_their_best_scales():
    T = 100
    values = {name: sr.bound_at_best_scale(srs.schedule_values(s, T))[0]
              for name, s in {"constant": constant(1.0), "1/sqrt(t)": inverse_sqrt(1.0), "cosine": cosine(1.0, T),
                              "linear": linear_decay(1.0, T)}.items()}
    assert [round(values[k], 4) for k in ("constant", "1/sqrt(t)", "cosine", "linear")] == [0.2485, 0.2253, 0.2091,
                                                                                          0.2036]


# --- sgd and the two-stage recipe --------------------------------------------------------------

def quadratic_oracle(X, rng):
    return X + 0.1 * rng.standard_normal(X.shape)


def test_sgd_is_the_plain_loop_and_records_every_norm():
    rng = np.random.default_rng(5)
    noise = rng.standard_normal((6, 2))
    it = iter(noise)
    res = srs.sgd(lambda X, r: X + next(it), np.ones(2), lr=linear_decay(0.5, 6), n_iters=6)
    x, norms = np.ones(2), []
    for t in range(6):
        g = x + noise[t]
        norms.append(np.linalg.norm(g))
        x = x - 0.5 * (1 - t / 6) * g
    np.testing.assert_allclose(res.x, x) and np.testing.assert_allclose(res.grad_norms, norms)
    assert res.n_evals == {"stoch_grad": 6} and res.grad_norms.shape == (6,)


def test_sgd_replicas_history_and_divergence():
    res = srs.sgd(quadratic_oracle, np.ones((5, 3)), lr=0.1, n_iters=50, f=lambda X: 0.5 * np.sum(X ** 2, axis=-1),
                 n_log=5, rng=0)
    assert res.grad_norms.shape == (5, 50) and res.x.shape == (5, 3)
    assert set(res.history.columns) >= {"t", "lr", "f", "grad_norm", "n_evals"} and res.history["t"][-1] == 50
    assert np.isnan(res.history["lr"][0]) and res.f == pytest.approx(res.history["f"][-1])
    with np.errstate(over="ignore", invalid="ignore"):
        bad = srs.sgd(lambda X, r: 1e300 * X, np.ones(2), lr=1e10, n_iters=20)
    assert "non-finite" in bad.message and bad.grad_norms.shape == (bad.n_iters,)


def test_two_stage_refines_from_the_first_run_and_warms_up_on_decreasing_norms():
    # f = |x|^2/2 from far away: the gradient norms fall, so the refined schedule warms up
    res = sr.two_stage(quadratic_oracle, np.full((4, 2), 5.0), lr=0.5, n_iters=200, tau=0.1, rng=1)
    first = res.first
    assert first.params["lr"] == linear_decay(0.5, 200) and res.n_evals == {"stoch_grad": 400}
    np.testing.assert_allclose(res.smoothed, sr.smooth_grad_norms(first.grad_norms.mean(axis=0), 0.1))
    np.testing.assert_allclose(res.schedule, 0.5 * sr.refine(res.smoothed))
    assert res.schedule[-1] == 0.0 and res.schedule.max() == pytest.approx(0.5) and res.schedule.argmax() > 10
    np.testing.assert_allclose(res.history["lr"][1:], [res.schedule[t - 1] for t in res.history["t"][1:]])


START, START_SCHEDULE = np.ones((3, 2)), np.full(20, 0.2)


def run_sgd(rng=0, x0=START, callback=None):
    return srs.sgd(quadratic_oracle, x0, lr=0.1, n_iters=30, rng=rng, callback=callback)


def run_two_stage(rng=0, x0=START, callback=None):
    return sr.two_stage(quadratic_oracle, x0, lr=0.2, n_iters=30, rng=rng, callback=callback)


def run_optimal(rng=0, x0=START_SCHEDULE, callback=None):
    return sr.optimal_schedule(np.linspace(2.0, 1.0, 20), x0=x0, rng=rng, callback=callback)


@pytest.mark.parametrize("run", [run_sgd, run_two_stage])
def test_core_contract(run):
    check_method_contract(run)


def test_core_contract_of_the_schedule_optimizer():
    check_method_contract(run_optimal, stochastic=False)  # given a start, deterministic
    a, b = (sr.optimal_schedule(np.ones(20), rng=s) for s in (0, 1))  # random starts differ, optima agree
    assert not np.array_equal(a.history["f"], b.history["f"]) and a.f == pytest.approx(b.f, rel=1e-9)


def test_optimal_schedule_start_and_history():
    res = sr.optimal_schedule(1.0, n_steps=30)
    assert res.history["t"][0] == 0 and np.all(np.diff(res.history["f"]) <= 1e-15) and res.n_evals["bound"] >= 1
    assert res.history["f"][0] == pytest.approx(sr.last_iterate_bound(np.full(30, 30 ** -0.5)))
    again = sr.optimal_schedule(1.0, n_steps=30, x0=res.x)
    assert again.f <= res.f + 1e-12


# --- bad input ---------------------------------------------------------------------------------

ETA = np.linspace(1.0, 0.1, 6)
BAD_INPUT = {
    "last_iterate_bound": (sr.last_iterate_bound, dict(lr=ETA, grad_norms=np.ones(6), D=1.0, gradient=False),
                           {"lr": [[1.0], np.ones((2, 3)), [1.0, -0.5], [1.0, np.nan],
                                   (ETA * [1, 1, 1, 1, 1, 0], "last step is 0")],
                            "grad_norms": [np.ones(5), -1.0, np.zeros(6), 0.0], "D": [-1.0, np.inf],
                            "gradient": [1]}, ()),
    "bound_at_best_scale": (sr.bound_at_best_scale, dict(lr=ETA, grad_norms=1.0, D=1.0),
                            {"lr": [[0.0, 0.0]], "D": [0.0], "grad_norms": [np.ones(3)]}, ()),
    "optimal_schedule": (sr.optimal_schedule, dict(grad_norms=np.ones(5), max_iter=10),
                         {"grad_norms": [[1.0], [1.0, -1.0], np.ones((2, 2))], "max_iter": [0, 1.5],
                          "n_steps": [(5, "n_steps")], "x0": [np.ones(4), [1.0, np.nan, 1, 1, 1]],
                          "D": [0.0], "rng": [-1], "callback": [3]}, ()),
    "optimal_schedule/number": (sr.optimal_schedule, dict(grad_norms=1.0, n_steps=5),
                                {"n_steps": [None, 1, 2.5], "grad_norms": [0.0, -1.0]}, ()),
    "weights_to_steps": (sr.weights_to_steps, dict(weights=np.ones(3)), {"weights": [[1.0], [1.0, 0.0], [[1.0]]]}, ()),
    "refinement_bound": (sr.refinement_bound, dict(weights=np.ones(3), grad_norms=1.0, D=1.0),
                         {"weights": [[1.0, -1.0]], "grad_norms": [np.ones(2), 0.0], "D": [0.0]}, ()),
    "refine": (sr.refine, dict(grad_norms=np.ones(4)), {"grad_norms": [1.0, [1.0], [1.0, 0.0], [1.0, np.inf]]}, ()),
    "smooth_grad_norms": (sr.smooth_grad_norms, dict(grad_norms=np.ones(8), tau=0.1),
                          {"grad_norms": [np.ones((2, 4)), []], "tau": [-0.1, 1.5, np.nan]}, ()),
    "schedule_values": (srs.schedule_values, dict(schedule=constant(1.0), n_steps=3),
                        {"schedule": [(lambda t: -1.0, "schedule")], "n_steps": [0, 1.5]}, ()),
    "tabulated": (srs.tabulated, dict(values=[1.0, 0.5]), {"values": [[], [1.0, -1.0], [[1.0]]]}, ()),
    "sgd": (srs.sgd, dict(stoch_grad=quadratic_oracle, x0=np.ones((2, 2)), lr=0.1, n_iters=3,
                         f=lambda X: np.sum(X ** 2, axis=-1)),
            {"x0": [np.ones((1, 1, 1)), [np.nan, 1.0]], "lr": [-1.0, (lambda t: np.nan, "lr schedule")],
             "n_iters": [0], "n_log": [1], "f": [(lambda X: np.sum(X ** 2), "f must be row-wise")],
             "stoch_grad": [(lambda X, rng: X[:, :1], "stoch_grad returned shape")], "rng": ["seed"]}, ()),
    "two_stage": (sr.two_stage, dict(stoch_grad=quadratic_oracle, x0=np.ones(2), lr=0.1, n_iters=10),
                  {"lr": [0.0, -1.0], "n_iters": [1], "tau": [2.0], "first_lr": [-0.1, (1e300, "first_lr")]}, ()),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    with np.errstate(over="ignore", invalid="ignore"):
        assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


# --- the chapter's claim: other seeds and sizes, and wrong variants that must fail it ------------

def refine_wrong_exponent(grad_norms):
    """The refinement with weights G^-1 (the official code's choice for Adam with l1 norms) applied to SGD."""
    g = np.asarray(grad_norms, dtype=float)
    return REFINE(g ** 0.5)  # refine squares its input: (g^0.5)^-2 = g^-1


def refine_tail_includes_t(grad_norms):
    """The refinement with sum_{p >= t} instead of sum_{p > t}: an off-by-one in the tail sum."""
    w = np.asarray(grad_norms, dtype=float) ** -2.0
    steps = w * np.cumsum(w[::-1])[::-1]
    return steps / steps.max()


def no_chaining_term(eta, g2):
    """The average-iterate bound: the last iterate's chaining term dropped."""
    return 0.0, np.zeros_like(eta)


REFINE = sr.refine
MODULE = "optlab.foundations.schedule_refinement"
WRONG_VARIANTS = {
    "the average-iterate bound (the chaining term of the last iterate dropped)": {f"{MODULE}._chaining_term":
                                                                                no_chaining_term},
    "refinement weights G^-1 instead of G^-2": {f"{MODULE}.refine": refine_wrong_exponent},
    "a tail sum over p >= t instead of p > t": {f"{MODULE}.refine": refine_tail_includes_t},
}


def test_the_wrong_variants_are_wrong():
    G = np.array(OFFICIAL_G)
    assert not np.allclose(refine_wrong_exponent(G), sr.refine(G)) and refine_tail_includes_t(G)[-1] > 0
    assert no_chaining_term(ETA, ETA)[0] == 0.0


@pytest.mark.slow
def test_the_claim_holds_on_seeds_and_sizes_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS, sizes=OTHER_SIZES)
    assert verdict.passed and verdict.status == "holds in part"
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.slow
@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=CLAIM_SEEDS[:1], patches=WRONG_VARIANTS[variant])
