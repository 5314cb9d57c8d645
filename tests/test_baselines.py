"""Unit tests of optlab.baselines: rates, the API contract, bad input."""
import numpy as np
import pytest

from optlab import problems
from optlab.baselines import gradient_descent, nesterov


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gd_linear_rate_bound_holds(seed):
    p = problems.quadratic(dim=15, cond=50.0, rng=seed)
    L, mu = p.L, p.mu
    r = gradient_descent(p.f, p.grad, p.x0, lr=1 / L, n_iters=2000)
    bound = (1 - mu / L) ** r.history["t"] * p.gap(p.x0)
    assert np.all(r.history["f"] - p.f_star <= bound * (1 + 1e-9) + 1e-14)
    assert np.allclose(r.x, p.x_star, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_nesterov_beats_gd_on_ill_conditioned_quadratic(seed):
    p = problems.quadratic(dim=15, cond=400.0, rng=seed)
    L, mu = p.L, p.mu
    gd = gradient_descent(p.f, p.grad, p.x0, lr=1 / L, n_iters=300)
    nag = nesterov(p.f, p.grad, p.x0, lr=1 / L, mu=mu, n_iters=300)
    assert p.gap(nag.x) < 1e-3 * p.gap(gd.x)


def test_nesterov_convex_mode_matches_scipy_optimum():
    from scipy.optimize import minimize

    p = problems.least_squares(n=60, dim=8, rng=0)
    r = nesterov(p.f, p.grad, p.x0, lr=1 / p.L, n_iters=3000)
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
    with pytest.raises(TypeError, match="lr"):
        nesterov(None, lambda x: x, [1.0], lr=lambda t: 0.1)
    with pytest.raises(ValueError, match="mu"):
        nesterov(None, lambda x: x, [1.0], lr=1.0, mu=2.0)
    with pytest.raises(ValueError, match="x0 must be finite"):
        nesterov(None, lambda x: x, [np.inf], lr=1.0)


# --------------------------------------------------------------------------- heavy ball, Adam, the common contract

from optlab.baselines import adam, adam_state, adam_step, heavy_ball, heavy_ball_state, heavy_ball_step  # noqa: E402


def test_heavy_ball_accelerates_on_a_quadratic():
    p = problems.quadratic(dim=15, cond=400.0, rng=3)
    kappa = p.L / p.mu
    lr, beta = 4 / (np.sqrt(p.L) + np.sqrt(p.mu)) ** 2, ((np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)) ** 2
    hb = heavy_ball(p.f, p.grad, p.x0, lr=lr, beta=beta, n_iters=300)
    gd = gradient_descent(p.f, p.grad, p.x0, lr=1 / p.L, n_iters=300)
    assert p.gap(hb.x) < 1e-6 * p.gap(gd.x)


def test_step_functions_are_pure():
    x, g = np.ones(3), np.full(3, 0.5)
    state = heavy_ball_state(x)
    x1, s1 = heavy_ball_step(x, g, state, lr=0.1, beta=0.9)
    assert np.array_equal(x, np.ones(3)) and np.array_equal(state["v"], np.zeros(3))
    np.testing.assert_allclose(x1, 0.95) and np.testing.assert_allclose(s1["v"], -0.05)
    st = adam_state(x)
    x2, s2 = adam_step(x, g, st, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    np.testing.assert_allclose(x2, 0.9, atol=1e-7)  # the first Adam step moves each coordinate by lr
    assert st["k"] == 0 and s2["k"] == 1


def test_adam_matches_a_hand_written_loop():
    p = problems.quadratic(dim=6, cond=30.0, rng=1)
    res = adam(p.f, p.grad, p.x0, lr=0.05, n_iters=50)
    x, m, v = p.x0.copy(), np.zeros(6), np.zeros(6)
    for k in range(1, 51):
        g = p.grad(x)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        x = x - 0.05 * (m / (1 - 0.9 ** k)) / (np.sqrt(v / (1 - 0.999 ** k)) + 1e-8)
    np.testing.assert_allclose(res.x, x, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", [gradient_descent, heavy_ball, nesterov, adam])
def test_lr_column_is_the_step_that_reached_the_row(method):
    p = problems.quadratic(dim=4, rng=0)
    res = method(p.f, p.grad, p.x0, lr=0.01, n_iters=5)
    lr = res.history["lr"]
    assert np.isnan(lr[0]) and np.all(lr[1:] == 0.01) and len(res.history) == 6
    assert res.n_evals == {"grad": 5} and res.n_iters == 5


@pytest.mark.parametrize("method", [gradient_descent, heavy_ball, adam])
def test_a_negative_schedule_is_an_error_not_a_climb(method):
    with pytest.raises(ValueError, match="lr schedule must return finite steps >= 0, got -0.1 at step t=0"):
        method(lambda x: float(x @ x), lambda x: 2 * x, [1.0], lr=lambda t: -0.1, n_iters=10)


@pytest.mark.parametrize("method", [gradient_descent, heavy_ball, nesterov])
def test_divergence_ends_the_run_with_a_message(method):
    with np.errstate(over="ignore", invalid="ignore"):
        res = method(None, lambda x: 2 * x, [1.0, -1.0], lr=10.0 if method is not nesterov else 0.99, n_iters=5000,
                     **({"mu": 0.0} if method is nesterov else {}))
    assert "non-finite" in res.message and res.n_iters < 5000 and not np.all(np.isfinite(res.x))


@pytest.mark.parametrize("bad_grad, err, match", [
    (lambda x: np.ones(3), ValueError, r"grad returned shape \(3,\), expected \(2,\)"),
    (lambda x: "g", TypeError, "grad must return an array"),
])
def test_oracle_outputs_are_checked(bad_grad, err, match):
    for method in (gradient_descent, heavy_ball, adam):
        with pytest.raises(err, match=match):
            method(None, bad_grad, [1.0, 2.0], lr=0.1, n_iters=3)


def test_torch_adapters_match_the_numpy_loops_and_torch_adam():
    torch = pytest.importorskip("torch")
    from optlab.baselines import torch_optimizer

    p = problems.quadratic(dim=5, cond=20.0, rng=2)
    A, b = (torch.tensor(p.info[k]) for k in ("A", "b"))
    for name, numpy_run, hp in (("adam", adam, {"lr": 0.05}), ("heavy_ball", heavy_ball, {"lr": 0.02, "beta": 0.8})):
        w = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
        opt = torch_optimizer(name, [w], **hp)
        for _ in range(40):
            opt.zero_grad()
            (0.5 * w @ A @ w - b @ w).backward()
            opt.step()
        ref = numpy_run(p.f, p.grad, p.x0, n_iters=40, **hp)
        np.testing.assert_allclose(w.detach().numpy(), ref.x, rtol=1e-12, atol=1e-14)
    # against torch's own Adam (same bias correction and eps placement)
    w1 = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    w2 = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    ours, theirs = torch_optimizer("adam", [w1], lr=0.05), torch.optim.Adam([w2], lr=0.05)
    for _ in range(40):
        for w, opt in ((w1, ours), (w2, theirs)):
            opt.zero_grad()
            (0.5 * w @ A @ w - b @ w).backward()
            opt.step()
    np.testing.assert_allclose(w1.detach().numpy(), w2.detach().numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(TypeError, match="unknown hyperparameters"):
        torch_optimizer("adam", [w1], momentum=0.9)
    with pytest.raises(ValueError, match="name must be one of"):
        torch_optimizer("sgd", [w1])
