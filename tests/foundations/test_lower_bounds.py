"""Tests of optlab.foundations.zero_chain (the hard instances) and optlab.foundations.lower_bounds (the driver),
cheapest first; the chapter's claim on other seeds and wrong variants."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import minimize

from optlab.claims import ClaimFailed
from optlab.foundations import lower_bounds as lb
from optlab.foundations import zero_chain as zc
from optlab.testing import check_bad_inputs, check_grad, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "foundations" / "lower_bounds.ipynb"
# Seeds and sizes of the claim re-runs here; the chapter uses seeds 1-3, 100 replicas, eps 0.2 to 0.1, q 0.02 to 0.005.
CLAIM_SEEDS = [7001, 7002]
FAST = {"N_REPLICAS": 60, "EPSILONS_CLAIM": [0.25, 0.18, 0.12, 0.09], "QS": [0.015, 0.006]}
RNG = np.random.default_rng(20240)


# --- the one-dimensional pieces ----------------------------------------------------------------

def test_psi_phi_and_their_derivatives():
    t = np.linspace(-3.0, 3.0, 601)
    assert np.all(zc.psi(t[t <= 0.5]) == 0.0) and np.all(zc.dpsi(t[t <= 0.5]) == 0.0), "the gate is closed exactly"
    assert float(zc.psi(1.0)) == 1.0 and np.all(zc.psi(t) < math.e) and np.all(np.diff(zc.psi(t)) >= 0)
    h = 1e-6
    for fn, dfn in ((zc.psi, zc.dpsi), (zc.phi, zc.dphi)):
        s = t[np.abs(t - 0.5) > 0.05]
        np.testing.assert_allclose((fn(s + h) - fn(s - h)) / (2 * h), dfn(s), rtol=1e-6, atol=1e-8)
    for s in (-2.0, 0.0, 0.7, 3.0):  # Phi against scipy's quadrature of its definition
        integral = math.sqrt(math.e) * quad(lambda u: math.exp(-u * u / 2), -np.inf, s)[0]
        assert float(zc.phi(s)) == pytest.approx(integral, rel=1e-10)
    np.testing.assert_allclose(zc.phi(t) + zc.phi(-t), math.sqrt(2 * math.pi * math.e))
    assert np.all(zc.dphi(t[np.abs(t) < 1]) > 1.0), "Phi' > 1 on (-1, 1): the large-gradient lemma uses it"


# --- the chain: oracles, identities and the constants of Carmon et al. ---------------------------

@pytest.mark.parametrize("T", [1, 2, 5, 20])
def test_chain_gradient_against_finite_differences(T):
    for _ in range(5):
        x = RNG.uniform(-2.5, 2.5, T)
        assert check_grad(zc.chain_f, zc.chain_grad, x) < 1e-7


def test_chain_gradient_against_torch_autograd():
    torch = pytest.importorskip("torch")

    def psi(t):
        on = t > 0.5
        z = torch.where(on, 2 * t - 1, torch.ones_like(t))
        return torch.where(on, torch.exp(1 - 1 / z ** 2), torch.zeros_like(t))

    def chain(x):
        prev = torch.cat([torch.ones(1, dtype=x.dtype), x[:-1]])
        c = math.sqrt(2 * math.pi * math.e)
        return torch.sum(psi(-prev) * c * torch.special.ndtr(-x) - psi(prev) * c * torch.special.ndtr(x))

    for _ in range(5):
        x = torch.tensor(RNG.uniform(-2.0, 2.0, 12), requires_grad=True)
        chain(x).backward()
        np.testing.assert_allclose(zc.chain_grad(x.detach().numpy()), x.grad.numpy(), rtol=1e-12, atol=1e-12)
        assert float(zc.chain_f(x.detach().numpy())) == pytest.approx(chain(x).item(), rel=1e-12)


def test_chain_is_rowwise():
    X = RNG.uniform(-2, 2, (6, 8))
    np.testing.assert_allclose(zc.chain_f(X), [zc.chain_f(x) for x in X])
    np.testing.assert_allclose(zc.chain_grad(X), np.array([zc.chain_grad(x) for x in X]))


def test_zero_chain_property():
    """If x_j = 0 for j > i, the gradient vanishes beyond i + 1, and at i + 1 unless |x_i| > 1/2."""
    T = 10
    for i in range(T):
        X = np.zeros((200, T))
        X[:, :i] = RNG.uniform(-3, 3, (200, i))
        G = zc.chain_grad(X)
        assert np.all(G[:, i + 1:] == 0.0)
        if i >= 1:  # the next link shows only through an open gate (|x_i| > 1/2; Psi underflows just above 1/2)
            assert not np.any((G[:, i] != 0) & (np.abs(X[:, i - 1]) <= 0.5))
            assert np.all(G[np.abs(X[:, i - 1]) > 0.55, i] != 0)
    assert zc.progress(zc.chain_grad(np.zeros(T))) == 1, "from 0 the oracle shows the first link only"


def test_large_gradient_while_the_last_coordinate_is_small():
    T = 8
    X = RNG.uniform(-3, 3, (20_000, T))
    X[:, -1] = RNG.uniform(-1, 1, 20_000)
    assert np.linalg.norm(zc.chain_grad(X), axis=1).min() > 1.0
    # and the smallest gradient norm over x_T = 0, found by scipy's L-BFGS from random starts, is above 1
    for start in RNG.uniform(-2, 2, (10, T - 1)):
        def sq(y):
            x = np.append(y, 0.0)
            g = zc.chain_grad(x)
            H = np.array([(zc.chain_grad(x + 1e-6 * e) - zc.chain_grad(x - 1e-6 * e)) / 2e-6 for e in np.eye(T)])
            return g @ g, (2 * H @ g)[:-1]
        res = minimize(sq, start, jac=True, method="L-BFGS-B")
        assert math.sqrt(res.fun) > 1.0


def test_gap_and_smoothness_constants():
    """f(0) - f(x) <= 12 T, and the Hessian's norm stays below l_1 = 152 (checked on samples)."""
    for T in (1, 3, 10):
        X = RNG.uniform(-1, 8, (5000, T))
        assert float(zc.chain_f(np.zeros(T))) - zc.chain_f(X).min() <= 12 * T
    T, worst = 6, 0.0
    for x in RNG.uniform(-2.5, 2.5, (300, T)):
        H = np.array([(zc.chain_grad(x + 1e-6 * e) - zc.chain_grad(x - 1e-6 * e)) / 2e-6 for e in np.eye(T)])
        worst = max(worst, np.abs(np.linalg.eigvalsh((H + H.T) / 2)).max())
    assert 1.0 < worst <= zc.ELL1


