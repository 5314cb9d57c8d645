r"""A set-based ReLU value network, trained by hand-written backpropagation, and its big-M MILP encoding.

:func:`value_net` is the network of the Neur2RO chapter (per-item embeddings of the first-stage decision and of
the scenario, averaged, then a value network); :func:`train_value_net` fits it with Adam.  :class:`ReluMILP`
builds a mixed-integer program for ``scipy.optimize.milp`` (HiGHS) in which a ReLU layer
:math:`h=\max(z,0)` of an affine expression :math:`z` of the decision variables becomes, with interval bounds
:math:`l\le z\le u` and a binary :math:`\delta`, the exact big-M constraints
:math:`h\ge z,\ h\le z-l(1-\delta),\ 0\le h\le u\delta`.

References
----------
J. Dumouchelle, E. Julien, J. Kurtz and E. B. Khalil, ICLR 2024, arXiv:2310.04345 (``dumouchelle2024neur2ro``);
the big-M encoding of ReLU networks: M. Fischetti and J. Jo, Constraints 23, 2018 (``fischetti2018deep``).

Book: chapters/constrained/robust_two_stage.ipynb
"""
from __future__ import annotations

import contextlib
import os
import sys

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from ..core import Trace, as_rng
from ..validate import check_array, check_int, check_positive, describe

__all__ = ["value_net", "train_value_net", "check_params", "ReluMILP", "RELU_INTEGRALITY"]

RELU_INTEGRALITY = 1  # the indicator of each ReLU is binary (0 gives the LP relaxation of the encoding)
MIP_GAP = 1e-6        # relative optimality gap of HiGHS


def _relu(z):
    return np.maximum(z, 0.0)


_SHAPES = {"W1": 2, "b1": 1, "W2": 2, "b2": 1, "W3": 2, "b3": 1, "W4": 2, "b4": 1, "W5": 2, "b5": 1, "W6": 2,
           "b6": 1}


def check_params(params, name: str = "params") -> dict:
    """Check the value network's parameters (the named blocks ``train_value_net(...).x``)."""
    if not isinstance(params, dict) or any(k not in params for k in _SHAPES):
        raise TypeError(f"{name} must be a dict with blocks W1, b1, ..., W6, b6 (train_value_net(...).x), "
                        f"got {describe(params)}")
    for k, nd in _SHAPES.items():
        check_array(params[k], f"{name}[{k!r}]", ndim=nd)
    if params["W1"].shape[0] != 3 or params["W6"].shape[1] != 1 or \
            params["W5"].shape[0] != params["W2"].shape[1] + params["W4"].shape[1]:
        raise ValueError(f"{name} has inconsistent layer shapes")
    return params


def value_net(params: dict, FX, FZ, parts: bool = False):
    r"""The set-based value network on per-item inputs ``FX, FZ (B, n, 3)``: ``(B,)`` predictions.

    :math:`\mathrm{NN}=v([\phi_x(\tfrac1n\sum_i\rho_x(fx_i)),\phi_\xi(\tfrac1n\sum_i\rho_\xi(fz_i))])`,
    every layer ReLU but the last.  With ``parts``, also the two embeddings ``(ex, ez)``, each ``(B, E)``.

    >>> p = {k: np.zeros(s) for k, s in [("W1", (3, 2)), ("b1", 2), ("W2", (2, 1)), ("b2", 1), ("W3", (3, 2)),
    ...      ("b3", 2), ("W4", (2, 1)), ("b4", 1), ("W5", (2, 1)), ("b5", 1), ("W6", (1, 1)), ("b6", 1)]}
    >>> value_net(p | {"b6": np.array([0.5])}, np.ones((4, 3, 3)), np.ones((4, 3, 3))).tolist()
    [0.5, 0.5, 0.5, 0.5]
    """
    p = params
    ex = _relu(_relu(FX @ p["W1"] + p["b1"]).mean(1) @ p["W2"] + p["b2"])
    ez = _relu(_relu(FZ @ p["W3"] + p["b3"]).mean(1) @ p["W4"] + p["b4"])
    out = (_relu(np.concatenate([ex, ez], 1) @ p["W5"] + p["b5"]) @ p["W6"] + p["b6"])[:, 0]
    return (out, ex, ez) if parts else out


