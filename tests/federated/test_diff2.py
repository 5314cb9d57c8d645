"""Tests of optlab.federated.diff2, cheapest first: oracles, the mechanism, the accounting against Opacus, the
API contract, bad input, Flower parity (marked ``flower``) and the chapter's claim on other seeds and wrong variants."""
import math
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from optlab import privacy
from optlab.claims import ClaimFailed
from optlab.federated import core
from optlab.federated import diff2 as D
from optlab.testing import check_bad_inputs, check_grad, check_method_contract

ROOT = Path(__file__).resolve().parents[2]

CHAPTER = ROOT / "chapters" / "federated" / "diff2.ipynb"
# Seeds of the claim re-runs here; the chapter uses seeds 1-5 at n = 20000.
CLAIM_SEEDS = list(range(7001, 7016))  # a median over seeds: 15 of them, as in the chapter
N_DATA = 20_000                   # the chapter's data size, delta = 1/n^2
DELTA = 1.0 / N_DATA ** 2


@pytest.fixture(scope="module")
def small():
    return D.logistic_data(n_clients=3, n_per_client=40, dim=4, rng=0)


# --- oracles ---------------------------------------------------------------------------------------

def test_the_logistic_oracles(small):
    data, o = small
    x = np.array([0.5, -1.0, 2.0, 0.1])
    assert check_grad(o["f"], o["grad"], x) < 1e-7
    g = o["sample_grads"](np.tile(x, (3, 1)), data)
    assert g.shape == (3, 40, 4)
    np.testing.assert_allclose(g.reshape(-1, 4).mean(axis=0), o["grad"](x), rtol=1e-12, atol=1e-15)
    # per-sample gradients are the gradients of the per-sample losses
    one = {"A": data["A"][:1, :1], "y": data["y"][:1, :1]}
    per_sample = lambda z: D.logistic_sample_grads(z[None], one)[0, 0]  # noqa: E731
    assert check_grad(lambda z: D.logistic_loss(z, one), per_sample, x) < 1e-7


def test_the_per_sample_smoothness_bound(small):
    """||grad l(x; z) - grad l(y; z)|| <= L ||x - y||: the clipping radius C_2 ||x - y|| with C_2 = L clips nothing."""
    data, o = small
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((2, 3, 4)) * 2
    diff = np.linalg.norm(o["sample_grads"](X, data) - o["sample_grads"](Y, data), axis=-1)
    assert np.all(diff <= o["L"] * np.linalg.norm(X - Y, axis=-1)[:, None] + 1e-12)


# --- the mechanism -----------------------------------------------------------------------------------

def test_clip_scales_long_rows_only():
    g = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    out = D.clip(g, np.array([1.0, 1.0, 1.0]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]])
    np.testing.assert_allclose(D.clip(g, np.zeros(3)), 0.0)      # radius 0 (no move): nothing released
    G = np.random.default_rng(0).standard_normal((3, 6, 2)) * 2
    radius = np.array([0.5, 1.0, 0.0])
    np.testing.assert_allclose(D.privatize(G, radius, 0.0, np.arange(3), 0, 0), D.clip(G, radius[:, None]).mean(1),
                               rtol=1e-12, atol=1e-15)           # the release without noise: the mean of clipped rows


def test_the_release_has_the_stated_noise_scale():
    """privatize adds N(0, (2 sigma C / m)^2): the replace-one sensitivity 2C/m times the multiplier."""
    k, m, d = 400, 10, 50
    g = np.zeros((k, m, d))
    out = D.privatize(g, np.full(k, 0.5), 3.0, np.arange(k), 0, 11)
    assert np.std(out) == pytest.approx(2 * 3.0 * 0.5 / m, rel=0.01)
    one = D.privatize(g[5:6], np.full(1, 0.5), 3.0, np.array([5]), 0, 11)
    np.testing.assert_array_equal(one[0], out[5])                 # seeded by (seed, round, client)


