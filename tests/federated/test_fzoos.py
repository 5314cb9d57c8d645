"""Tests of optlab.federated.fzoos and .objectives, cheapest first; the claim on other seeds and wrong variants."""
import sys
from pathlib import Path

import numpy as np
import pytest

from optlab.claims import ClaimFailed
from optlab.federated import fzoos as fz
from optlab.federated import objectives as ob
from optlab.testing import check_bad_inputs, check_grad, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "federated" / "fzoos.ipynb"
X0 = np.full(4, 0.1)  # the start of the contract runs
# Seeds of the claim re-runs here; the chapter uses seeds 1-3.
CLAIM_SEEDS = [7001, 7002, 7003]


def one_client(clients, i):
    """Client i's objective and gradient at one point, for check_grad."""
    data = {k: v[i:i + 1] for k, v in clients.data.items()}
    return (lambda x: float(clients.f(data, x[None, None])[0, 0]),
            lambda x: clients.grad(data, x[None, None])[0, 0])


# --- the objectives ----------------------------------------------------------------------------

def test_client_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    for cl in (ob.quadratic_clients(4, 6, 0.5, rng=1), ob.ackley_clients(4, 6, 0.5, rng=1)):
        for i in range(4):
            f, g = one_client(cl, i)
            assert check_grad(f, g, rng.uniform(0.2, 0.8, 6)) < 1e-6, cl.name
        X = rng.uniform(0, 1, (5, 6))
        G, gradF = cl.gradF(X), (lambda x, cl=cl: cl.gradF(x[None])[0])
        for j in range(5):
            assert check_grad(cl.F, gradF, X[j]) < 1e-6
            assert G[j].shape == (6,)


def test_quadratic_family_is_the_official_one():
    d, n = 10, 5
    cl = ob.quadratic_clients(n, d, 0.5, rng=3)
    np.testing.assert_allclose(cl.data["c"].mean(0), 1.0)  # Dirichlet splits average to 1 over clients
    np.testing.assert_allclose(cl.data["c1"].mean(0), 1.0)
    assert cl.F(np.full(d, 0.475)) == pytest.approx(0.1 * (1 / d - 0.25))
    np.testing.assert_allclose(cl.gradF(np.full(d, 0.475)), 0.0, atol=1e-12)
    assert np.all(cl.data["c"] > 0)  # each f_i is a convex quadratic with its own minimizer


def test_f1_black_box_against_scikit_learn():
    from sklearn.metrics import f1_score

    cl = ob.f1_clients(4, 6, n_samples=400, alpha=0.5, rng=2)
    W = np.random.default_rng(0).standard_normal((4, 3, 6))
    values = cl.f(cl.data, W)
    for i in range(4):
        mask = cl.data["mask"][i]
        A, y = cl.data["A"][i][mask], cl.data["pos"][i][mask]
        for j in range(3):
            assert values[i, j] == pytest.approx(1 - f1_score(y, A @ W[i, j] > 0, zero_division=0.0))
    np.testing.assert_array_equal(cl.weights, cl.data["mask"].sum(1))
    assert cl.grad is None


# --- random features, the surrogate, the estimator ---------------------------------------------

def test_rff_kernel_and_gradient():
    from sklearn.metrics.pairwise import rbf_kernel

    X = np.random.default_rng(1).uniform(0, 1, (20, 3))
    feats = fz.rff_features(0, 20_000, 3, lengthscale=0.5)
    Phi = fz.rff_map(X, feats)
    np.testing.assert_allclose(Phi @ Phi.T, rbf_kernel(X, gamma=1 / (2 * 0.5**2)), atol=0.03)
    feats = fz.rff_features(0, 50, 3, lengthscale=0.5)
    nu = np.random.default_rng(2).standard_normal((1, 50))
    f = lambda x: float(fz.rff_map(x, feats) @ nu[0])  # noqa: E731
    assert check_grad(f, lambda x: fz.rff_grad(nu, x[None, None], feats)[0, 0], X[0]) < 1e-7
    assert np.array_equal(fz.rff_features(5, 10, 3, 0.3)[0], fz.rff_features(5, 10, 3, 0.3)[0]), "shared"


