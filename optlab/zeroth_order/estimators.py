r"""Gradient estimators from function values, with their query counts: the toolbox of part 3.

A zeroth-order method sees only values :math:`f(x)`.  Each estimator here turns a
batch of queries into a gradient estimate and says how many queries it spent, so
that methods can be compared at equal queries (the convention of the whole part):

* :func:`gaussian_smoothing`: :math:`\hat g = \frac1q \sum_i \frac{f(x + \mu u_i) - f(x)}{\mu} u_i`,
  :math:`u_i \sim N(0, I)`; :math:`q + 1` queries.  Unbiased for the gradient of the
  smoothed function :math:`f_\mu(x) = \mathbb E f(x + \mu u)`;
* :func:`two_point`: the symmetric difference :math:`\frac{f(x + \mu u) - f(x - \mu u)}{2\mu} u`
  along Gaussian directions, or along directions uniform on the sphere scaled by :math:`d`;
  :math:`2q` queries;
* :func:`coordinate`: finite differences along coordinate axes (all of them, or a subset:
  sparse coordinate-wise estimation); :math:`2|S|` queries (central) or :math:`|S| + 1` (forward).

``f`` must accept a batch of points, ``(n, d) -> (n,)``: all queries of one estimate are
evaluated in one call (the zoo's functions do this).  Every estimator returns ``(g, n_queries)``.

Examples
--------
>>> f = lambda X: np.sum(np.asarray(X) ** 2, axis=-1)
>>> g, n = coordinate(f, np.array([1.0, -2.0]), mu=1e-4)
>>> np.round(g, 6).tolist(), n
([2.0, -4.0], 4)

References
----------
Y. Nesterov and V. Spokoiny, Random gradient-free minimization of convex functions, Foundations of
Computational Mathematics 17, 2017 (``nesterov2017random``): Gaussian smoothing and its estimators.
S. Liu, P.-Y. Chen, B. Kailkhura, G. Zhang, A. O. Hero and P. K. Varshney, A primer on zeroth-order
optimization in signal processing and machine learning, IEEE Signal Processing Magazine 37(5), 2020
(``liu2020primer``): the estimators, their bias and variance, coordinate-wise estimation.

Book: chapters/zeroth_order/index.md
"""
from __future__ import annotations

import numpy as np

from ..core import as_rng
from ..validate import check_array, check_callable, check_choice, check_int, check_positive

__all__ = ["gaussian_smoothing", "two_point", "coordinate", "orthonormal_directions", "evaluate"]


def evaluate(f, X: np.ndarray) -> np.ndarray:
    """``f`` on a batch of points ``(n, d)``, checked to return ``n`` finite-or-not values (one per point)."""
    values = np.asarray(f(X), dtype=float)
    if values.shape != (len(X),):
        raise ValueError(f"f must map an (n, d) batch to n values, got shape {values.shape} for {X.shape}")
    return values


def _setup(f, x, mu, n_dirs=None):
    check_callable(f, "f", signature="(n, d) -> (n,)")
    x = check_array(x, "x", ndim=1)
    mu = check_positive(mu, "mu")
    q = None if n_dirs is None else check_int(n_dirs, "n_dirs", low=1)
    return x, mu, q


def gaussian_smoothing(f, x, *, mu: float, n_dirs: int = 1, rng=None):
    r"""Forward differences along ``n_dirs`` Gaussian directions: ``(g, n_dirs + 1)``.

    :math:`\hat g = \frac1q\sum_{i=1}^q \frac{f(x + \mu u_i) - f(x)}{\mu}\, u_i`, an unbiased
    estimate of :math:`\nabla f_\mu(x)`, the gradient of the Gaussian smoothing of ``f``.

    >>> f = lambda X: np.sum(np.asarray(X) ** 2, axis=-1)
    >>> g, n = gaussian_smoothing(f, np.ones(3), mu=1e-3, n_dirs=5, rng=0)
    >>> g.shape, n
    ((3,), 6)
    """
    x, mu, q = _setup(f, x, mu, n_dirs)
    U = as_rng(rng).standard_normal((q, x.size))
    values = evaluate(f, np.vstack([x, x + mu * U]))
    return (values[1:] - values[0]) @ U / (mu * q), q + 1