def test_the_replace_one_sensitivity_of_a_clipped_mean():
    """Replacing one sample moves the mean of clipped vectors by at most 2C/m, and that bound is attained."""
    rng = np.random.default_rng(2)
    m, C = 7, 0.8
    g = rng.standard_normal((1, m, 3)) * 5
    worst = 0.0
    for _ in range(200):
        h = g.copy()
        h[0, 0] = -D.clip(g[:, :1], np.array([C]))[0, 0] * rng.uniform(1, 9)   # opposite direction, long
        move = np.linalg.norm(D.clip(g, np.array([C])).mean(1) - D.clip(h, np.array([C])).mean(1))
        worst = max(worst, move)
    assert worst == pytest.approx(2 * C / m, rel=1e-12)


def test_without_noise_diff2_telescopes_to_gradient_descent(small):
    """sigma = 0 and C_2 = L: every v_r is exactly grad f(x_{r-1}), so DIFF2 is plain GD (up to rounding)."""
    data, o = small
    client = partial(D.diff2_client, sample_grads=o["sample_grads"], clip1=100.0, clip2=o["L"], sigma1=0.0,
                     sigma2=0.0)
    agg = partial(D.dp_aggregate, lr=0.5, restart_every=4)
    state0 = {"x": np.zeros(4), "x_prev": np.zeros(4), "v": np.zeros(4), "restart": np.array([1.0])}
    res = core.run_rounds(client, agg, state0, data, n_rounds=9, client_view=D.client_view, rng=0)
    x = np.zeros(4)
    for _ in range(9):
        x_prev, x = x, x - 0.5 * o["grad"](x)
    np.testing.assert_allclose(res.x["x"], x, rtol=1e-12)
    np.testing.assert_allclose(res.x["v"], o["grad"](x_prev), rtol=1e-10)
    assert res.n_evals == {"grad": 3 * 40 * (3 + 2 * 6)}          # 3 restarts, 6 difference rounds


def test_a_fixed_radius_adds_noise_every_round_a_moving_radius_does_not(small):
    data, o = small
    res = D.diff2(o["sample_grads"], data, np.zeros(4), lr=1.0, clip1=1.0, clip2=o["L"], epsilon=1.0, delta=1e-5,
                  n_rounds=6, restart_every=3, rng=0)
    assert res.x["restart"][0] == 1.0 and res.ledger.rounds == 6
    assert list(res.sigmas[[0, 3]]) == [res.sigmas[0]] * 2 and res.sigmas[1] > res.sigmas[0]   # share 1/2 over 2 vs 4


# --- privacy accounting: ours, and against Opacus -------------------------------------------------------

@pytest.mark.parametrize("epsilon", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("restart_every", [1, 10, 30])
def test_the_noise_spends_exactly_the_budget(epsilon, restart_every):
    sigmas = D.noise_multipliers(epsilon, DELTA, 30, restart_every)
    rho = D.spent_rho(sigmas)
    assert rho == pytest.approx(privacy.zcdp_rho(epsilon, DELTA), rel=1e-12)
    assert privacy.zcdp_epsilon(rho, DELTA) <= epsilon + 1e-9
    n1 = len(range(0, 30, restart_every))
    assert sum(1 / (2 * s ** 2) for s in sigmas[::restart_every]) == pytest.approx(rho if n1 == 30 else rho / 2)


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 2.0])
def test_opacus_rdp_accountant_agrees_on_the_chapters_settings(epsilon):
    """Opacus's RDP of the Gaussian mechanism (sampling rate 1) composed over DIFF2's rounds is our curve alpha*rho;
    its epsilon (a grid of orders) matches the tight zCDP conversion within 1%, and is never below it."""
    rdp = pytest.importorskip("opacus.accountants.analysis.rdp")
    for restart_every in (1, 30):                                  # DP-GD, and DIFF2 as the chapter runs it
        sigmas = D.noise_multipliers(epsilon, DELTA, 30, restart_every)
        orders = np.linspace(1.01, 2000.0, 100_000)
        kinds, counts = np.unique(sigmas, return_counts=True)
        curve = sum(rdp.compute_rdp(q=1.0, noise_multiplier=float(s), steps=int(c), orders=orders)
                    for s, c in zip(kinds, counts))
        np.testing.assert_allclose(curve, D.rdp_curve(orders, sigmas), rtol=1e-10)
        eps_opacus, _ = rdp.get_privacy_spent(orders=orders, rdp=curve, delta=DELTA)
        ours = privacy.zcdp_epsilon(D.spent_rho(sigmas), DELTA)
        assert ours == pytest.approx(eps_opacus, rel=0.01) and ours <= eps_opacus * (1 + 1e-9) and ours <= epsilon