def test_surrogate_is_ridge_regression_on_the_nearest_queries():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    feats = fz.rff_features(1, 40, 2, 0.3)
    X = rng.uniform(0, 1, (2, 30, 2))
    y = np.sin(3 * X[..., 0]) + X[..., 1] ** 2
    hist = {"X": X, "y": y, "Phi": fz.rff_map(X, feats)}
    x = np.array([[0.5, 0.5], [0.2, 0.9]])
    nu = fz.fit_surrogate(hist, x, n_near=12, ridge=1e-3)
    for i in range(2):
        near = np.argsort(np.sum((X[i] - x[i]) ** 2, 1), kind="stable")[:12]
        yi = y[i, near]
        scale = np.ptp(yi)
        ref = Ridge(alpha=1e-3, fit_intercept=False).fit(hist["Phi"][i, near], (yi - yi.mean()) / scale)
        np.testing.assert_allclose(nu[i], scale * ref.coef_, rtol=1e-6, atol=1e-9)


def test_surrogate_gradient_of_a_quadratic_is_accurate_near_its_data():
    cl = ob.quadratic_clients(3, 4, 0.5, rng=0)
    feats = fz.rff_features(0, 300, 4, 0.3)
    x = np.full((3, 4), 0.4)
    X = x[:, None] + np.random.default_rng(0).uniform(-0.05, 0.05, (3, 60, 4))
    hist = {"X": X, "y": cl.f(cl.data, X), "Phi": fz.rff_map(X, feats)}
    g = fz.rff_grad(fz.fit_surrogate(hist, x, n_near=60), x[:, None], feats)[:, 0]
    assert np.all(fz.cosine(g, cl.grad(cl.data, x[:, None])[:, 0]) > 0.98)


def test_rgf_is_exact_on_linear_functions_with_a_full_basis_and_unbiased_otherwise():
    a = np.array([1.0, -2.0, 0.5, 3.0])
    f = lambda data, X: X @ a  # noqa: E731
    U = np.eye(4)[None, None]
    g, n = fz.rgf(f, None, np.zeros((1, 1, 4)), U, 0.1)
    np.testing.assert_allclose(g[0, 0], a)
    assert n == 5
    U = fz._directions(np.random.default_rng(0), (1, 20_000, 4), 2)
    np.testing.assert_allclose(np.einsum("kmqd,kmpd->kmqp", U, U)[0, 0], np.eye(2), atol=1e-12)
    g, n = fz.rgf(f, None, np.zeros((1, 20_000, 4)), U, 0.1)
    np.testing.assert_allclose(g[0].mean(0), a, atol=0.06)
    assert n == 20_000 * 3


# --- clients, server, loop ---------------------------------------------------------------------

def test_a_batch_of_clients_equals_one_client_at_a_time():
    cl = ob.quadratic_clients(3, 4, 0.5, rng=0)
    feats = fz.rff_features(0, 40, 4, 0.3)
    X0 = np.random.default_rng(0).uniform(0, 0.1, (3, 10, 4))
    hist = {"X": X0, "y": cl.f(cl.data, X0), "Phi": fz.rff_map(X0, feats)}
    view = {"x": np.zeros(4), "nu": np.zeros(40)}
    kw = dict(f=cl.f, lr=0.01, local_steps=3, n_explore=2, radius=0.01, features=feats, n_near=20, ridge=1e-6)
    msgs, _, n, _ = fz.fzoos_client(view, cl.data, hist, np.arange(3), 4, 9, **kw)
    assert n == 3 * 3 * 3
    for i in range(3):
        one = fz.fzoos_client(view, {k: v[[i]] for k, v in cl.data.items()}, {k: v[[i]] for k, v in hist.items()},
                              np.array([i]), 4, 9, **kw)[0]
        np.testing.assert_allclose(one["x"][0], msgs["x"][i], rtol=1e-12)
        np.testing.assert_allclose(one["nu"][0], msgs["nu"][i], rtol=1e-9, atol=1e-12)
    kw = dict(f=cl.f, lr=0.01, local_steps=3, n_dirs=2, mu=0.01)
    msgs, _, n, _ = fz.fedzo_client(view, cl.data, None, np.arange(3), 4, 9, **kw)
    one = fz.fedzo_client(view, {k: v[[2]] for k, v in cl.data.items()}, None, np.array([2]), 4, 9, **kw)[0]
    np.testing.assert_allclose(one["x"][0], msgs["x"][2], rtol=1e-12)
    assert n == 3 * 3 * 3


