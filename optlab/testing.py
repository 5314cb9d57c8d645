r"""Check oracles against finite differences.

Chapters and tests use these to make sure a hand-written gradient or
Hessian-vector product matches the function it claims to differentiate.  Both
return a relative error, so a caller states its own tolerance::

    assert check_grad(p.f, p.grad, x) < 1e-6

Book: chapters/toolkit.ipynb

References
----------
Nocedal & Wright, Numerical Optimization, 2nd ed., Springer 2006, section 8.1
(finite-difference derivative approximations).
"""
from __future__ import annotations

import numpy as np

from .core import as_array, as_rng

__all__ = ["check_grad", "check_hvp", "fd_grad"]


def _relative_error(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(np.linalg.norm(a - b) / max(1.0, np.linalg.norm(a), np.linalg.norm(b)))


def _directions(dim, n_dirs, rng):
    """The coordinate basis, or ``n_dirs`` random unit directions."""
    if n_dirs is None or n_dirs >= dim:
        return np.eye(dim)
    if int(n_dirs) < 1:
        raise ValueError(f"n_dirs must be a positive int or None, got {n_dirs}")
    d = as_rng(rng).standard_normal((int(n_dirs), dim))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def fd_grad(f, x, eps: float = 1e-6) -> np.ndarray:
    r"""Central-difference gradient of ``f`` at ``x`` (``2 d`` calls of ``f``).

    Examples
    --------
    >>> np.round(fd_grad(lambda x: float(x @ x), np.array([1.0, -2.0])), 6)
    array([ 2., -4.])
    """
    x = as_array(x, "x")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    E = np.eye(x.size) * eps
    return np.array([(f(x + e) - f(x - e)) / (2 * eps) for e in E])


def check_grad(f, grad, x, *, eps: float = 1e-6, n_dirs=None, rng=None) -> float:
    r"""Relative error between ``grad(x)`` and central finite differences of ``f``.

    Compares directional derivatives ``grad(x) @ u`` with
    ``(f(x + eps u) - f(x - eps u)) / (2 eps)`` along the coordinate axes
    (default) or along ``n_dirs`` random unit directions (cheaper in high
    dimension).  The error is ``||a - b|| / max(1, ||a||, ||b||)``; for a
    correct smooth gradient it is around ``1e-8`` with the default ``eps``.

    Parameters
    ----------
    f, grad : callable
        ``f(x) -> float`` and ``grad(x) -> ndarray``.
    x : array_like
        The point, 1-D.
    eps : float
        Finite-difference step.
    n_dirs : int or None
        Number of random directions; ``None`` uses all coordinates.
    rng : None, int or Generator
        Seeds the random directions.

    Returns
    -------
    float
        The relative error.

    Examples
    --------
    >>> f = lambda x: float(np.sum(x ** 4))
    >>> check_grad(f, lambda x: 4 * x ** 3, np.array([0.5, -1.0])) < 1e-7
    True
    >>> check_grad(f, lambda x: 3 * x ** 3, np.array([0.5, -1.0])) > 0.1
    True
    """
    x = as_array(x, "x")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    g = np.asarray(grad(x), dtype=float)
    if g.shape != x.shape:
        raise ValueError(f"grad(x) has shape {g.shape}, expected {x.shape}")
    U = _directions(x.size, n_dirs, rng)
    fd = np.array([(f(x + eps * u) - f(x - eps * u)) / (2 * eps) for u in U])
    return _relative_error(U @ g, fd)


def check_hvp(grad, hvp, x, v=None, *, eps: float = 1e-6, rng=None) -> float:
    r"""Relative error between ``hvp(x, v)`` and a central difference of ``grad``.

    ``H v`` is approximated by ``(grad(x + eps v) - grad(x - eps v)) / (2 eps)``.

    Parameters
    ----------
    grad, hvp : callable
        ``grad(x) -> ndarray`` and ``hvp(x, v) -> ndarray``.
    x : array_like
        The point, 1-D.
    v : array_like or None
        The direction; a random unit vector when None.
    eps : float
        Finite-difference step.
    rng : None, int or Generator
        Seeds the random direction.

    Returns
    -------
    float
        The relative error.

    Examples
    --------
    >>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> check_hvp(lambda x: A @ x, lambda x, v: A @ v, np.ones(2), rng=0) < 1e-8
    True
    """
    x = as_array(x, "x")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if v is None:
        v = as_rng(rng).standard_normal(x.size)
        v /= np.linalg.norm(v)
    v = as_array(v, "v")
    if v.shape != x.shape:
        raise ValueError(f"v has shape {v.shape}, expected {x.shape}")
    hv = np.asarray(hvp(x, v), dtype=float)
    fd = (np.asarray(grad(x + eps * v)) - np.asarray(grad(x - eps * v))) / (2 * eps)
    return _relative_error(hv, fd)