def test_the_adjacency_changes_the_accounting_by_a_factor_four():
    """Opacus states noise per add/remove sensitivity C (of a sum); with replace-one the sensitivity is 2C.  Feeding
    Opacus the add/remove multiplier std/C of our noise would state a rho four times too small."""
    rdp = pytest.importorskip("opacus.accountants.analysis.rdp")
    m, C, sigma = 5000, 1.0, D.noise_multipliers(1.0, DELTA, 30, 1)[0]
    std_of_sum = m * 2 * sigma * C / m                             # our noise on the sum of clipped gradients
    orders = np.array([2.0, 8.0, 32.0])
    replace_one = rdp.compute_rdp(q=1.0, noise_multiplier=std_of_sum / (2 * C), steps=30, orders=orders)
    add_remove = rdp.compute_rdp(q=1.0, noise_multiplier=std_of_sum / C, steps=30, orders=orders)
    np.testing.assert_allclose(replace_one, D.rdp_curve(orders, np.full(30, sigma)), rtol=1e-12)
    np.testing.assert_allclose(replace_one / add_remove, 4.0, rtol=1e-12)


# --- the API contract ------------------------------------------------------------------------------------

START = np.zeros(4)


def run(rng=0, x0=START, callback=None, method="diff2"):
    data, o = D.logistic_data(n_clients=3, n_per_client=40, dim=4, rng=0)
    kw = dict(lr=1.0, epsilon=1.0, delta=1e-5, n_rounds=6, f=o["f"], grad=o["grad"], rng=rng, callback=callback)
    if method == "diff2":
        return D.diff2(o["sample_grads"], data, x0, clip1=1.0, clip2=o["L"], restart_every=3, **kw)
    return D.dp_gd(o["sample_grads"], data, x0, clip_radius=1.0, **kw)


@pytest.mark.parametrize("method", ["diff2", "dp_gd"])
def test_core_contract(method):
    res = check_method_contract(partial(run, method=method))
    assert res.method == method and set(res.x) == {"x", "x_prev", "v", "restart"}
    assert res.grad_norm2.shape == (7,) and res.estimator_error.shape == (6,)
    assert {"sigmas", "rho", "ledger", "seed"} <= set(res.extras)
    data, o = D.logistic_data(n_clients=3, n_per_client=40, dim=4, rng=0)
    assert res.f == pytest.approx(o["f"](res.x["x"])) and res.history["f"][0] == pytest.approx(np.log(2))


def test_communication_is_counted():
    res = run()
    assert res.ledger.numbers_up == 6 * 3 * 4 and res.ledger.numbers_down == 6 * 3 * (4 + 4 + 1)
    assert res.n_evals == {"grad": 3 * 40 * (2 + 2 * 4)}


BAD_INPUT = {
    "diff2": (lambda **kw: D.diff2(**kw), dict(sample_grads=D.logistic_sample_grads,
                                               data=D.logistic_data(2, 5, 3, rng=0)[0], x0=np.zeros(3), lr=1.0,
                                               clip1=1.0, clip2=0.45, epsilon=1.0, delta=1e-5, n_rounds=3,
                                               restart_every=2, restart_share=0.5, rng=0),
              {"lr": [0.0, -1.0], "clip1": [0.0], "clip2": [-1.0], "epsilon": [0.0], "delta": [1.0, 0.0],
               "n_rounds": [0, 2.5], "restart_every": [0], "restart_share": [0.0, 1.5, (1.0, "restart_share")],
               "x0": [[np.nan, 0.0, 0.0], np.zeros((2, 3))], "sample_grads": [None], "rng": [-1]}),
    "dp_gd": (lambda **kw: D.dp_gd(**kw), dict(sample_grads=D.logistic_sample_grads,
                                               data=D.logistic_data(2, 5, 3, rng=0)[0], x0=np.zeros(3), lr=1.0,
                                               clip_radius=1.0, epsilon=1.0, delta=1e-5, n_rounds=3, rng=0),
              {"clip_radius": [0.0, np.inf], "epsilon": [-1.0], "n_rounds": [0], "grad": [3], "f": ["loss"]}),
    "noise_multipliers": (lambda **kw: D.noise_multipliers(**kw),
                          dict(epsilon=1.0, delta=1e-5, n_rounds=10, restart_every=5, restart_share=0.5),
                          {"epsilon": [0.0], "delta": [2.0], "n_rounds": [0], "restart_every": [0, 1.5],
                           "restart_share": [0.0, 1.0]}),
    "spent_rho": (lambda **kw: D.spent_rho(**kw), dict(sigmas=[1.0, np.inf]),
                  {"sigmas": [[], [0.0], [-1.0], [np.nan]]}),
    "logistic_data": (lambda **kw: D.logistic_data(**kw), dict(n_clients=2, n_per_client=5, dim=3, lam=0.1, rng=0),
                      {"n_clients": [0], "n_per_client": [0], "dim": [0], "lam": [-0.1], "rng": [-1]}),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=("data",) if "data" in good else ()) > 0


