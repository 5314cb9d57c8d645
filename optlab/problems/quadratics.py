r"""Quadratics and least squares: the smooth, strongly convex test bed with known answers.

Both problems have a constant Hessian, so the smoothness ``L`` (largest
eigenvalue) and strong convexity ``mu`` (smallest eigenvalue) are exact and
stored in ``info``; the rates of the foundations chapters are stated in them.

Examples
--------
>>> p = quadratic(dim=5, cond=10.0)
>>> round(p.L / p.mu, 6), abs(round(p.gap(p.x_star), 12))
(10.0, 0.0)

References
----------
Y. Nesterov, Lectures on Convex Optimization, 2nd ed., Springer, 2018
(chapter 2: the quadratic as the worst case of first-order methods).

Book: chapters/toolkit.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Problem, as_rng
from .functions import _check_int, _check_real, _points, _value

__all__ = ["quadratic", "least_squares"]


def _orthogonal(rng, n: int, k: int) -> np.ndarray:
    """An ``(n, k)`` matrix with orthonormal columns, uniformly (Haar) distributed."""
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def quadratic(dim: int = 10, cond: float = 100.0, rng=0) -> Problem:
    r"""A random strongly convex quadratic with a prescribed condition number.

    .. math:: f(x) = \tfrac12 x^\top A x - b^\top x, \qquad
              A = Q \operatorname{diag}(\lambda) Q^\top,

    with ``Q`` a random orthogonal matrix, eigenvalues ``lambda`` log-spaced
    from ``1`` to ``cond`` and ``b`` standard normal.

    Parameters
    ----------
    dim : int
        Number of variables, ``>= 1`` (``dim = 1`` needs ``cond = 1``).
    cond : float
        Condition number ``L / mu``, ``>= 1``.
    rng : None, int or numpy.random.Generator
        Seed for ``Q`` and ``b``.

    Returns
    -------
    Problem
        ``x_star = A^{-1} b``, ``f_star = -b^T x_star / 2``, ``x0 = 0``,
        ``hvp(x, v) = A v``, ``L`` and ``mu`` (the extreme eigenvalues); ``info`` has ``A``,
        ``b``, ``eigvals`` and ``cond``.

    Examples
    --------
    >>> p = quadratic(dim=3, cond=4.0)
    >>> p.info["eigvals"].tolist(), round(p.f(p.x0), 4), bool(p.f(p.x_star) < 0)
    ([1.0, 2.0, 4.0], 0.0, True)
    """
    d = _check_int(dim, "dim", 1)
    cond = _check_real(cond, "cond", 1.0, strict=False)
    if d == 1 and cond != 1.0:
        raise ValueError(f"cond must be 1 when dim=1 (one eigenvalue), got {cond}")
    rng = as_rng(rng)
    eigvals = np.logspace(0.0, np.log10(cond), d)
    Q = _orthogonal(rng, d, d)
    A = (Q * eigvals) @ Q.T
    A = 0.5 * (A + A.T)                     # exactly symmetric
    b = rng.standard_normal(d)
    x_star = np.linalg.solve(A, b)

    def f(x):
        x = _points(x, d)
        return _value(0.5 * np.sum((x @ A) * x, axis=-1) - x @ b)

    def grad(x):
        return _points(x, d) @ A - b

    def hvp(x, v):
        _points(x, d)                       # the Hessian is constant; x is only checked
        return _points(v, d, "v") @ A

    return Problem(f"quadratic(d={d}, cond={cond:g})", f=f, grad=grad, hvp=hvp, x0=np.zeros(d),
                   x_star=x_star, f_star=float(-0.5 * b @ x_star), L=float(eigvals[-1]), mu=float(eigvals[0]),
                   info={"A": A, "b": b, "eigvals": eigvals, "cond": cond})


def least_squares(n: int = 200, dim: int = 20, noise: float = 0.1, cond=None, rng=0) -> Problem:
    r"""Linear regression: a finite sum with a stochastic-gradient oracle.

    .. math:: f(w) = \frac{1}{2n} \|X w - y\|^2 = \frac1n \sum_{i=1}^n \tfrac12 (x_i^\top w - y_i)^2,
              \qquad y = X w_\text{true} + \text{noise}\cdot\varepsilon.

    Parameters
    ----------
    n : int
        Number of samples, ``>= 1``.
    dim : int
        Number of features, ``>= 1``.
    noise : float
        Standard deviation of the Gaussian label noise, ``>= 0``.
    cond : float or None
        ``None``: standard normal rows.  A float ``>= 1``: ``X = U S V^T`` with
        random orthonormal ``U, V`` and singular values chosen so that the Hessian
        ``X^T X / n`` has eigenvalues log-spaced from 1 to ``cond`` (needs ``n >= dim``).
    rng : None, int or numpy.random.Generator
        Seed for the data.

    Returns
    -------
    Problem
        ``x_star`` from :func:`numpy.linalg.lstsq` (the minimum-norm solution
        when ``n < dim``), ``x0 = 0``, ``hvp(x, v) = X^T X v / n`` and
        ``stoch_grad(x, rng, batch_size=1)``: the gradient on ``batch_size`` rows
        drawn uniformly with replacement (unbiased).  ``info`` has ``X``, ``y``,
        ``w_true``, ``noise``, ``L`` and ``mu`` (the extreme eigenvalues of
        ``X^T X / n``; ``mu = 0`` when ``n < dim``).

    Examples
    --------
    >>> p = least_squares(n=50, dim=3, cond=10.0)
    >>> round(p.L, 6), round(p.mu, 6), p.stoch_grad(p.x0, 0, batch_size=5).shape
    (10.0, 1.0, (3,))
    >>> p.stoch_grad(np.zeros((4, 3)), 0, batch_size=5).shape, p.stoch_f(np.zeros((4, 3)), 0).shape
    ((4, 3), (4,))
    """
    n = _check_int(n, "n", 1)
    d = _check_int(dim, "dim", 1)
    noise = _check_real(noise, "noise", 0.0, strict=False)
    rng = as_rng(rng)
    if cond is None:
        X = rng.standard_normal((n, d))
    else:
        cond = _check_real(cond, "cond", 1.0, strict=False)
        if n < d:
            raise ValueError(f"n must be >= dim when cond is given, got n={n}, dim={d}")
        eigvals = np.logspace(0.0, np.log10(cond), d)[::-1]
        X = (_orthogonal(rng, n, d) * np.sqrt(n * eigvals)) @ _orthogonal(rng, d, d).T
    w_true = rng.standard_normal(d)
    y = X @ w_true + noise * rng.standard_normal(n)
    hess_eigs = np.linalg.eigvalsh(X.T @ X / n)
    x_star = np.linalg.lstsq(X, y, rcond=None)[0]

    def f(w):
        r = _points(w, d) @ X.T - y
        return _value(0.5 * np.mean(r**2, axis=-1))

    def grad(w):
        return (_points(w, d) @ X.T - y) @ X / n

    def hvp(w, v):
        _points(w, d, "w")
        return (_points(v, d, "v") @ X.T) @ X / n

    def _sample(w, rng, batch_size):
        """Rows drawn with replacement, one draw per replica: (Xb, residuals) of shape (..., b, d), (..., b)."""
        batch_size = _check_int(batch_size, "batch_size", 1)
        w = _points(w, d, "w")
        idx = as_rng(rng).integers(n, size=w.shape[:-1] + (batch_size,))
        Xb = X[idx]
        return Xb, np.einsum("...bd,...d->...b", Xb, w) - y[idx]

    def stoch_grad(w, rng, batch_size=1):
        Xb, r = _sample(w, rng, batch_size)
        return np.einsum("...b,...bd->...d", r, Xb) / batch_size

    def stoch_f(w, rng, batch_size=1):
        return _value(0.5 * np.mean(_sample(w, rng, batch_size)[1] ** 2, axis=-1))

    return Problem(f"least_squares(n={n}, d={d})", f=f, grad=grad, hvp=hvp, x0=np.zeros(d),
                   stoch_grad=stoch_grad, stoch_f=stoch_f, x_star=x_star, f_star=f(x_star),
                   L=float(hess_eigs[-1]), mu=float(max(hess_eigs[0], 0.0)) if n >= d else 0.0,
                   info={"X": X, "y": y, "w_true": w_true, "noise": noise})
