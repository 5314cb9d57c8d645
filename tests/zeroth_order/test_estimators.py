"""optlab.zeroth_order.estimators: unbiasedness, exactness, query counts and bad input of the shared estimators."""
import numpy as np
import pytest

from optlab import problems
from optlab.testing import check_bad_inputs
from optlab.zeroth_order import estimators as E

quad = problems.quadratic(dim=6, cond=10.0, rng=1)
X0 = np.linspace(-1.0, 1.0, 6)


def test_coordinate_differences_are_exact_on_a_quadratic_and_count_queries():
    g, n = E.coordinate(quad.f, X0, mu=1e-3)
    np.testing.assert_allclose(g, quad.grad(X0), atol=1e-8)
    assert n == 12
    g, n = E.coordinate(quad.f, X0, mu=1e-6, coords=[1, 4], central=False)
    assert n == 3 and np.all(g[[0, 2, 3, 5]] == 0)
    np.testing.assert_allclose(g[[1, 4]], quad.grad(X0)[[1, 4]], atol=1e-4)


@pytest.mark.parametrize("estimator, kwargs, per_dir", [
    (E.gaussian_smoothing, {}, 1), (E.two_point, {}, 2), (E.two_point, {"directions": "sphere"}, 2)])
def test_random_estimators_are_unbiased_on_a_quadratic(estimator, kwargs, per_dir):
    """On a quadratic the smoothed gradient is the gradient: the mean of many estimates matches it."""
    g, n = estimator(quad.f, X0, mu=1e-2, n_dirs=200_000, rng=3, **kwargs)
    assert n == per_dir * 200_000 + (1 if estimator is E.gaussian_smoothing else 0)
    err = np.linalg.norm(g - quad.grad(X0)) / np.linalg.norm(quad.grad(X0))
    assert err < 0.05, err


def test_the_same_rng_gives_the_same_estimate():
    a, _ = E.two_point(quad.f, X0, mu=0.1, n_dirs=4, rng=5)
    b, _ = E.two_point(quad.f, X0, mu=0.1, n_dirs=4, rng=5)
    assert np.array_equal(a, b)


def test_orthonormal_directions():
    U = E.orthonormal_directions(8, 5, rng=2)
    np.testing.assert_allclose(U @ U.T, np.eye(5), atol=1e-12)
    with pytest.raises(ValueError, match="n_dirs must be at most dim"):
        E.orthonormal_directions(4, 5)


BAD = {
    "gaussian_smoothing": (E.gaussian_smoothing, dict(f=quad.f, x=X0, mu=0.1, n_dirs=2, rng=0),
                           {"mu": [0.0, -1.0], "n_dirs": [0, 1.5], "x": [[np.nan] * 6],
                            "f": [(lambda X: 1.0, "f must map")]}, ()),
    "two_point": (E.two_point, dict(f=quad.f, x=X0, mu=0.1, n_dirs=2, rng=0), {"directions": ["ball"]}, ()),
    "coordinate": (E.coordinate, dict(f=quad.f, x=X0, mu=0.1), {"coords": [[7], [-1]]}, ("central",)),
    "orthonormal_directions": (E.orthonormal_directions, dict(dim=4, n_dirs=2), {"dim": [0], "n_dirs": [0, 9]},
                               ("rng",)),
}


@pytest.mark.parametrize("row", BAD)
def test_bad_input(row):
    fn, good, bad, skip = BAD[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0
