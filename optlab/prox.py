r"""Proximal operators and projections, row-wise on batches of replicas.

The proximal map of :math:`\tau h` is
:math:`\mathrm{prox}_{\tau h}(v) = \arg\min_x \{h(x) + \tfrac{1}{2\tau}\|x - v\|^2\}`;
a projection is the proximal map of an indicator.  Every function here takes one
point ``(d,)`` or a batch ``(R, d)`` and acts on each row, so the same operator
serves a single run and a thousand replicas.  Chapters pass them to methods as
``prox(v, lr)`` (see :func:`l1_prox`) and ``project(x)``.

Examples
--------
>>> soft_threshold(np.array([-2.0, 0.3, 1.5]), 0.5).tolist()
[-1.5, 0.0, 1.0]
>>> np.round(project_simplex(np.array([0.5, 0.5, 0.5])), 6).tolist()
[0.333333, 0.333333, 0.333333]

References
----------
N. Parikh and S. Boyd, Proximal algorithms, Foundations and Trends in Optimization 1(3), 2014
(``parikh2014proximal``): sections 6.1 (l1, group norms) and 6.2 (projections).
L. Condat, Fast projection onto the simplex and the l1 ball, Mathematical Programming 158, 2016.

Book: chapters/foundations/last_iterate.ipynb
"""
from __future__ import annotations

import numpy as np

from .validate import check_array, check_real

__all__ = ["soft_threshold", "l1_prox", "group_soft_threshold", "project_box", "project_l2_ball",
           "project_linf_ball", "project_simplex", "project_l1_ball"]


def _threshold(tau, name="tau"):
    """A threshold >= 0: a number, or an array broadcastable against the point."""
    if np.ndim(tau) == 0:
        return check_real(tau, name, low=0.0)
    tau = check_array(tau, name)
    if np.any(tau < 0):
        raise ValueError(f"{name} must be >= 0 everywhere")
    return tau


def soft_threshold(v, tau):
    r"""Soft-thresholding, the prox of :math:`\tau\|\cdot\|_1`: :math:`\mathrm{sign}(v)\max(|v| - \tau, 0)`.

    ``tau >= 0`` is a number or an array broadcastable against ``v`` (one threshold per coordinate).
    """
    v = check_array(v, "v", finite=False)
    return np.sign(v) * np.maximum(np.abs(v) - _threshold(tau), 0.0)


def l1_prox(lam: float):
    r"""The ``prox(v, lr)`` of :math:`h = \lambda\|\cdot\|_1`: soft-thresholding at ``lr * lam``.

    >>> l1_prox(2.0)(np.array([3.0, -0.5]), 0.5).tolist()
    [2.0, -0.0]
    """
    lam = check_real(lam, "lam", low=0.0)

    def prox(v, lr):
        return soft_threshold(v, check_real(lr, "lr", low=0.0) * lam)

    return prox


def group_soft_threshold(v, tau):
    r"""The prox of :math:`\tau\|\cdot\|_2` on each row: shrink its norm by ``tau`` (zero if it is below).

    >>> np.round(group_soft_threshold(np.array([3.0, 4.0]), 1.0), 12).tolist()
    [2.4, 3.2]
    """
    v = check_array(v, "v", finite=False)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    scale = np.maximum(1.0 - _threshold(tau) / np.where(norm > 0, norm, 1.0), 0.0)
    return v * scale


def project_box(x, low, high):
    r"""Projection onto the box :math:`[\mathrm{low}, \mathrm{high}]` (numbers or per-coordinate arrays)."""
    x = check_array(x, "x", finite=False)
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    if np.any(np.isnan(low)) or np.any(np.isnan(high)) or np.any(low > high):
        raise ValueError("low and high must be numbers or arrays with low <= high")
    return np.clip(x, low, high)


def project_l2_ball(x, radius: float = 1.0):
    r"""Projection onto :math:`\{x: \|x\|_2 \le r\}`, row-wise."""
    x = check_array(x, "x", finite=False)
    radius = check_real(radius, "radius", low=0.0)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x * np.minimum(1.0, radius / np.where(norm > 0, norm, 1.0))


def project_linf_ball(x, radius: float = 1.0):
    r"""Projection onto :math:`\{x: \|x\|_\infty \le r\}`: clipping each coordinate."""
    radius = check_real(radius, "radius", low=0.0)
    return project_box(x, -radius, radius)


def project_simplex(v, z: float = 1.0):
    r"""Projection onto the simplex :math:`\{x \ge 0, \sum_i x_i = z\}`, row-wise, by sorting.

    With :math:`u` the row sorted in decreasing order, the projection is
    :math:`\max(v - \theta, 0)` where :math:`\theta = (\sum_{i \le k} u_i - z)/k` for the
    largest :math:`k` with :math:`u_k > (\sum_{i \le k} u_i - z)/k`.  Cost :math:`O(d \log d)` per row.
    """
    v = check_array(v, "v", ndim=(1, 2))
    z = check_real(z, "z", low=0.0, low_open=True)
    V = np.atleast_2d(v)
    u = -np.sort(-V, axis=1)
    css = np.cumsum(u, axis=1) - z
    k = np.arange(1, V.shape[1] + 1)
    rho = np.sum(u * k > css, axis=1)                     # the number of positive entries
    theta = css[np.arange(len(V)), rho - 1] / rho
    out = np.maximum(V - theta[:, None], 0.0)
    return out if v.ndim == 2 else out[0]


def project_l1_ball(v, radius: float = 1.0):
    r"""Projection onto :math:`\{x: \|x\|_1 \le r\}`, row-wise: soft-thresholding at the simplex's threshold."""
    v = check_array(v, "v", ndim=(1, 2))
    radius = check_real(radius, "radius", low=0.0, low_open=True)
    V = np.atleast_2d(v)
    inside = np.abs(V).sum(axis=1) <= radius
    w = project_simplex(np.abs(V), radius)
    out = np.where(inside[:, None], V, np.sign(V) * w)
    return out if v.ndim == 2 else out[0]
