"""Unit tests of optlab.testing: the finite-difference checks must catch wrong oracles."""
import numpy as np
import pytest

from optlab.testing import check_grad, check_hvp, fd_grad

A = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
f = lambda x: float(0.5 * x @ A @ x + np.sum(np.cos(x)))
grad = lambda x: A @ x - np.sin(x)
hvp = lambda x, v: A @ v - np.cos(x) * v


def test_correct_oracles_pass():
    x = np.array([0.3, -1.2, 2.0])
    assert check_grad(f, grad, x) < 1e-8
    assert check_grad(f, grad, x, n_dirs=2, rng=0) < 1e-8
    assert check_hvp(grad, hvp, x, rng=0) < 1e-8
    assert np.allclose(fd_grad(f, x), grad(x), atol=1e-7)


def test_wrong_oracles_fail():
    x = np.array([0.3, -1.2, 2.0])
    assert check_grad(f, lambda x: A @ x + np.sin(x), x) > 1e-2
    assert check_grad(f, lambda x: 1.001 * grad(x), x) > 1e-4
    assert check_hvp(grad, lambda x, v: A @ v, x, rng=0) > 1e-2


def test_scipy_agrees():
    from scipy.optimize import approx_fprime

    x = np.array([0.1, 0.2, -0.3])
    assert np.allclose(fd_grad(f, x), approx_fprime(x, f, 1e-7), atol=1e-5)


def test_bad_input():
    x = np.ones(3)
    with pytest.raises(ValueError, match="eps"):
        check_grad(f, grad, x, eps=0)
    with pytest.raises(ValueError, match="grad"):
        check_grad(f, lambda x: np.ones(2), x)
    with pytest.raises(ValueError, match="n_dirs"):
        check_grad(f, grad, x, n_dirs=0)
    with pytest.raises(ValueError, match="v has shape"):
        check_hvp(grad, hvp, x, v=np.ones(2))