# --- the same iterates on Flower's simulation engine ------------------------------------------------------

@pytest.mark.flower
def test_diff2_on_flower_gives_the_round_loops_iterates():
    pytest.importorskip("flwr")
    flower = pytest.importorskip("optlab.federated.flower")
    data, o = D.logistic_data(n_clients=3, n_per_client=30, dim=4, rng=0)
    sigmas = D.noise_multipliers(1.0, 1e-5, 4, 3)
    client = partial(D.diff2_client, sample_grads=o["sample_grads"], clip1=1.0, clip2=o["L"],
                     sigma1=float(sigmas[0]), sigma2=float(sigmas[1]))
    agg = partial(D.dp_aggregate, lr=1.0, restart_every=3)        # rounds 0 and 3 restart, 1 and 2 differences
    state0 = {"x": np.zeros(4), "x_prev": np.zeros(4), "v": np.zeros(4), "restart": np.array([1.0])}
    loss = lambda s: o["f"](s["x"])  # noqa: E731
    ours = core.run_rounds(client, agg, state0, data, n_rounds=4, client_view=D.client_view, f=loss, rng=5)
    theirs = flower.run_flower(client, agg, state0, data, n_rounds=4, client_view=D.client_view, f=loss, rng=5)
    for key in ("x", "x_prev", "v"):
        np.testing.assert_allclose(theirs["state"][key], ours.x[key], rtol=1e-12, atol=0)
    np.testing.assert_allclose(theirs["f"], ours.history["f"][1:], rtol=1e-12, atol=0)
    assert not np.allclose(ours.x["x"], 0)


# --- the chapter's claim: other seeds and sizes, and wrong variants that must fail it -------------------------

def fixed_radius(clip2, x, x_prev):
    """A wrong radius: the difference rounds clip at the restart radius 1 (a fixed C), not C_2 ||x_{r-1} - x_{r-2}||."""
    return np.ones(len(x))


def estimator_not_accumulated(v, message, restart):
    """A wrong estimator: v_r = the difference alone, dropping v_{r-1}."""
    return message


MODULE = "optlab.federated.diff2"
WRONG_VARIANTS = {
    "a fixed clipping radius in the difference rounds": {f"{MODULE}.diff_radius": fixed_radius},
    "the estimator not accumulated (v_r = d_r)": {f"{MODULE}.accumulate": estimator_not_accumulated},
}


def run_claim(*args, **kwargs):
    """tools/claims.py's run_claim, imported here so that the Flower environment (no nbformat) can collect the file."""
    sys.path.insert(0, str(ROOT / "tools"))
    from claims import run_claim as run

    return run(*args, **kwargs)


@pytest.mark.slow
def test_the_claim_holds_on_seeds_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS)
    assert verdict.passed and verdict.status == "holds"
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.slow
@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=CLAIM_SEEDS, patches=WRONG_VARIANTS[variant])


def test_dp_gd_is_diff2_restarting_every_round(small):
    data, o = small
    kw = dict(lr=1.0, epsilon=1.0, delta=1e-5, n_rounds=5, grad=o["grad"], rng=3)
    a = D.dp_gd(o["sample_grads"], data, np.zeros(4), clip_radius=1.0, **kw)
    b = D.diff2(o["sample_grads"], data, np.zeros(4), clip1=1.0, clip2=o["L"], restart_every=1, **kw)
    np.testing.assert_array_equal(a.x["x"], b.x["x"])
    assert math.isclose(a.rho, b.rho)
