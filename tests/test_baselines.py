"""Unit tests of optlab.baselines: rates, the API contract, bad input."""
import numpy as np
import pytest

from optlab import problems
from optlab.baselines import gradient_descent, nesterov


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gd_linear_rate_bound_holds(seed):
    p = problems.quadratic(dim=15, cond=50.0, rng=seed)
    L, mu = p.info["L"], p.info["mu"]
    r = gradient_descent(p.f, p.grad, p.x0, lr=1 / L, n_iters=2000)
    bound = (1 - mu / L) ** r.history["t"] * p.gap(p.x0)
    assert np.all(r.history["f"] - p.f_star <= bound * (1 + 1e-9) + 1e-14)
    assert np.allclose(r.x, p.x_star, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_nesterov_beats_gd_on_ill_conditioned_quadratic(seed):
    p = problems.quadratic(dim=15, cond=400.0, rng=seed)
    L, mu = p.info["L"], p.info["mu"]
    gd = gradient_descent(p.f, p.grad, p.x0, lr=1 / L, n_iters=300)
    nag = nesterov(p.f, p.grad, p.x0, lr=1 / L, mu=mu, n_iters=300)
    assert p.gap(nag.x) < 1e-3 * p.gap(gd.x)


def test_nesterov_convex_mode_matches_scipy_optimum():
    from scipy.optimize import minimize

    p = problems.least_squares(n=60, dim=8, rng=0)
    r = nesterov(p.f, p.grad, p.x0, lr=1 / p.info["L"], n_iters=3000)
    ref = minimize(p.f, p.x0, jac=p.grad, method="BFGS", options={"gtol": 1e-10})
    assert r.f == pytest.approx(ref.fun, abs=1e-8)


def test_projection_and_tolerance():
    proj = lambda x: np.clip(x, 0.5, None)
    r = gradient_descent(lambda x: float(x @ x), lambda x: 2 * x, [2.0, 3.0], lr=0.1, n_iters=500,
                         project=proj, tol=None)
    assert np.allclose(r.x, 0.5)
    r2 = gradient_descent(lambda x: float(x @ x), lambda x: 2 * x, [2.0, 3.0], lr=0.1, n_iters=500, tol=1e-6)
    assert r2.converged and r2.n_iters < 500 and "tol" in r2.message


def test_contract_x0_not_mutated_and_deterministic():
    p = problems.quadratic(dim=5, rng=0)
    x0 = p.x0.copy()
    a = gradient_descent(p.f, p.grad, x0, lr=0.01, n_iters=10, rng=1)
    b = gradient_descent(p.f, p.grad, x0, lr=0.01, n_iters=10, rng=2)
    assert np.array_equal(x0, p.x0)
    assert np.array_equal(a.history["f"], b.history["f"])
    assert a.method == "gd" and a.params["lr"] == 0.01 and a.n_evals == {"grad": 10}
    assert len(a.history) == 11 and a.message == "reached n_iters=10"


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": -1.0}, "lr"), ({"lr": 0.1, "n_iters": -1}, "n_iters"), ({"lr": 0.1, "tol": -1.0}, "tol"),
    ({"lr": 0.1, "project": 3}, "project"),
])
def test_gd_bad_input(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        gradient_descent(lambda x: 0.0, lambda x: x, [1.0], **kwargs)


def test_nesterov_bad_input():
    with pytest.raises(ValueError, match="lr"):
        nesterov(None, lambda x: x, [1.0], lr=lambda t: 0.1)
    with pytest.raises(ValueError, match="mu"):
        nesterov(None, lambda x: x, [1.0], lr=1.0, mu=2.0)
    with pytest.raises(ValueError, match="x0 must be finite"):
        nesterov(None, lambda x: x, [np.inf], lr=1.0)
