r"""Classic test functions: Rosenbrock, Rastrigin, Ackley and Branin.

Each constructor returns a :class:`optlab.core.Problem` with ``f``, ``grad``,
``hvp`` (where it is cheap), the conventional start ``x0``, the known minimizer
``x_star`` and minimum ``f_star``, and the conventional search box ``bounds``.

Every ``f`` (and ``grad``) accepts one point of shape ``(d,)`` or a batch of
shape ``(n, d)``: one point gives a float (a ``(d,)`` gradient), a batch gives
an array of shape ``(n,)`` (an ``(n, d)`` array of gradients), so zeroth-order
and Bayesian-optimization methods can evaluate many candidates at once.

Examples
--------
>>> p = rosenbrock()
>>> round(p.f(p.x0), 4), p.f(np.array([[1.0, 1.0], [0.0, 0.0]])).tolist()
(24.2, [0.0, 1.0])

References
----------
H. H. Rosenbrock, An automatic method for finding the greatest or least value
of a function, The Computer Journal 3(3), 1960.
L. A. Rastrigin, Systems of Extremal Control, Nauka, Moscow, 1974.
D. H. Ackley, A Connectionist Machine for Genetic Hillclimbing, Kluwer, 1987.
L. C. W. Dixon and G. P. Szego, The global optimization problem: an
introduction, in Towards Global Optimization 2, North-Holland, 1978 (Branin).

Book: chapters/toolkit.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Problem
from ..validate import check_int, check_real

__all__ = ["rosenbrock", "rastrigin", "ackley", "branin"]


def _check_int(value, name: str, low: int) -> int:
    return check_int(value, name, low=low)


def _check_real(value, name: str, low: float, strict: bool = True) -> float:
    return check_real(value, name, low=low, low_open=strict)


def _points(x, dim: int, name: str = "x") -> np.ndarray:
    """``x`` as a float array of shape ``(dim,)`` or ``(n, dim)``, or a clear error."""
    try:
        x = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers of shape ({dim},) or (n, {dim})") from None
    if x.ndim not in (1, 2) or x.shape[-1] != dim:
        raise ValueError(f"{name} must have shape ({dim},) or (n, {dim}), got {x.shape}")
    return x


def _value(v):
    """A float for one point, an array for a batch."""
    return float(v) if np.ndim(v) == 0 else v


def rosenbrock(dim: int = 2) -> Problem:
    r"""The Rosenbrock "banana": a curved valley that is easy to find, slow to follow.

    .. math:: f(x) = \sum_{i=1}^{d-1} 100\,(x_{i+1} - x_i^2)^2 + (1 - x_i)^2

    Parameters
    ----------
    dim : int
        Number of variables, ``>= 2``.

    Returns
    -------
    Problem
        ``x_star = 1``, ``f_star = 0``, ``x0 = (-1.2, 1, -1.2, 1, ...)``, ``bounds``
        ``[-2.048, 2.048]^d``, analytic ``hvp`` (the Hessian is tridiagonal).

    Notes
    -----
    Nonconvex but with a single minimizer for ``d <= 3``; for ``4 <= d <= 7``
    there is also a local minimizer near ``(-1, 1, ..., 1)``.

    Examples
    --------
    >>> p = rosenbrock(3)
    >>> p.name, round(p.f(p.x0), 4), float(np.abs(p.grad(p.x_star)).max())
    ('rosenbrock(d=3)', 508.2, 0.0)
    """
    d = _check_int(dim, "dim", 2)

    def f(x):
        x = _points(x, d)
        a, b = x[..., :-1], x[..., 1:]
        return _value(np.sum(100.0 * (b - a**2) ** 2 + (1.0 - a) ** 2, axis=-1))

    def grad(x):
        x = _points(x, d)
        a, b = x[..., :-1], x[..., 1:]
        g = np.zeros_like(x)
        g[..., :-1] = -400.0 * a * (b - a**2) - 2.0 * (1.0 - a)
        g[..., 1:] += 200.0 * (b - a**2)
        return g

    def hvp(x, v):
        x, v = _points(x, d), _points(v, d, "v")
        a, b = x[..., :-1], x[..., 1:]
        diag = np.zeros_like(x)
        diag[..., :-1] = 1200.0 * a**2 - 400.0 * b + 2.0
        diag[..., 1:] += 200.0
        off = -400.0 * a                      # H[i, i+1] = H[i+1, i]
        hv = diag * v
        hv[..., :-1] += off * v[..., 1:]
        hv[..., 1:] += off * v[..., :-1]
        return hv

    x0 = np.where(np.arange(d) % 2 == 0, -1.2, 1.0)
    return Problem(f"rosenbrock(d={d})", f=f, grad=grad, hvp=hvp, x0=x0,
                   x_star=np.ones(d), f_star=0.0, bounds=np.tile([-2.048, 2.048], (d, 1)))


def rastrigin(dim: int = 2, A: float = 10.0) -> Problem:
    r"""The Rastrigin function: a bowl covered by a regular grid of local minima.

    .. math:: f(x) = A d + \sum_{i=1}^d \left(x_i^2 - A \cos(2\pi x_i)\right)

    Parameters
    ----------
    dim : int
        Number of variables, ``>= 1``.
    A : float
        Amplitude of the ripples, ``> 0``.

    Returns
    -------
    Problem
        ``x_star = 0``, ``f_star = 0``, ``x0 = 3 * ones`` (next to a local
        minimizer, so local methods stall there), ``bounds`` ``[-5.12, 5.12]^d``,
        analytic ``hvp`` (the Hessian is diagonal).

    Examples
    --------
    >>> p = rastrigin(2)
    >>> round(p.f(p.x0), 4), p.f(p.x_star)
    (18.0, 0.0)
    """
    d = _check_int(dim, "dim", 1)
    A = _check_real(A, "A", 0.0)
    w = 2.0 * np.pi

    def f(x):
        x = _points(x, d)
        return _value(A * d + np.sum(x**2 - A * np.cos(w * x), axis=-1))

    def grad(x):
        x = _points(x, d)
        return 2.0 * x + A * w * np.sin(w * x)

    def hvp(x, v):
        x, v = _points(x, d), _points(v, d, "v")
        return (2.0 + A * w**2 * np.cos(w * x)) * v

    return Problem(f"rastrigin(d={d})", f=f, grad=grad, hvp=hvp, x0=np.full(d, 3.0),
                   x_star=np.zeros(d), f_star=0.0, bounds=np.tile([-5.12, 5.12], (d, 1)),
                   L=2.0 + A * w**2, info={"A": A})


def ackley(dim: int = 2) -> Problem:
    r"""The Ackley function: a nearly flat, rippled plateau around a narrow funnel.

    .. math::
        f(x) = -a\, e^{-b \sqrt{\frac1d \sum_i x_i^2}} - e^{\frac1d \sum_i \cos(c x_i)} + a + e,
        \quad a = 20,\ b = 0.2,\ c = 2\pi.

    Parameters
    ----------
    dim : int
        Number of variables, ``>= 1``.

    Returns
    -------
    Problem
        ``x_star = 0``, ``f_star = 0``, ``x0 = 3 * ones``, ``bounds``
        ``[-32.768, 32.768]^d``, ``hvp = None``.

    Notes
    -----
    ``f`` has a kink at the minimizer (it grows like ``a b ||x|| / sqrt(d)``),
    so ``grad`` returns the subgradient ``0`` at the origin and no ``hvp`` is
    given (the Hessian blows up there).

    Examples
    --------
    >>> p = ackley(2)
    >>> round(p.f(p.x0), 4), p.f(p.x_star), p.grad(p.x_star).tolist()
    (9.0238, 0.0, [0.0, 0.0])
    """
    d = _check_int(dim, "dim", 1)
    a, b, c = 20.0, 0.2, 2.0 * np.pi

    def f(x):
        x = _points(x, d)
        r = np.sqrt(np.mean(x**2, axis=-1))
        # Grouped as a (1 - e^{-b r}) + (e - e^{mean cos}): exactly 0 at the minimizer.
        return _value(-a * np.expm1(-b * r) + (np.e - np.exp(np.mean(np.cos(c * x), axis=-1))))

    def grad(x):
        x = _points(x, d)
        r = np.sqrt(np.mean(x**2, axis=-1, keepdims=True))
        # d r / d x = x / (d r); at r = 0 we take the subgradient 0.
        unit = np.divide(x, d * r, out=np.zeros_like(x), where=r > 0)
        ripple = np.exp(np.mean(np.cos(c * x), axis=-1, keepdims=True))
        return a * b * np.exp(-b * r) * unit + ripple * (c / d) * np.sin(c * x)

    return Problem(f"ackley(d={d})", f=f, grad=grad, x0=np.full(d, 3.0), x_star=np.zeros(d),
                   f_star=0.0, bounds=np.tile([-32.768, 32.768], (d, 1)),
                   info={"a": a, "b": b, "c": c})


def branin() -> Problem:
    r"""The Branin(-Hoo) function: two variables, three global minimizers.

    .. math::
        f(x) = (x_2 - b x_1^2 + c x_1 - r)^2 + s (1 - t) \cos x_1 + s,

    with :math:`b = 5.1 / (4\pi^2)`, :math:`c = 5/\pi`, :math:`r = 6`,
    :math:`s = 10`, :math:`t = 1/(8\pi)`, searched in
    :math:`[-5, 10] \times [0, 15]`; the standard Bayesian-optimization benchmark.

    Returns
    -------
    Problem
        ``f_star = 5 / (4 pi) = 0.397887...``, ``x_star = (-pi, 12.275)`` (the
        first minimizer; all three are in ``info["minimizers"]``), ``x0`` the
        centre of the box ``(2.5, 7.5)``, analytic ``hvp``.

    Examples
    --------
    >>> p = branin()
    >>> round(p.f_star, 6), [round(p.f(m), 6) for m in p.info["minimizers"]]
    (0.397887, [0.397887, 0.397887, 0.397887])
    """
    b, c, r, s, t = 5.1 / (4 * np.pi**2), 5.0 / np.pi, 6.0, 10.0, 1.0 / (8 * np.pi)

    def f(x):
        x = _points(x, 2)
        x1, x2 = x[..., 0], x[..., 1]
        return _value((x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * np.cos(x1) + s)

    def grad(x):
        x = _points(x, 2)
        x1, x2 = x[..., 0], x[..., 1]
        u = x2 - b * x1**2 + c * x1 - r
        return np.stack([2 * u * (c - 2 * b * x1) - s * (1 - t) * np.sin(x1), 2 * u], axis=-1)

    def hvp(x, v):
        x, v = _points(x, 2), _points(v, 2, "v")
        x1, x2 = x[..., 0], x[..., 1]
        u, du = x2 - b * x1**2 + c * x1 - r, c - 2 * b * x1
        h11 = 2 * du**2 - 4 * b * u - s * (1 - t) * np.cos(x1)
        h12 = 2 * du
        return np.stack([h11 * v[..., 0] + h12 * v[..., 1], h12 * v[..., 0] + 2 * v[..., 1]],
                        axis=-1)

    minimizers = np.array([[-np.pi, 12.275], [np.pi, 2.275], [3 * np.pi, 2.475]])
    return Problem("branin", f=f, grad=grad, hvp=hvp, x0=np.array([2.5, 7.5]),
                   x_star=minimizers[0].copy(), f_star=5.0 / (4 * np.pi),
                   bounds=np.array([[-5.0, 10.0], [0.0, 15.0]]),
                   info={"minimizers": minimizers})