def test_server_accepts_only_a_decrease():
    cl = ob.quadratic_clients(3, 4, 0.5, rng=0)
    x = np.zeros(4)
    good = np.tile(np.full(4, 0.475), (3, 1))
    x1, f1, acc, n = fz.server_step(cl, x, cl.F(x), good)
    assert acc and n == 3 and np.allclose(x1, 0.475) and f1 == pytest.approx(cl.F(x1))
    x2, f2, acc, _ = fz.server_step(cl, x1, f1, np.zeros((3, 4)))
    assert not acc and np.array_equal(x2, x1) and f2 == f1


def test_every_query_and_every_number_is_counted():
    N, d, K, E, q, M, n0, R = 3, 4, 3, 2, 2, 30, 5, 4
    cl = ob.quadratic_clients(N, d, 0.5, rng=0)
    res = fz.fzoos(cl, n_rounds=R, local_steps=K, n_explore=E, n_init=n0, n_features=M, rng=0)
    per_round = N * K * (1 + E) + N  # the clients' queries and the server's accept/reject test
    assert res.n_evals == {"f": N * n0 + N + R * per_round}
    np.testing.assert_array_equal(np.diff(res.history["n_evals"]), per_round)
    led = res.ledger
    assert led.rounds == R and led.numbers_up == N * M + N + R * (N * (d + M) + N)
    assert led.numbers_down == R * N * (d + M + d) and led.bytes_up == 8 * led.numbers_up
    res = fz.fedzo(cl, n_rounds=R, local_steps=K, n_dirs=q, rng=0)
    assert res.n_evals == {"f": N + R * (N * K * (q + 1) + N)}
    assert res.ledger.numbers_up == N + R * (N * d + N) and res.ledger.numbers_down == R * N * 2 * d
    capped = fz.fedzo(cl, n_rounds=50, local_steps=K, n_dirs=q, max_queries=100, rng=0)
    assert capped.message == "reached max_queries=100" and capped.n_evals["f"] - 100 < N * K * (q + 1) + N


def test_diagnostics_shapes_and_the_correction_at_the_first_local_step():
    cl = ob.quadratic_clients(3, 4, 0.5, rng=0)
    res = fz.fzoos(cl, n_rounds=2, local_steps=3, n_features=60, rng=0)
    assert res.cos_global.shape == res.cos_local.shape == (2, 3, 3) and res.x_local.shape == (2, 3, 3, 4)
    assert res.nu.shape == (60,) and np.all(np.abs(res.cos_global) <= 1 + 1e-12)
    # gamma_0 = 1: the first local direction is the global surrogate gradient, the same for every client
    feats = fz.rff_features(res.extras.get("seed", 0), 60, 4, 0.3)
    assert feats[0].shape == (60, 4)
    assert np.all(np.ptp(res.x_local[:, :, 0], axis=1) == 0), "all clients start a round at x_r"


def test_fzoos_and_fedzo_decrease_the_quadratic_and_fzoos_is_query_efficient():
    cl = ob.quadratic_clients(5, 10, 0.5, rng=0)
    a = fz.fzoos(cl, n_rounds=8, max_queries=2000, rng=0)
    b = fz.fedzo(cl, n_rounds=8, max_queries=2000, rng=0)
    at = lambda r: r.history["f"][r.history["n_evals"] <= 2000][-1]  # noqa: E731
    assert at(a) < 0.0 < 0.05 < at(b) < b.history["f"][0]
    assert np.median(a.cos_local) > 0.95 > 0.8 > np.median(b.cos_local)


@pytest.mark.parametrize("method", ["fzoos", "fedzo"])
def test_contract(method):
    cl = ob.quadratic_clients(3, 4, 0.5, rng=0)
    fn = getattr(fz, method)
    small = dict(n_rounds=2, local_steps=2) | (dict(n_dirs=2) if method == "fedzo" else dict(n_features=30))

    def run(rng=0, callback=None, x0=X0):
        return fn(cl, x0, rng=rng, callback=callback, **small)

    res = check_method_contract(run)
    assert res.method == method and "bytes_up" in res.history.columns


# --- bad input ---------------------------------------------------------------------------------

