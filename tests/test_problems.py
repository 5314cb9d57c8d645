"""Tests of the problem zoo: oracles against finite differences, known solutions
against numpy and scikit-learn, vectorized evaluation, and input validation."""
from functools import cache

import numpy as np
import pytest

from optlab.problems import (
    ZOO,
    ackley,
    branin,
    digits_logistic,
    least_squares,
    logistic_regression,
    quadratic,
    rastrigin,
    rosenbrock,
    synthetic_logistic,
)

NAMES = sorted(ZOO)
LOGISTIC = [name for name in NAMES if name.endswith("logistic")]


@cache
def make(name):
    """One shared instance per zoo entry (tests must not mutate it)."""
    return ZOO[name]()


def fd_grad(f, x, eps=1e-6):
    """Central differences along each coordinate."""
    E = np.eye(x.size) * eps
    return np.array([(f(x + e) - f(x - e)) / (2 * eps) for e in E])


def rel_err(a, b):
    return np.linalg.norm(a - b) / max(1.0, np.linalg.norm(a), np.linalg.norm(b))


def sample_points(p, k, seed=0):
    """``k`` random points: uniform in the box, or around ``x_star``."""
    rng = np.random.default_rng(seed)
    if p.bounds is not None:
        lo, hi = p.bounds[:, 0], p.bounds[:, 1]
        return lo + (hi - lo) * rng.random((k, p.dim))
    return p.x_star + rng.standard_normal((k, p.dim))


# --- oracles ---------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_grad_matches_finite_differences(name):
    p = make(name)
    for x in sample_points(p, 3):
        assert rel_err(p.grad(x), fd_grad(p.f, x)) < 1e-6, name


@pytest.mark.parametrize("name", NAMES)
def test_hvp_matches_finite_differences_of_grad(name):
    p = make(name)
    if p.hvp is None:
        pytest.skip(f"{name} has no hvp")
    rng = np.random.default_rng(1)
    eps = 1e-6
    for x in sample_points(p, 3):
        v = rng.standard_normal(p.dim)
        fd = (p.grad(x + eps * v) - p.grad(x - eps * v)) / (2 * eps)
        assert rel_err(p.hvp(x, v), fd) < 1e-6, name


@pytest.mark.parametrize("name", NAMES)
def test_solution_is_consistent(name):
    p = make(name)
    assert p.x_star.shape == p.x0.shape == (p.dim,)
    assert p.f(p.x_star) == pytest.approx(p.f_star, rel=1e-12, abs=1e-12)
    assert np.linalg.norm(p.grad(p.x_star)) < 1e-8
    assert p.f(p.x0) > p.f_star
    if p.bounds is not None:
        assert p.bounds.shape == (p.dim, 2)
        assert np.all(p.bounds[:, 0] <= p.x_star) and np.all(p.x_star <= p.bounds[:, 1])
        assert np.all(p.bounds[:, 0] <= p.x0) and np.all(p.x0 <= p.bounds[:, 1])