# --- the scaled instance ------------------------------------------------------------------------

def test_chain_length_and_scaling():
    assert [zc.chain_length(e) for e in (0.2, 0.14, 0.1, 0.07, 0.05)] == [12, 25, 50, 102, 200]
    assert zc.chain_length(0.1, L=1.0, delta=1.0) == 0  # the unit class: no chain at all
    p = zc.hard_instance(0.1)
    assert p.dim == 50 and p.L == zc.ELL1
    assert p.info["lam"] == pytest.approx(0.2) and p.info["scale"] == pytest.approx(0.04)
    x = RNG.uniform(-0.5, 0.5, 50)
    assert check_grad(p.f, p.grad, x) < 1e-7
    assert float(p.f(x)) == pytest.approx(0.04 * float(zc.chain_f(x / 0.2)))
    assert 12 * p.info["T"] * p.info["scale"] <= p.info["delta"] * (1 + 1e-12), "the gap bound fits the budget Delta"
    X = RNG.uniform(-1, 1, (2000, 50))
    X[:, -1] *= 0.2 * 0.999                     # |x_T| < lambda
    assert np.linalg.norm(p.grad(X), axis=1).min() > 2 * 0.1


def test_rotated_instance():
    p = zc.hard_instance(0.2, dim=40, rng=3)
    U = p.info["U"]
    assert U.shape == (40, 12) and np.allclose(U.T @ U, np.eye(12))
    z = RNG.uniform(-2, 2, 12)
    x = p.info["lam"] * U @ z
    np.testing.assert_allclose(zc.chain_coordinates(p, x), z)
    np.testing.assert_allclose(zc.chain_coordinates(p, p.grad(x), gradient=True), zc.chain_grad(z), atol=1e-12)
    assert check_grad(p.f, p.grad, x, n_dirs=10, rng=0) < 1e-7