def _init(rng, hidden, embed, value):
    shapes = {"W1": (3, hidden), "W2": (hidden, embed), "W3": (3, hidden), "W4": (hidden, embed),
              "W5": (2 * embed, value), "W6": (value, 1)}
    p = {k: rng.normal(0.0, np.sqrt(2.0 / s[0]), s) for k, s in shapes.items()}
    return p | {"b" + k[1:]: np.zeros(s[1]) for k, s in shapes.items()}


def _loss_grad(p, FX, FZ, y):
    """Mean squared error and its gradient in every parameter (backpropagation by hand)."""
    z1 = FX @ p["W1"] + p["b1"]
    a1 = _relu(z1).mean(1)
    z2 = a1 @ p["W2"] + p["b2"]
    z3 = FZ @ p["W3"] + p["b3"]
    a3 = _relu(z3).mean(1)
    z4 = a3 @ p["W4"] + p["b4"]
    ex, ez = _relu(z2), _relu(z4)
    h = np.concatenate([ex, ez], 1)
    z5 = h @ p["W5"] + p["b5"]
    a5 = _relu(z5)
    r = (a5 @ p["W6"] + p["b6"])[:, 0] - y
    d6 = 2 * r[:, None] / len(y)
    d5 = (d6 @ p["W6"].T) * (z5 > 0)
    dh = d5 @ p["W5"].T
    E, n = ex.shape[1], FX.shape[1]
    d2, d4 = dh[:, :E] * (z2 > 0), dh[:, E:] * (z4 > 0)
    d1 = (d2 @ p["W2"].T)[:, None] / n * (z1 > 0)
    d3 = (d4 @ p["W4"].T)[:, None] / n * (z3 > 0)
    g = {"W6": a5.T @ d6, "b6": d6.sum(0), "W5": h.T @ d5, "b5": d5.sum(0), "W2": a1.T @ d2, "b2": d2.sum(0),
         "W4": a3.T @ d4, "b4": d4.sum(0), "W1": np.einsum("bnd,bnh->dh", FX, d1), "b1": d1.sum((0, 1)),
         "W3": np.einsum("bnd,bnh->dh", FZ, d3), "b3": d3.sum((0, 1))}
    return float(np.mean(r ** 2)), g


