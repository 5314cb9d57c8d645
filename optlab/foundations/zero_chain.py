r"""The zero-chain: the hard instances behind the lower bounds for finding stationary points.

:func:`chain_f` and :func:`chain_grad` are the chain :math:`\bar f_T` of Carmon et al., built
from the gate :func:`psi` and the step :func:`phi`; :func:`hard_instance` scales it into an
:math:`L`-smooth function with gap at most :math:`\Delta` whose gradient stays above
:math:`2\epsilon` until all :math:`T(\epsilon)` links (:func:`chain_length`) are uncovered;
:func:`chain_coordinates` and :func:`progress` read a point in chain units.
:func:`stochastic_chain` is the stochastic version of Arjevani et al., where a query reveals
the next link only with probability :math:`q`. The driver that runs methods on these
instances is :mod:`optlab.foundations.lower_bounds`.

References
----------
C. Zhang and T. Li, Quantum lower bounds for finding stationary points of nonconvex
functions, ICML 2023, arXiv:2212.03906 (``zhang2023quantum``); the chain is from Y. Carmon,
J. C. Duchi, O. Hinder and A. Sidford, Math. Program. 184, 2020, arXiv:1710.11606
(``carmon2020lower``), its stochastic version from Y. Arjevani et al., Math. Program. 199,
2023, arXiv:1912.02365 (``arjevani2023lower``).

Book: chapters/foundations/lower_bounds.ipynb
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from ..core import Problem, as_rng
from ..validate import check_array, check_bool, check_int, check_positive, check_probability, check_real, describe

__all__ = ["ELL1", "ANCHOR", "psi", "dpsi", "phi", "dphi", "chain_f", "chain_grad", "chain_length",
           "hard_instance", "chain_coordinates", "progress", "stochastic_chain"]

ELL1 = 152.0                  # Lipschitz constant of the chain's gradient (Carmon et al.)
ANCHOR = 1.0                  # x_0: the fixed coordinate that starts the chain
SQRT_E, SQRT_2PIE = math.sqrt(math.e), math.sqrt(2 * math.pi * math.e)


def _floats(t, name="t"):
    """``t`` as a float array (no copy, no finiteness check: these are elementwise maps)."""
    try:
        return np.asarray(t, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers, got {describe(t)}") from None


def psi(t):
    r"""The gate :math:`\Psi(t) = \exp(1 - 1/(2t-1)^2)` for :math:`t > 1/2`, exactly 0 otherwise."""
    t = _floats(t)
    on = t > 0.5
    z = np.where(on, 2 * t - 1, 1.0)           # a safe denominator where the gate is closed
    return np.where(on, np.exp(1 - 1 / z ** 2), 0.0)


def dpsi(t):
    r""":math:`\Psi'(t) = \Psi(t)\, 4/(2t-1)^3` for :math:`t > 1/2`, 0 otherwise."""
    t = _floats(t)
    on = t > 0.5
    z = np.where(on, 2 * t - 1, 1.0)
    return np.where(on, np.exp(1 - 1 / z ** 2) * 4 / z ** 3, 0.0)


def phi(t):
    r""":math:`\Phi(t) = \sqrt e \int_{-\infty}^t e^{-s^2/2}\,ds = \sqrt{2\pi e}\,N(t)`, N the normal cdf."""
    return SQRT_2PIE * ndtr(_floats(t))


def dphi(t):
    r""":math:`\Phi'(t) = \sqrt e\, e^{-t^2/2}`."""
    return SQRT_E * np.exp(-0.5 * _floats(t) ** 2)


def _shift(x, fill):
    """``(fill, x_1, ..., x_{T-1})`` along the last axis."""
    return np.concatenate([np.full(x.shape[:-1] + (1,), fill), x[..., :-1]], axis=-1)


def chain_f(x):
    r"""The chain :math:`\bar f_T(x) = \sum_{i=1}^T \Psi(-x_{i-1})\Phi(-x_i) - \Psi(x_{i-1})\Phi(x_i)`.

    With ``ANCHOR = 1`` in place of :math:`x_0`, the first term is :math:`-\Psi(1)\Phi(x_1)`.

    Row-wise: ``x`` of shape ``(T,)`` gives a float, ``(R, T)`` gives ``(R,)``.

    >>> round(float(chain_f(np.zeros(3))), 4)   # -Psi(1) Phi(0) = -sqrt(2 pi e)/2
    -2.0664
    """
    x = check_array(x, "x", ndim=(1, 2))
    prev = _shift(x, ANCHOR)
    return np.sum(psi(-prev) * phi(-x) - psi(prev) * phi(x), axis=-1)


def chain_grad(x):
    r"""The gradient of :func:`chain_f`, row-wise.

    :math:`\partial_j \bar f_T = -\Psi(|x_{j-1}|)\Phi'(x_j) - \Psi'(|x_j|)\Phi(\mathrm{sgn}(x_j) x_{j+1})`
    (the second term absent for :math:`j = T`): of :math:`\Psi(t)` and :math:`\Psi(-t)` at most one
    is nonzero, and :math:`\Phi'` is even. So :math:`\partial_j` vanishes unless
    :math:`|x_{j-1}| > 1/2` or :math:`|x_j| > 1/2`: the zero-chain property.

    >>> g = chain_grad(np.zeros(3))              # only the first link is visible from 0
    >>> round(float(g[0]), 4), (g != 0).tolist()
    (-1.6487, [True, False, False])
    """
    x = check_array(x, "x", ndim=(1, 2))
    a = np.abs(x)
    g = -psi(_shift(a, abs(ANCHOR))) * dphi(x)        # -Psi(|x_{j-1}|) Phi'(x_j)
    g[..., :-1] -= dpsi(a[..., :-1]) * phi(np.sign(x[..., :-1]) * x[..., 1:])
    return g


def chain_length(eps, *, L=ELL1, delta=24.0) -> int:
    r"""The number of links of the hard instance, :math:`T(\epsilon) = \lfloor \Delta L/(48\ell_1\epsilon^2) \rfloor`.

    >>> chain_length(0.1), chain_length(0.05)     # 1/(2 eps^2) with the defaults
    (50, 200)
    """
    eps, L, delta = check_positive(eps, "eps"), check_positive(L, "L"), check_positive(delta, "delta")
    return int(math.floor(delta * L / (48 * ELL1 * eps ** 2) + 1e-9))


def hard_instance(eps, *, L=ELL1, delta=24.0, dim=None, rng=None) -> Problem:
    r"""The hard instance :math:`f(x) = \frac{L\lambda^2}{\ell_1} \bar f_T(U^\top x/\lambda)`.

    With :math:`\lambda = 2\epsilon\ell_1/L`, :math:`f` is :math:`L`-smooth, :math:`f(0) - \inf f \le \Delta`,
    and :math:`\|\nabla f(x)\| > 2\epsilon` unless :math:`|(U^\top x)_T| \ge \lambda`; ``T`` is
    :func:`chain_length`. ``dim=None`` means :math:`U = I` (``dim = T``); an int ``dim >= T``
    draws :math:`U` with ``T`` orthonormal columns from ``rng`` (a random rotation). ``x0 = 0``;
    ``info`` holds ``T``, ``lam``, ``scale`` (:math:`L\lambda^2/\ell_1`), ``U``, ``eps``, ``delta``.

    >>> p = hard_instance(0.1)
    >>> p.dim, round(p.info["lam"], 4), round(p.info["scale"], 4)
    (50, 0.2, 0.04)
    """
    T, L = chain_length(eps, L=L, delta=delta), check_positive(L, "L")
    if T < 1:
        raise ValueError(f"eps must be small enough for a chain of at least one link, "
                         f"got eps={eps:g} (T = 0)")
    lam = 2 * eps * ELL1 / L
    scale = L * lam ** 2 / ELL1
    U = None
    if dim is not None:                     # a random frame: T orthonormal columns
        dim = check_int(dim, "dim", low=T)
        U = np.linalg.qr(as_rng(rng).standard_normal((dim, T)))[0]
    to_chain = (lambda x: x / lam) if U is None else (lambda x: (x @ U) / lam)
    from_chain = (lambda g: g) if U is None else (lambda g: g @ U.T)

    def f(x):
        return scale * chain_f(to_chain(np.asarray(x, dtype=float)))

    def grad(x):
        z = to_chain(np.asarray(x, dtype=float))
        return (scale / lam) * from_chain(chain_grad(z))

    x0 = np.zeros(T if U is None else dim)
    info = {"T": T, "lam": lam, "scale": scale, "U": U, "eps": eps, "delta": delta}
    return Problem(f"zero-chain(T={T}, eps={eps:g})", f=f, grad=grad, x0=x0, L=L,
                   info=info)


def _instance(problem) -> Problem:
    """``problem``, checked to be made by :func:`hard_instance`."""
    if not isinstance(problem, Problem) or "lam" not in problem.info or "U" not in problem.info:
        raise TypeError(f"problem must be a Problem made by hard_instance, got {describe(problem)}")
    return problem


def chain_coordinates(problem: Problem, x, *, gradient=False):
    r"""A point (or a gradient, ``gradient=True``) of a :func:`hard_instance` in chain units.

    :math:`z = U^\top x / \lambda`, and for a gradient :math:`U^\top g\,\lambda/\mathrm{scale}`
    (which is :math:`\nabla \bar f_T(z)`).

    >>> p = hard_instance(0.2)
    >>> chain_coordinates(p, np.full(12, 0.4))[:3].round(4).tolist()   # lambda = 0.4
    [1.0, 1.0, 1.0]
    """
    info = _instance(problem).info
    x = check_array(x, "x", ndim=(1, 2), finite=False)
    if x.shape[-1] != problem.dim:
        raise ValueError(f"x must have {problem.dim} entries in its last axis, got shape {x.shape}")
    return _to_chain(info, x, check_bool(gradient, "gradient"))


def _to_chain(info, x, gradient):
    """Chain units of a point (``gradient=False``) or of a gradient, unchecked."""
    z = x if info["U"] is None else x @ info["U"]
    return z * info["lam"] / info["scale"] if gradient else z / info["lam"]


def progress(z, tol=0.0):
    r"""The progress :math:`\mathrm{prog}(z) = \max\{i : |z_i| > \mathrm{tol}\}` (0 if none), row-wise.

    >>> progress([0.3, -2.0, 0.0, 0.0]), progress([[0.3, 0.0], [0.0, 0.0]]).tolist()
    (2, [1, 0])
    """
    return _progress(check_array(z, "z", ndim=(1, 2)), check_real(tol, "tol", low=0.0))


def _progress(z, tol):
    """:func:`progress`, unchecked."""
    big = np.abs(z) > tol
    out = np.where(big.any(axis=-1), big.shape[-1] - np.argmax(big[..., ::-1], axis=-1), 0)
    return int(out) if out.ndim == 0 else out


def stochastic_chain(T: int, q) -> Problem:
    r"""The chain with a stochastic gradient that reveals the next link only with probability ``q``.

    :math:`g(x, \xi) = \nabla \bar f_T(x)` except on the coordinates beyond
    :math:`\mathrm{prog}_{1/4}(x)`, which are multiplied by :math:`\xi/q`,
    :math:`\xi \sim \mathrm{Bernoulli}(q)` (one draw per query and replica): unbiased, with
    variance :math:`\frac{1-q}{q}(\partial_{j}\bar f_T)^2`, :math:`j = \mathrm{prog}_{1/4}(x) + 1`.
    Row-wise ``stoch_grad(x, rng)``; in chain units, ``L = ELL1``.

    >>> s = stochastic_chain(3, 0.5)
    >>> g = s.stoch_grad(np.zeros((20, 3)), np.random.default_rng(0))
    >>> sorted(set((g[:, 0] / chain_grad(np.zeros(3))[0]).tolist()))   # xi / q
    [0.0, 2.0]
    """
    T, q = check_int(T, "T", low=1), check_probability(q, "q")
    if q == 0:
        raise ValueError("q must be in (0, 1], got 0")

    def stoch_grad(x, rng):
        x = np.asarray(x, dtype=float)
        g = chain_grad(x)
        beyond = np.arange(T) >= np.asarray(_progress(x, 0.25))[..., None]
        xi = rng.random(x.shape[:-1] + (1,)) < q      # one draw per query and replica
        return np.where(beyond, g * xi / q, g)

    return Problem(f"stochastic zero-chain(T={T}, q={q:g})", f=chain_f, grad=chain_grad,
                   x0=np.zeros(T), stoch_grad=stoch_grad, L=ELL1, info={"T": T, "q": q})