def two_point(f, x, *, mu: float, n_dirs: int = 1, rng=None, directions: str = "gaussian"):
    r"""Symmetric differences along ``n_dirs`` random directions: ``(g, 2 n_dirs)``.

    Gaussian directions :math:`u \sim N(0, I)` give :math:`\frac{f(x+\mu u) - f(x-\mu u)}{2\mu} u`;
    ``directions="sphere"`` draws :math:`u` uniformly on the unit sphere and scales by :math:`d`
    (the same mean, another variance).

    >>> f = lambda X: np.asarray(X) @ np.array([1.0, 2.0])
    >>> g, n = two_point(f, np.zeros(2), mu=0.1, n_dirs=20000, rng=0)
    >>> np.round(g, 1).tolist(), n
    ([1.0, 2.0], 40000)
    """
    x, mu, q = _setup(f, x, mu, n_dirs)
    check_choice(directions, "directions", ["gaussian", "sphere"])
    U = as_rng(rng).standard_normal((q, x.size))
    scale = 1.0
    if directions == "sphere":
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        scale = float(x.size)
    values = evaluate(f, np.vstack([x + mu * U, x - mu * U]))
    return scale * (values[:q] - values[q:]) @ U / (2 * mu * q), 2 * q


def coordinate(f, x, *, mu: float, coords=None, central: bool = True):
    r"""Finite differences along coordinate axes: ``(g, queries)``, zero outside ``coords``.

    ``coords`` (default: all) selects the coordinates to estimate (sparse coordinate-wise
    estimation); central differences cost 2 queries per coordinate, forward ones 1 plus one
    query at ``x``.

    >>> f = lambda X: np.sum(np.asarray(X) ** 3, axis=-1)
    >>> g, n = coordinate(f, np.array([1.0, 2.0, 3.0]), mu=1e-5, coords=[0, 2])
    >>> np.round(g, 4).tolist(), n
    ([3.0, 0.0, 27.0], 4)
    """
    x, mu, _ = _setup(f, x, mu)
    S = np.arange(x.size) if coords is None else np.unique(check_array(coords, "coords", ndim=1).astype(int))
    if S.size and (S.min() < 0 or S.max() >= x.size):
        raise ValueError(f"coords must be indices in [0, {x.size}), got {S.tolist()}")
    E = np.zeros((S.size, x.size))
    E[np.arange(S.size), S] = mu
    g = np.zeros_like(x)
    if central:
        values = evaluate(f, np.vstack([x + E, x - E]))
        g[S] = (values[:S.size] - values[S.size:]) / (2 * mu)
        return g, 2 * S.size
    values = evaluate(f, np.vstack([x, x + E]))
    g[S] = (values[1:] - values[0]) / mu
    return g, S.size + 1


def orthonormal_directions(dim: int, n_dirs: int, rng=None) -> np.ndarray:
    r"""``n_dirs`` orthonormal directions in :math:`\mathbb R^{d}` (rows), Haar distributed; ``n_dirs <= dim``.

    >>> U = orthonormal_directions(5, 3, rng=0)
    >>> U.shape, bool(np.allclose(U @ U.T, np.eye(3)))
    ((3, 5), True)
    """
    dim, n_dirs = check_int(dim, "dim", low=1), check_int(n_dirs, "n_dirs", low=1)
    if n_dirs > dim:
        raise ValueError(f"n_dirs must be at most dim={dim} for orthonormal directions, got {n_dirs}")
    Q, R = np.linalg.qr(as_rng(rng).standard_normal((dim, n_dirs)))
    return (Q * np.where(np.diag(R) < 0, -1.0, 1.0)).T