def train_value_net(FX, FZ, y, *, hidden: int = 16, embed: int = 8, value: int = 8, lr: float = 3e-3,
                    n_iters: int = 20, batch_size: int = 256, rng=None, callback=None):
    r"""Fit the set-based value network to labelled pairs by Adam on minibatches.

    Parameters
    ----------
    FX, FZ : array_like, shape (B, n, 3)
        Per-item inputs from the first-stage decision and from the scenario (``robust_two_stage.features``).
    y : array_like, shape (B,)
        Labels (``robust_two_stage.labels``); standardized for training, the scaling folded back into the
        last layer.
    hidden, embed, value : int
        Widths H (per-item layers), E (post-aggregation embeddings) and V (value layer).
    lr : float
        Adam's step size (moments 0.9 and 0.999).
    n_iters : int
        Epochs (passes over the data in a random order).
    batch_size : int
        Minibatch size.
    rng : None, int or numpy.random.Generator
        Initialization and minibatch order.
    callback : callable or None
        ``callback(record) -> bool`` after each epoch; True stops training.

    Returns
    -------
    Result
        ``x``: the parameters, named blocks ``W1, b1, ..., W6, b6``; ``f``: the last epoch's mean training
        loss (mean squared error in the labels' units). History column ``loss`` per epoch; ``n_evals``
        counts minibatch gradients (``grad``).

    Notes
    -----
    The network is :math:`\mathrm{NN}=v([\phi_x(\frac1n\sum_i\rho_x(fx_i)),\phi_\xi(\frac1n\sum_i
    \rho_\xi(fz_i))])` with one-layer ReLU maps :math:`\rho` (width H), :math:`\phi` (width E) and
    :math:`v` (one ReLU layer of width V, then linear): the decision and the scenario are embedded
    separately (the architecture of Neur2RO, which makes the main problem cheap: a scenario's embedding is a
    constant there).  Backpropagation by hand, checked against finite differences in the tests.  Cost per
    epoch: :math:`O(Bn(3H+HE)+B(2E V))`.  No guarantee: the fit is what it is, the chapter measures it.

    References
    ----------
    J. Dumouchelle et al., arXiv:2310.04345 (``dumouchelle2024neur2ro``); D. P. Kingma and J. Ba, Adam,
    arXiv:1412.6980 (``kingma2015adam``).

    Book: chapters/constrained/robust_two_stage.ipynb

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> FX, FZ = rng.random((64, 3, 3)), rng.random((64, 3, 3))
    >>> res = train_value_net(FX, FZ, FX[:, :, 0].mean(1), hidden=4, embed=2, value=2, n_iters=3, rng=0)
    >>> sorted(res.x)[:3], res.n_evals, len(res.history["loss"])
    (['W1', 'W2', 'W3'], {'grad': 3}, 3)
    """
    FX, FZ = check_array(FX, "FX", ndim=3), check_array(FZ, "FZ", ndim=3)
    y = check_array(y, "y", shape=(len(FX),))
    if FZ.shape != FX.shape or FX.shape[2] != 3:
        raise ValueError(f"FZ must have the shape of FX, (B, n, 3), got FX {FX.shape} and FZ {FZ.shape}")
    hidden, embed, value = (check_int(v, k, low=1) for k, v in
                            (("hidden", hidden), ("embed", embed), ("value", value)))
    lr, n_iters = check_positive(lr, "lr"), check_int(n_iters, "n_iters", low=1)
    batch_size, rng = check_int(batch_size, "batch_size", low=1), as_rng(rng)
    mu, sd = float(y.mean()), float(y.std()) or 1.0
    y = (y - mu) / sd                                       # standardized labels, undone at the end
    p = _init(rng, hidden, embed, value)
    m, v = {k: np.zeros_like(a) for k, a in p.items()}, {k: np.zeros_like(a) for k, a in p.items()}
    trace = Trace("train_value_net", {"hidden": hidden, "embed": embed, "value": value, "lr": lr,
                                      "batch_size": batch_size}, callback)
    k, loss = 0, np.nan
    for t in range(n_iters):
        perm, losses = rng.permutation(len(y)), []
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            loss, g = _loss_grad(p, FX[idx], FZ[idx], y[idx])
            trace.count("grad")
            losses.append(loss)
            k += 1
            for name in p:                                  # Adam, beta = (0.9, 0.999)
                m[name] = 0.9 * m[name] + 0.1 * g[name]
                v[name] = 0.999 * v[name] + 0.001 * g[name] ** 2
                p[name] = p[name] - lr * m[name] / (1 - 0.9 ** k) / (np.sqrt(v[name] / (1 - 0.999 ** k)) + 1e-8)
        if trace.diverged(p, t + 1) or trace.log(t + 1, loss=np.mean(losses)):
            break
    p["W6"], p["b6"] = p["W6"] * sd, p["b6"] * sd + mu
    return trace.result(p, float(np.mean(losses)) * sd ** 2, n_iters=t + 1)


@contextlib.contextmanager
def _quiet_stdout():
    """Silence the C-level standard output while HiGHS runs: on some models its branch and bound prints a
    debug line (``HighsMipSolverData::transformNewIntegerFeasibleSolution``) that scipy cannot turn off."""
    fd = 1                                            # where the C library writes, also under Jupyter
    sys.stdout.flush()
    saved, null = os.dup(fd), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(null)