def test_gd_on_the_instance_is_gd_on_the_chain_in_chain_units():
    p = zc.hard_instance(0.14)
    a = lb.chain_methods(p)["gd"](p.grad, p.x0, 300)
    y = np.zeros(p.dim)
    for _ in range(300):
        y = y - zc.chain_grad(y) / zc.ELL1
    np.testing.assert_allclose(zc.chain_coordinates(p, a.x), y, rtol=1e-10, atol=1e-12)


# --- the driver ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gd", "heavy ball", "nesterov", "adam"])
def test_discovery_one_link_per_query_and_the_lower_bound(name):
    for eps in (0.2, 0.1):
        p = zc.hard_instance(eps)
        res = lb.discovery(lb.chain_methods(p)[name], p, eps=eps, max_queries=20_000)
        h = res.history
        known, reached = h["known"], h["reached"]
        assert res.converged and res.max_new == 1 and res.queries_to_eps >= res.T + 1
        assert np.all(np.diff(known) >= 0) and np.all(np.diff(known) <= 1) and known[0] == 1
        assert np.all(known <= np.arange(1, len(known) + 1)), "k queries reveal at most k links"
        assert np.all(reached[1:] <= known[:-1]), "zero-respecting: a query stays within what is known"
        assert h["grad_norm"][-1] <= eps < h["grad_norm"][:-1].min()
        assert res.n_evals == {"grad": len(h)} == {"grad": res.queries_to_eps} and res.T == p.info["T"]
        assert res.f == pytest.approx(float(p.f(res.x)))


def test_scipy_lbfgs_needs_and_nearly_attains_T_plus_1_queries():
    """A trusted library's span method is no exception; it comes within a few queries of the bound."""
    for eps in (0.2, 0.1, 0.07):
        p = zc.hard_instance(eps)

        def lbfgs(grad, x0, n_iters, p=p):
            return minimize(lambda x: (p.f(x), grad(x)), x0, jac=True, method="L-BFGS-B",
                            options={"maxiter": n_iters, "maxfun": n_iters, "gtol": 0.0, "ftol": 0.0})

        res = lb.discovery(lbfgs, p, eps=eps, max_queries=5000)
        assert res.max_new == 1 and res.T + 1 <= res.queries_to_eps <= res.T + 10


def test_the_rotation_changes_nothing_for_gradient_descent():
    plain, rot = zc.hard_instance(0.14), zc.hard_instance(0.14, dim=100, rng=5)
    a = lb.discovery(lb.chain_methods(plain)["gd"], plain, eps=0.14, max_queries=5000, tol=1e-9)
    b = lb.discovery(lb.chain_methods(rot)["gd"], rot, eps=0.14, max_queries=5000, tol=1e-9)
    assert a.queries_to_eps == b.queries_to_eps and b.max_new == 1
    np.testing.assert_array_equal(a.history["known"], b.history["known"])


def test_driver_stops_at_the_budget_and_accepts_a_start():
    p = zc.hard_instance(0.1)
    res = lb.discovery(lb.chain_methods(p)["gd"], p, eps=0.1, max_queries=30)
    assert not res.converged and res.queries_to_eps is None and res.n_iters == 30 and len(res.history) == 30
    start = np.full(p.dim, 20 * p.info["lam"])  # far past every gate: nearly stationary
    res = lb.discovery(lb.chain_methods(p)["gd"], p, eps=0.1, max_queries=100, x0=start)
    assert res.converged and res.queries_to_eps == 1, "the bound is for methods started at 0"


START, START_SGD = np.zeros(12), np.zeros((5, 4))


def test_contracts():
    p = zc.hard_instance(0.2)

    def run(rng=0, callback=None, x0=START):
        return lb.discovery(lb.chain_methods(p)["nesterov"], p, eps=0.2, max_queries=500, x0=x0, rng=rng,
                            callback=callback)

    check_method_contract(run, stochastic=False)
    s = zc.stochastic_chain(4, 0.3)

    def run_sgd(rng=0, callback=None, x0=START_SGD):
        return lb.chain_sgd(s.stoch_grad, x0, lr=1 / zc.ELL1, n_iters=3000, target=4, rng=rng, callback=callback)

    res = check_method_contract(run_sgd)
    assert res.converged and np.all(res.queries_to_target >= 4) and res.history["done"][-1] == 1.0


