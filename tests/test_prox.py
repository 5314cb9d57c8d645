"""optlab.prox: each operator against its definition (brute-force minimization), on points and batches."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import minimize, minimize_scalar

from optlab import prox as P

vectors = arrays(np.float64, st.integers(1, 6), elements=st.floats(-10, 10))


@pytest.mark.parametrize("v", [-2.3, -0.4, 0.0, 0.25, 1.7])
@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0])
def test_soft_threshold_is_the_prox_of_the_l1_norm(v, tau):
    best = minimize_scalar(lambda z: 0.5 * (z - v) ** 2 + tau * abs(z), bounds=(-5, 5), method="bounded",
                           options={"xatol": 1e-10})
    assert P.soft_threshold(np.array([v]), tau)[0] == pytest.approx(best.x, abs=1e-6)


def _prox_by_minimization(h, v):
    res = minimize(lambda z: h(z) + 0.5 * np.sum((z - v) ** 2), v, method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    return res.x


def test_group_soft_threshold_is_the_prox_of_the_l2_norm():
    rng = np.random.default_rng(0)
    for tau in (0.3, 2.0, 10.0):
        v = rng.standard_normal(3) * 2
        expected = _prox_by_minimization(lambda z, tau=tau: tau * np.linalg.norm(z), v)
        np.testing.assert_allclose(P.group_soft_threshold(v, tau), expected, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(vectors, st.floats(0.1, 5.0))
def test_projections_are_feasible_and_idempotent(v, r):
    for project, inside in ((lambda x: P.project_l2_ball(x, r), lambda x: np.linalg.norm(x) <= r * (1 + 1e-12)),
                            (lambda x: P.project_linf_ball(x, r), lambda x: np.abs(x).max() <= r),
                            (lambda x: P.project_l1_ball(x, r), lambda x: np.abs(x).sum() <= r * (1 + 1e-9)),
                            (lambda x: P.project_simplex(x, r),
                             lambda x: np.all(x >= 0) and abs(x.sum() - r) < 1e-9 * max(1, r))):
        p = project(v)
        assert inside(p)
        np.testing.assert_allclose(project(p), p, atol=1e-10)


def test_projections_against_a_constrained_solver():
    from scipy.optimize import LinearConstraint

    rng = np.random.default_rng(1)
    v = rng.standard_normal(5) * 2
    cons = [LinearConstraint(np.ones((1, 5)), 1.0, 1.0)]
    ref = minimize(lambda z: 0.5 * np.sum((z - v) ** 2), np.full(5, 0.2), jac=lambda z: z - v,
                   bounds=[(0, None)] * 5, constraints=cons, method="SLSQP", options={"ftol": 1e-14}).x
    np.testing.assert_allclose(P.project_simplex(v), ref, atol=1e-6)


def test_batches_are_row_wise():
    rng = np.random.default_rng(2)
    V = rng.standard_normal((7, 4)) * 3
    for op in (lambda x: P.project_simplex(x, 2.0), lambda x: P.project_l1_ball(x, 1.5),
               lambda x: P.project_l2_ball(x, 1.0), lambda x: P.group_soft_threshold(x, 0.5),
               lambda x: P.soft_threshold(x, 0.5)):
        np.testing.assert_allclose(op(V), np.array([op(v) for v in V]), atol=1e-12)


def test_l1_prox_and_per_coordinate_thresholds():
    prox = P.l1_prox(2.0)
    np.testing.assert_allclose(prox(np.array([[3.0, -0.5, 1.5]]), 0.5), P.soft_threshold([[3.0, -0.5, 1.5]], 1.0))
    np.testing.assert_allclose(P.soft_threshold([1.0, 1.0], [0.5, 2.0]), [0.5, 0.0])


@pytest.mark.parametrize("call, err, match", [
    (lambda: P.soft_threshold([1.0], -0.1), ValueError, "tau must be"),
    (lambda: P.soft_threshold([1.0], [0.1, -1.0]), ValueError, "tau must be >= 0"),
    (lambda: P.soft_threshold("abc", 0.1), TypeError, "v must be an array"),
    (lambda: P.l1_prox(-1.0), ValueError, "lam"),
    (lambda: P.l1_prox(1.0)(np.ones(2), -0.5), ValueError, "lr"),
    (lambda: P.project_box([1.0], 2.0, 1.0), ValueError, "low <= high"),
    (lambda: P.project_l2_ball([1.0], -1.0), ValueError, "radius"),
    (lambda: P.project_simplex([1.0, 2.0], 0.0), ValueError, "z must be"),
    (lambda: P.project_simplex([[[1.0]]]), ValueError, "v must be a 1-D or 2-D"),
    (lambda: P.project_l1_ball([1.0, np.nan]), ValueError, "v must be finite"),
])
def test_bad_input(call, err, match):
    with pytest.raises(err, match=match):
        call()