CL = ob.quadratic_clients(3, 4, 0.5, rng=0)
BAD_INPUT = {
    "fzoos": (fz.fzoos, dict(clients=CL, x0=np.zeros(4), n_rounds=1, local_steps=1, n_features=20, rng=0),
              {"clients": [None], "x0": [np.zeros(3), [np.nan, 0, 0, 0]], "n_rounds": [0, 1.5], "local_steps": [0],
               "lr": [0.0, -1.0], "n_explore": [-1], "radius": [0.0], "n_init": [0], "n_features": [0],
               "lengthscale": [0.0], "n_near": [0], "ridge": [0.0], "max_queries": [0], "rng": [-1],
               "callback": [3], "correction": [None]}, ("clients",)),
    "fedzo": (fz.fedzo, dict(clients=CL, x0=np.zeros(4), n_rounds=1, local_steps=1, n_dirs=2, rng=0),
              {"n_dirs": [0, 4, 2.5], "mu": [0.0, np.nan], "lr": [-0.1], "n_rounds": [0], "rng": ["seed"]},
              ("clients",)),
    "quadratic_clients": (ob.quadratic_clients, dict(n_clients=3, dim=4, div=0.5, rng=0),
                          {"n_clients": [0], "dim": [0], "div": [-0.1, 3.0], "rng": [-1]}, ()),
    "ackley_clients": (ob.ackley_clients, dict(n_clients=3, dim=4, div=0.5, rng=0),
                       {"n_clients": [0], "dim": [0], "div": [-0.1], "rng": [-1]}, ()),
    "f1_clients": (ob.f1_clients, dict(n_clients=3, dim=4, n_samples=200, alpha=0.5, rng=0),
                   {"n_clients": [0], "dim": [1], "n_samples": [5], "alpha": [0.0], "rng": [-1]}, ()),
    "rff_features": (fz.rff_features, dict(seed=0, n_features=5, dim=2, lengthscale=0.3),
                     {"seed": [-1], "n_features": [0], "dim": [0], "lengthscale": [0.0, -1.0]}, ()),
    "rgf_cosines": (fz.rgf_cosines, dict(clients=CL, X=np.zeros((3, 2, 4)), n_dirs=2, rng=0),
                    {"n_dirs": [0, 4]}, ("clients", "X", "mu")),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


# --- the claim: wrong variants fail it, other seeds pass it -----------------------------------

def _no_correction(*args, **kwargs):
    return ORIG_CLIENT(*args, **{**kwargs, "correction": False})


def _official_fd_grad(nu, X, features):
    """The official code's surrogate gradient: a forward difference of step 1e-20, zero in float64."""
    eps = 1e-20
    base = fz.rff_map(X, features) @ nu[:, :, None]
    steps = [(fz.rff_map(X + eps * e, features) @ nu[:, :, None] - base) / eps for e in np.eye(X.shape[-1])]
    return np.concatenate(steps, -1)


def _server_uncounted(clients, x, f_x, x_local):
    out = ORIG_SERVER(clients, x, f_x, x_local)
    return out[:3] + (0,)


ORIG_CLIENT, ORIG_SERVER = fz.fzoos_client, fz.server_step
WRONG_VARIANTS = {
    "no adaptive gradient correction (gamma_t = 0)": {"optlab.federated.fzoos.fzoos_client": _no_correction},
    "surrogate gradients by a forward difference of step 1e-20 (the official code's default)":
        {"optlab.federated.fzoos.rff_grad": _official_fd_grad},
    "the server's accept/reject queries left uncounted (as in the official code)":
        {"optlab.federated.fzoos.server_step": _server_uncounted},
}


def test_wrong_variant_helpers_do_what_they_say():
    feats = fz.rff_features(0, 10, 3, 0.3)
    assert np.all(_official_fd_grad(np.ones((2, 10)), np.full((2, 1, 3), 0.5), feats) == 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("name", WRONG_VARIANTS)
def test_claim_rejects_wrong_variant(name):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=CLAIM_SEEDS[:2], patches=WRONG_VARIANTS[name])


@pytest.mark.slow
def test_claim_holds_on_other_seeds():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS)
    assert verdict.passed
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.slow
def test_claim_holds_with_more_heterogeneous_clients():
    run_claim(CHAPTER, seeds=CLAIM_SEEDS[:2], sizes={"DIV": 0.9})