# --- the stochastic chain -----------------------------------------------------------------------

def test_stochastic_chain_is_unbiased_with_the_stated_variance():
    T, q, R = 6, 0.2, 200_000
    s = zc.stochastic_chain(T, q)
    x = np.array([1.5, 0.9, 0.7, 0.1, 0.0, 0.0])    # prog_{1/4} = 3: the mask acts on coordinate 4 onwards
    G = s.stoch_grad(np.tile(x, (R, 1)), np.random.default_rng(1))
    g = zc.chain_grad(x)
    assert g[3] != 0 and np.all(g[4:] == 0)
    np.testing.assert_array_equal(G[:, :3], np.tile(g[:3], (R, 1)))
    np.testing.assert_allclose(G.mean(axis=0), g, atol=4 * abs(g[3]) * math.sqrt((1 - q) / q / R))
    assert G[:, 3].var() == pytest.approx((1 - q) / q * g[3] ** 2, rel=0.02)
    assert set(np.unique(G[:, 3] / g[3]).round(12)) == {0.0, 1 / q}


def test_chain_sgd_with_q_1_is_gradient_descent_and_small_q_costs_T_over_q():
    T = 6
    det = lb.chain_sgd(zc.stochastic_chain(T, 1.0).stoch_grad, np.zeros((3, T)), lr=1 / zc.ELL1, n_iters=5000,
                       target=T, rng=0)
    y, k = np.zeros(T), 0
    while zc.progress(y) < T:
        y, k = y - zc.chain_grad(y) / zc.ELL1, k + 1
    assert det.queries_to_target.tolist() == [k] * 3
    q = 0.01
    sto = lb.chain_sgd(zc.stochastic_chain(T, q).stoch_grad, np.zeros((400, T)), lr=1 / zc.ELL1, n_iters=20_000,
                       target=T, rng=1)
    assert sto.converged and sto.queries_to_target.mean() * q / T == pytest.approx(1.0, abs=0.12)


# --- bad input ----------------------------------------------------------------------------------