@pytest.mark.parametrize("name", NAMES)
def test_batch_evaluation_matches_single_points(name):
    p = make(name)
    X = sample_points(p, 5, seed=2)
    fb = p.f(X)
    assert isinstance(p.f(X[0]), float)
    assert fb.shape == (5,)
    np.testing.assert_allclose(fb, [p.f(x) for x in X], rtol=1e-12, atol=1e-12)
    gb = p.grad(X)
    assert gb.shape == X.shape
    np.testing.assert_allclose(gb, [p.grad(x) for x in X], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_x0_is_a_fresh_array(name):
    p, q = ZOO[name](), ZOO[name]()
    assert p.x0 is not q.x0 and not np.shares_memory(p.x0, p.x_star)
    x0 = q.x0.copy()
    p.x0 += 1.0
    np.testing.assert_array_equal(q.x0, x0)
    np.testing.assert_array_equal(q.x_star, make(name).x_star)  # construction is deterministic


@pytest.mark.parametrize("name", [n for n in NAMES if make(n).stoch_grad is not None])
def test_stoch_grad_is_unbiased(name):
    p = make(name)
    x = sample_points(p, 1, seed=3)[0]
    rng = np.random.default_rng(0)
    g = np.mean([p.stoch_grad(x, rng, batch_size=2000) for _ in range(20)], axis=0)
    assert rel_err(g, p.grad(x)) < 0.05
    a = p.stoch_grad(x, np.random.default_rng(5), batch_size=3)
    b = p.stoch_grad(x, np.random.default_rng(5), batch_size=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (p.dim,)


@pytest.mark.parametrize("name", [n for n in NAMES if make(n).stoch_grad is not None])
def test_stochastic_oracles_on_a_batch_of_replicas(name):
    """Row-wise: each replica draws its own samples; the batch mean is unbiased for every row."""
    p = make(name)
    X = sample_points(p, 3, seed=6)
    G = p.stoch_grad(np.repeat(X, 4000, axis=0), np.random.default_rng(1), batch_size=5).reshape(3, 4000, -1)
    for x, g in zip(X, G):
        assert rel_err(g.mean(axis=0), p.grad(x)) < 0.05
    assert not np.allclose(G[0, 0], G[0, 1]), "replicas must draw different samples"
    F = p.stoch_f(np.repeat(X, 4000, axis=0), np.random.default_rng(2), batch_size=5).reshape(3, 4000)
    se = F.std(axis=1) / np.sqrt(F.shape[1])
    assert np.all(np.abs(F.mean(axis=1) - p.f(X)) < 5 * se + 1e-12)
    assert isinstance(p.stoch_f(X[0], 0), float)


def test_every_problem_of_the_zoo_and_the_chapters_passes_check_grad():
    from optlab.foundations import last_iterate as li
    from optlab.testing import check_grad

    chapter_problems = [li.l1_norm_problem(4), li.least_squares_problem(), li.composite_problem(3, lam=0.7)]
    for p in [make(n) for n in NAMES] + chapter_problems:
        rng = np.random.default_rng(7)
        x = p.x0 + 0.3 + 0.5 * rng.standard_normal(p.dim)  # away from the kinks of |x|
        assert check_grad(p.f, p.grad, x) < 1e-6, p.name


# --- known solutions ---------------------------------------------------------

def test_test_functions_minima():
    for p in (rosenbrock(5), rastrigin(4), ackley(3)):
        X = sample_points(p, 2000, seed=4)
        assert np.all(p.f(X) >= p.f_star)
        assert p.f(p.x_star) == pytest.approx(p.f_star, abs=1e-12)
    p = branin()
    assert p.f_star == pytest.approx(0.397887, abs=1e-6)
    for m in p.info["minimizers"]:
        assert p.f(m) == pytest.approx(p.f_star, abs=1e-12)
        assert np.linalg.norm(p.grad(m)) < 1e-12
    g1, g2 = np.meshgrid(np.linspace(-5, 10, 301), np.linspace(0, 15, 301))
    grid = np.column_stack([g1.ravel(), g2.ravel()])
    assert p.f(grid).min() >= p.f_star - 1e-12


def test_rosenbrock_hvp_in_higher_dimension():
    p = rosenbrock(6)
    x = np.linspace(-1, 1.5, 6)
    v = np.arange(1.0, 7.0)
    fd = (p.grad(x + 1e-6 * v) - p.grad(x - 1e-6 * v)) / 2e-6
    assert rel_err(p.hvp(x, v), fd) < 1e-7


def test_quadratic_spectrum_and_solution():
    p = quadratic(dim=8, cond=1e3, rng=3)
    A, b = p.info["A"], p.info["b"]
    np.testing.assert_allclose(np.linalg.eigvalsh(A), np.logspace(0, 3, 8), rtol=1e-10)
    assert p.L / p.mu == pytest.approx(1e3)
    np.testing.assert_allclose(A @ p.x_star, b, atol=1e-10)
    assert not np.allclose(quadratic(rng=1).x_star, quadratic(rng=2).x_star)


def test_least_squares_matches_numpy_lstsq():
    for kwargs in ({}, {"n": 100, "dim": 10, "cond": 50.0}, {"n": 10, "dim": 30}):
        p = least_squares(**kwargs)
        X, y = p.info["X"], p.info["y"]
        np.testing.assert_allclose(p.x_star, np.linalg.lstsq(X, y, rcond=None)[0], atol=1e-10)
        assert p.f_star == pytest.approx(0.5 * np.mean((X @ p.x_star - y) ** 2), abs=1e-14)
    p = least_squares(n=100, dim=10, cond=50.0)
    assert (p.L, p.mu) == (pytest.approx(50.0), pytest.approx(1.0))
    assert least_squares(n=10, dim=30).mu == 0.0


@pytest.mark.parametrize("name", LOGISTIC)
def test_logistic_matches_scikit_learn(name):
    from sklearn.linear_model import LogisticRegression

    p = make(name)
    Z, y, l2 = p.info["Z"], p.info["y"], p.info["l2"]
    # Same objective: C * sum(loss) + ||w||^2 / 2 with C = 1 / (n l2); the ones
    # column of Z carries the (penalized) intercept, so sklearn fits none of its own.
    clf = LogisticRegression(C=1.0 / (len(y) * l2), fit_intercept=False, tol=1e-12, max_iter=10_000)
    w = clf.fit(Z, y).coef_.ravel()
    assert rel_err(w, p.x_star) < 1e-4
    assert abs(p.f(w) - p.f_star) < 1e-9


def test_logistic_label_encodings_and_intercept():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = (X[:, 0] + 0.5 * rng.standard_normal(60) > 0.3).astype(int)
    p01 = logistic_regression(X, y, l2=0.01)
    ppm = logistic_regression(X, 2 * y - 1, l2=0.01)
    np.testing.assert_allclose(p01.x_star, ppm.x_star, atol=1e-12)
    assert p01.dim == 4 and np.all(p01.info["Z"][:, -1] == 1.0)
    assert p01.x_star[-1] < 0  # the threshold 0.3 shows up in the intercept
    assert logistic_regression(X, y, l2=0.01, fit_intercept=False).dim == 3
    assert p01.f(p01.x0) == pytest.approx(np.log(2))
    assert p01.mu == 0.01 and p01.L > 0.01


def test_real_data_shapes():
    p = make("breast_cancer_logistic")
    np.testing.assert_allclose(p.info["X"].mean(axis=0), 0.0, atol=1e-10)
    assert p.dim == 31 and len(p.info["y"]) == 569
    p = digits_logistic(classes=(1, 7))
    assert p.name == "digits_logistic(1 vs 7)" and p.dim == 65
    assert p.info["X"].max() <= 1.0 and set(np.unique(p.info["y"])) == {0, 1}


# --- bad input -----------------------------------------------------------------

@pytest.mark.parametrize("call, exc, match", [
    (lambda: rosenbrock(1), ValueError, "dim"),
    (lambda: rastrigin(0), ValueError, "dim"),
    (lambda: ackley(2.5), TypeError, "dim"),
    (lambda: rosenbrock(True), TypeError, "dim"),
    (lambda: rastrigin(A=-1.0), ValueError, "A must"),
    (lambda: branin().f(np.zeros(3)), ValueError, r"x must have shape \(2,\)"),
    (lambda: branin().grad(np.zeros((4, 3))), ValueError, "x must"),
    (lambda: rosenbrock(3).hvp(np.zeros(3), np.zeros(2)), ValueError, "v must"),
    (lambda: quadratic(cond=0.5), ValueError, "cond"),
    (lambda: quadratic(cond=float("inf")), ValueError, "cond"),
    (lambda: quadratic(dim=1, cond=10.0), ValueError, "cond"),
    (lambda: quadratic(dim=0), ValueError, "dim"),
    (lambda: quadratic(rng="seed"), TypeError, "rng"),
    (lambda: least_squares(n=5, dim=10, cond=10.0), ValueError, "n must be >= dim"),
    (lambda: least_squares(noise=-0.1), ValueError, "noise"),
    (lambda: least_squares(n=0), ValueError, "n must"),
    (lambda: least_squares().stoch_grad(np.zeros(20), 0, batch_size=0), ValueError, "batch_size"),
    (lambda: logistic_regression(np.ones((3, 2)), [0, 1, 2]), ValueError, "y must hold labels"),
    (lambda: logistic_regression(np.ones((3, 2)), [-1, 0, 1]), ValueError, "y must hold labels"),
    (lambda: logistic_regression(np.ones((3, 2)), ["a", "b", "a"]), TypeError, "y must"),
    (lambda: logistic_regression(np.ones((3, 2)), [0, 1]), ValueError, "y must have shape"),
    (lambda: logistic_regression(np.ones(3), [0, 1, 1]), ValueError, "X must be a 2-D"),
    (lambda: logistic_regression([[np.nan], [1.0]], [0, 1]), ValueError, "X must be finite"),
    (lambda: logistic_regression(np.ones((2, 1)), [0, 1], l2=0.0), ValueError, "l2"),
    (lambda: logistic_regression(np.ones((2, 1)), [0, 1], fit_intercept=1), TypeError, "fit_intercept"),
    (lambda: synthetic_logistic(n=20, dim=3).f(np.zeros(4)), ValueError, "w must"),
    (lambda: digits_logistic(classes=(3, 3)), ValueError, "classes"),
    (lambda: digits_logistic(classes=(3, 10)), ValueError, "classes"),
    (lambda: digits_logistic(classes=3), TypeError, "classes"),
])
def test_bad_input_gives_clear_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