class ReluMILP:
    r"""A mixed-integer linear program built layer by layer; expressions are pairs ``(M, c)`` meaning
    :math:`Mv + c` over the variables :math:`v` created so far.

    >>> m = ReluMILP()
    >>> v = m.add(1, -1.0, 2.0)                 # one continuous variable in [-1, 2]
    >>> h = m.relu(m.var(v))                    # h = max(v, 0), exactly
    >>> round(m.solve(h, maximize=True)[1], 6), round(m.solve(m.affine(np.array([[1.0]]), [-1.0], h))[1], 6)
    (2.0, -1.0)
    """

    def __init__(self):
        self.lb, self.ub, self.integrality, self.rows, self.lo, self.hi = [], [], [], [], [], []

    def add(self, k: int, lb, ub, integer: int = 0) -> np.ndarray:
        """``k`` new variables with bounds ``[lb, ub]`` (binary if ``integer``); their indices."""
        start = len(self.lb)
        self.lb += list(np.broadcast_to(lb, (k,)).astype(float))
        self.ub += list(np.broadcast_to(ub, (k,)).astype(float))
        self.integrality += [int(integer)] * k
        return np.arange(start, start + k)

    def var(self, idx) -> tuple:
        """The expression of variables ``idx``."""
        M = np.zeros((len(idx), len(self.lb)))
        M[np.arange(len(idx)), idx] = 1.0
        return M, np.zeros(len(idx))

    def _pad(self, M):
        return np.hstack([M, np.zeros((len(M), len(self.lb) - M.shape[1]))])

    def affine(self, W, b, expr) -> tuple:
        """The expression :math:`W^\\top a + b` of an expression :math:`a` (a layer ``a @ W + b``)."""
        M, c = expr
        return np.asarray(W).T @ M, np.asarray(W).T @ c + np.asarray(b, dtype=float)

    def bounds(self, expr) -> tuple:
        """Interval bounds of an expression over the variables' boxes."""
        M, c = expr
        lb, ub = np.array(self.lb[:M.shape[1]]), np.array(self.ub[:M.shape[1]])
        return c + np.minimum(M * lb, M * ub).sum(1), c + np.maximum(M * lb, M * ub).sum(1)

    def constrain(self, expr, lo, hi) -> None:
        """``lo <= expr <= hi`` row by row."""
        M, c = expr
        self.rows.append(M)
        self.lo += list(np.broadcast_to(lo, len(c)) - c)
        self.hi += list(np.broadcast_to(hi, len(c)) - c)

    def relu(self, expr) -> tuple:
        r"""The expression :math:`h=\max(z,0)` of ``expr`` = :math:`z`, with the big-M constraints."""
        lo, hi = self.bounds(expr)
        k = len(lo)
        h = self.add(k, 0.0, np.maximum(hi, 0.0))
        d = self.add(k, 0.0, 1.0, RELU_INTEGRALITY)
        M, c = self._pad(expr[0]), expr[1]
        rows = np.arange(k)
        E = -M
        E[rows, h] += 1.0                                     # h - z
        self.constrain((E, -c), 0.0, np.inf)                  # h >= z
        E2 = E.copy()
        E2[rows, d] = -np.minimum(lo, 0.0)          # h - z - l d <= -l: h <= z - l(1 - d)
        self.constrain((E2, -c), -np.inf, -np.minimum(lo, 0.0))
        E3 = np.zeros_like(E)
        E3[rows, h], E3[rows, d] = 1.0, -np.maximum(hi, 0.0)  # h <= u d
        self.constrain((E3, np.zeros(k)), -np.inf, 0.0)
        return self.var(h)

    def solve(self, objective, maximize: bool = False, presolve: bool = True) -> tuple:
        """Minimize (or maximize) a one-row expression with HiGHS: ``(v, value)``."""
        M, c = objective
        sign = -1.0 if maximize else 1.0
        A = np.vstack([self._pad(R) for R in self.rows]) if self.rows else np.zeros((0, len(self.lb)))
        with _quiet_stdout():
            res = milp(sign * self._pad(M)[0], integrality=np.array(self.integrality),
                       bounds=Bounds(self.lb, self.ub), constraints=LinearConstraint(A, self.lo, self.hi),
                       options={"mip_rel_gap": MIP_GAP, "presolve": presolve})
        if res.x is None:
            raise RuntimeError(f"the MILP could not be solved: {res.message}")
        return res.x, float(sign * res.fun + c[0])
