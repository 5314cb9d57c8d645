r"""Heterogeneous client objectives for federated zeroth-order optimization (chapter P08, FZooS).

Each family returns a :class:`Clients`: the clients' stacked data and one vectorized objective
``f(data, X)`` that maps points ``X (k, m, d)`` of clients ``data`` (leading axis ``k``) to values
``(k, m)``, the true gradients where they exist (for diagnostics), a start and the aggregation
weights.  Families: the official FZooS code's quadratics, shifted Ackley functions, and a black
box, one minus the F1 score of a linear classifier on label-skewed client data.

References
----------
Y. Shu, X. Lin, Z. Dai and B. K. H. Low, arXiv 2308.04077 (``shu2024federated``), official code
``funcs/synthetics.py``; D. H. Ackley, A connectionist machine for genetic hillclimbing, 1987.

Book: chapters/federated/fzoos.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import as_rng
from ..validate import check_int, check_real
from .core import dirichlet_partition, stack_clients, weighted_mean

__all__ = ["Clients", "quadratic_clients", "ackley_clients", "f1_clients"]


@dataclass
class Clients:
    """Client objectives: ``f(data, X)`` maps ``(k, m, d)`` points to ``(k, m)`` values of clients ``data``."""

    name: str
    f: object
    data: dict
    x0: np.ndarray
    weights: np.ndarray
    grad: object = None

    def F(self, x):
        """The global objective at one point ``x`` (logging: not counted)."""
        n = len(self.weights)
        return float(weighted_mean(self.f(self.data, np.broadcast_to(x, (n, 1, len(x))))[:, 0], self.weights))

    def gradF(self, X):
        """``(..., d) -> (..., d)``: the true global gradient at points ``X`` (diagnostics only)."""
        X = np.asarray(X)
        G = self.grad(self.data, np.broadcast_to(X.reshape(1, -1, X.shape[-1]), (len(self.weights),) +
                                                  (X.size // X.shape[-1], X.shape[-1])))
        return weighted_mean(G, self.weights).reshape(X.shape)


def _split(n, div, rng):
    return 1.0 + div * (rng.dirichlet(np.full(n, 1.0 / n), size=None) - 1.0 / n)


def quadratic_clients(n_clients=5, dim=10, div=0.5, rng=0) -> Clients:
    r"""The official code's quadratics :math:`f_i = \frac{0.1}{d}(c_i^\top p^2 + c_i'^\top p + 1)`, :math:`p = 20x-10`.

    ``c_{ij}, c'_{ij} = 1 + div (D_{ij} - 1/N)`` with ``(D_{1j}, ..., D_{Nj}) ~ Dirichlet(1/N)``, so
    the clients' coefficients average to 1: ``F`` is minimized at ``x = 0.475`` with
    ``F* = 0.1 (1/d - 1/4)``; ``div`` sets the heterogeneity.
    """
    gen, n, d = as_rng(rng), check_int(n_clients, "n_clients", low=1), check_int(dim, "dim", low=1)
    div = check_real(div, "div", low=0.0, high=float(n), high_open=True)
    c = np.stack([_split(n, div, gen) for _ in range(2 * d)], axis=1)
    data = {"c": c[:, :d], "c1": c[:, d:]}

    def f(data, X):
        p = 20.0 * X - 10.0
        return 0.1 / d * (np.einsum("kmd,kd->km", p**2, data["c"]) + np.einsum("kmd,kd->km", p, data["c1"]) + 1)

    def grad(data, X):
        return 0.1 / d * 20.0 * (2.0 * (20.0 * X - 10.0) * data["c"][:, None] + data["c1"][:, None])

    return Clients(f"quadratic(N={n}, d={d}, div={div:g})", f, data, np.zeros(d), np.ones(n), grad)


def ackley_clients(n_clients=5, dim=10, div=0.5, rng=0) -> Clients:
    r"""Shifted Ackley functions :math:`f_i(x) = A(4x - 2 - s_i)`, shifts ``div * N(0, I)`` centred over clients."""
    gen, n, d = as_rng(rng), check_int(n_clients, "n_clients", low=1), check_int(dim, "dim", low=1)
    s = check_real(div, "div", low=0.0) * gen.standard_normal((n, d))
    a, b, c = 20.0, 0.2, 2 * np.pi

    def f(data, X):
        u = 4.0 * X - 2.0 - data["s"][:, None]
        return -a * np.expm1(-b * np.sqrt(np.mean(u**2, -1))) + np.e - np.exp(np.mean(np.cos(c * u), -1))

    def grad(data, X):
        u = 4.0 * X - 2.0 - data["s"][:, None]
        r = np.sqrt(np.mean(u**2, -1, keepdims=True))
        ripple = np.exp(np.mean(np.cos(c * u), -1, keepdims=True)) * (c / d) * np.sin(c * u)
        return 4.0 * (a * b * np.exp(-b * r) * u / (d * np.maximum(r, 1e-300)) + ripple)

    return Clients(f"ackley(N={n}, d={d}, div={div:g})", f, {"s": s - s.mean(0)}, np.full(d, 0.1), np.ones(n), grad)


def f1_clients(n_clients=5, dim=10, n_samples=1000, alpha=0.5, rng=0) -> Clients:
    r"""A black box: :math:`f_i(w)` is one minus the F1 score of the classifier :math:`\mathrm{sign}(a^\top w)`.

    Two Gaussian classes in ``dim`` dimensions, split over clients with Dirichlet label skew
    (:func:`~optlab.federated.core.dirichlet_partition`); the metric is piecewise constant in ``w``:
    no gradient exists, the weights are the clients' sample counts.
    """
    gen, n, d = as_rng(rng), check_int(n_clients, "n_clients", low=1), check_int(dim, "dim", low=2)
    y = (gen.random(check_int(n_samples, "n_samples", low=2 * n)) < 0.4).astype(int)
    A = gen.standard_normal((len(y), d)) + np.outer(2 * y - 1, np.linspace(1.0, -0.5, d)) + 0.5
    parts = dirichlet_partition(y, n, alpha, min_size=5, rng=gen)
    A_, y_, mask = stack_clients(parts, A, y)

    def f(data, X):
        pred = np.einsum("knd,kmd->kmn", data["A"], X) > 0
        tp = np.sum(pred & data["pos"][:, None], -1)
        wrong = np.sum((pred != data["pos"][:, None]) & data["mask"][:, None], -1)
        return 1.0 - 2.0 * tp / np.maximum(2.0 * tp + wrong, 1.0)

    data = {"A": A_, "pos": (y_ == 1) & mask, "mask": mask}
    return Clients(f"1 - F1 (N={n}, d={d})", f, data, np.zeros(d), mask.sum(1).astype(float))