P = zc.hard_instance(0.2)
S = zc.stochastic_chain(4, 0.5)
GD = lb.chain_methods(P)["gd"]
BAD_INPUT = {
    **{fn.__name__: (fn, dict(t=np.array([0.2, 0.9])), {"t": ["abc", [1.0, "x"]]}, ()) for fn in
       (zc.psi, zc.dpsi, zc.phi, zc.dphi)},
    **{fn.__name__: (fn, dict(x=np.zeros(3)), {"x": [np.zeros((2, 2, 2)), [np.nan], [], "abc"]}, ()) for fn in
       (zc.chain_f, zc.chain_grad)},
    "chain_length": (zc.chain_length, dict(eps=0.1), {"eps": [0.0, -1.0, np.nan], "L": [0.0], "delta": [-1.0]}, ()),
    "hard_instance": (zc.hard_instance, dict(eps=0.2, dim=20, rng=0),
                      {"eps": [0.0, 2.0, np.inf], "dim": [5, 2.5], "L": [-1.0], "delta": [0.0], "rng": [-1]}, ()),
    "chain_coordinates": (zc.chain_coordinates, dict(problem=P, x=np.zeros(12), gradient=True),
                          {"problem": [S], "x": [np.zeros(5), "abc"], "gradient": [1]}, ()),
    "progress": (zc.progress, dict(z=np.zeros(3), tol=0.0), {"z": [np.zeros((1, 1, 1)), [np.nan]], "tol": [-1.0]}, ()),
    "adam_lr": (lb.adam_lr, dict(problem=P, rate=0.1), {"problem": [S], "rate": [0.0, -1.0]}, ()),
    "chain_methods": (lb.chain_methods, dict(problem=P), {"problem": [S]}, ()),
    "discovery": (lb.discovery, dict(method=GD, problem=P, eps=0.2, max_queries=20, tol=0.0, x0=np.zeros(12), rng=0),
                  {"method": [3], "problem": [S], "eps": [0.0, -0.1], "max_queries": [0, 2.5], "tol": [-1.0],
                   "x0": [np.zeros(5), [np.nan] * 12], "rng": ["seed"], "callback": [3]}, ()),
    "stochastic_chain": (zc.stochastic_chain, dict(T=4, q=0.5), {"T": [0, 2.5], "q": [0.0, 1.5, np.nan]}, ()),
    "chain_sgd": (lb.chain_sgd, dict(stoch_grad=S.stoch_grad, x0=np.zeros((2, 4)), lr=0.01, n_iters=5, target=4, rng=0),
                  {"stoch_grad": [3, (lambda x, rng: np.zeros(3), "stoch_grad returned shape")],
                   "x0": [np.zeros(4), [[np.nan] * 4]], "lr": [0.0, -1.0], "n_iters": [0], "target": [0, 5],
                   "rng": [-1], "callback": [3]}, ()),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


def test_every_public_function_has_a_bad_input_row():
    public = {name for mod in (lb, zc) for name in mod.__all__ if callable(getattr(mod, name))}
    assert public <= set(BAD_INPUT), public - set(BAD_INPUT)


# --- the chapter's claim: other seeds and sizes, and wrong variants that must fail it ------------

PSI, DPSI, LENGTH, STOCHASTIC = zc.psi, zc.dpsi, zc.chain_length, zc.stochastic_chain


def psi_without_cutoff(t):
    """The formula exp(1 - 1/(2t - 1)^2) used for every t: Psi(0) = 1, so every link is visible at once."""
    t = np.asarray(t, dtype=float)
    with np.errstate(divide="ignore"):
        return np.exp(1 - 1 / (2 * t - 1) ** 2)


def dpsi_without_cutoff(t):
    t = np.asarray(t, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(psi_without_cutoff(t) * 4 / (2 * t - 1) ** 3)


def length_without_the_factor_4(eps, **kwargs):
    """T(eps) = Delta L / (12 l_1 eps^2): the lambda^2 = 4 eps^2 l_1^2 / L^2 of the scaling forgotten."""
    return 4 * LENGTH(eps, **kwargs)


def mask_not_divided_by_q(T, q):
    """A stochastic chain whose frontier coordinate is multiplied by xi instead of xi/q (biased)."""
    p = STOCHASTIC(T, q)

    def stoch_grad(x, rng):
        g = zc.chain_grad(x)
        beyond = np.arange(T) >= np.asarray(zc.progress(x, 0.25))[..., None]
        xi = rng.random(np.shape(x)[:-1] + (1,)) < q
        return np.where(beyond, g * xi, g)

    p.stoch_grad = stoch_grad
    return p


MODULE = "optlab.foundations.zero_chain"
WRONG_VARIANTS = {
    "Psi without its cutoff at 1/2": {f"{MODULE}.psi": psi_without_cutoff, f"{MODULE}.dpsi": dpsi_without_cutoff},
    "the chain anchored at x_0 = 0 instead of 1": {f"{MODULE}.ANCHOR": 0.0},
    "T(eps) without the factor 4 of lambda^2 (a chain too long for the budget Delta)":
        {f"{MODULE}.chain_length": length_without_the_factor_4},
    "the Bernoulli mask not divided by q (a biased stochastic gradient)":
        {f"{MODULE}.stochastic_chain": mask_not_divided_by_q},
}


def test_wrong_variants_are_wrong():
    """Cheap checks that each patch really breaks what its description says."""
    assert psi_without_cutoff(0.0) == 1.0 and dpsi_without_cutoff(0.5) == 0.0
    assert length_without_the_factor_4(0.1) == 200
    g = mask_not_divided_by_q(3, 0.25).stoch_grad(np.zeros((1000, 3)), np.random.default_rng(0))
    assert set(np.unique(g[:, 0] / zc.chain_grad(np.zeros(3))[0])) == {0.0, 1.0}


@pytest.mark.slow
def test_the_claim_holds_on_seeds_and_sizes_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS, sizes=FAST)
    assert verdict.passed and verdict.status == "holds in part"
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.slow
@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=CLAIM_SEEDS[:1], sizes=FAST, patches=WRONG_VARIANTS[variant])
