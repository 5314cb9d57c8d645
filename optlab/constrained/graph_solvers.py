r"""Convergent graph solvers: learned contracting linear maps on graphs, their fixed points and IFT gradients.

A convergent graph solver (CGS) predicts the stationary state of a graph system
in three steps: it builds an input-dependent linear map :math:`T(h) = \gamma A h + b`
whose matrix :math:`A` is a contraction *by construction* (edge weights clipped
to [0, 1] and divided by the source node's out-degree, so every column of
:math:`A` sums to at most 1), computes its unique fixed point
:math:`h^\star = (I - \gamma A)^{-1} b` (by iteration, :func:`fixed_point`, or by a
direct solve), and decodes it.  Training differentiates through the fixed point
with the implicit function theorem (:func:`implicit_fixed_point`), solving one
adjoint system instead of back-propagating through the iterations.

The numpy half (graphs, the normalization, the iteration) needs no torch; the
torch half (the IFT layer, the :class:`CGS` model, the :class:`MPNN` baseline,
:func:`train`) imports it.

References
----------
J. Park, J. Choo and J. Park, Convergent graph solvers, ICLR 2022,
arXiv:2106.01680 (``park2022convergent``); see :func:`fixed_point`.

Book: chapters/constrained/graph_solvers.ipynb
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..core import Trace, as_rng
from ..validate import check_array, check_int, check_positive, check_real

__all__ = ["random_graph", "star_graph", "normalize", "fixed_point", "adjoint_solve", "predict",
           "implicit_fixed_point", "make_graphs", "CGS", "MPNN", "train", "r2_score"]


def random_graph(n_nodes: int, *, in_degree: int = 3, rng=None) -> np.ndarray:
    r"""A directed graph where every node receives ``in_degree`` edges from distinct random sources.

    ``adj[i, j] = 1`` means an edge :math:`j \to i` (column j: the edges leaving j),
    so out-degrees vary from node to node while in-degrees are equal.

    >>> adj = random_graph(5, in_degree=2, rng=0)
    >>> adj.sum(axis=1).tolist(), bool(np.trace(adj) == 0)
    ([2.0, 2.0, 2.0, 2.0, 2.0], True)
    """
    n_nodes = check_int(n_nodes, "n_nodes", low=2)
    in_degree = check_int(in_degree, "in_degree", low=1, high=n_nodes - 1)
    rng = as_rng(rng)
    scores = rng.random((n_nodes, n_nodes)) + 2 * np.eye(n_nodes)    # never pick yourself
    src = np.argsort(scores, axis=1)[:, :in_degree]
    adj = np.zeros((n_nodes, n_nodes))
    np.put_along_axis(adj, src, 1.0, axis=1)
    return adj


def star_graph(n_leaves: int = 16, *, inward: bool = True) -> np.ndarray:
    r"""A star: node 0 is the centre; ``inward`` edges go leaf -> centre, else centre -> leaf.

    >>> star_graph(3).sum(axis=1).tolist()
    [3.0, 0.0, 0.0, 0.0]
    """
    n_leaves = check_int(n_leaves, "n_leaves", low=1)
    adj = np.zeros((n_leaves + 1, n_leaves + 1))
    adj[0, 1:] = 1.0
    return adj if inward else adj.T.copy()


def normalize(weights, adj):
    r"""The CGS construction :math:`A_{ij} = \mathrm{clip}(w_{ij}, 0, 1)\, a_{ij} / d^{\mathrm{out}}_j`.

    Dividing by the out-degree of the *source* j bounds every column sum by 1:
    :math:`\|A\|_1 \le 1`.  Works on numpy arrays and torch tensors, batched over
    leading axes (``adj`` broadcasts against ``weights``).

    >>> normalize(np.full((3, 3), 2.0), star_graph(2, inward=False)).sum(axis=0).tolist()
    [1.0, 0.0, 0.0]
    """
    out_degree = adj.sum(-2)[..., None, :].clip(min=1.0)
    return weights.clip(0.0, 1.0) * adj / out_degree


def fixed_point(A, b, h0=None, *, gamma: float = 0.5, n_iters: int = 50,
                tol: float = 1e-6, callback=None):
    r"""Iterate the map :math:`T(h) = \gamma A h + b` and log the error against the Banach bound.

    Parameters
    ----------
    A : array_like, shape (n, n)
        The map's matrix, e.g. from :func:`normalize` (``A[i, j]``: edge j -> i).
    b : array_like, shape (n,)
        The bias.
    h0 : array_like, shape (n,), or None
        The start (default 0; not modified).
    gamma : float in (0, 1)
        The contraction factor.
    n_iters : int
        At most this many applications of T.
    tol : float
        Stop when :math:`\|h_{t+1} - h_t\|_1 <` ``tol``.
    callback : callable or None
        ``callback(record) -> bool`` after every step; True stops the run.

    Returns
    -------
    Result
        ``x``: the last iterate; ``f``: its error :math:`\|h_t - h^\star\|_1`.  Extras:
        ``h_direct`` (:math:`h^\star` by a direct solve) and ``norm_A`` (the induced
        norms ``"l1"``, ``"linf"``, ``"l2"`` of A).  History columns: ``err_l1``,
        ``err_linf``, ``err_l2`` (:math:`\|h_t - h^\star\|`) and ``bound_l1``,
        ``bound_linf``, ``bound_l2``, the a-priori Banach bounds
        :math:`\gamma^t \|h_1 - h_0\|/(1-\gamma)` in each norm, and ``step_l1``.

    Notes
    -----
    If :math:`\|A\| \le 1` in a norm, T is a :math:`\gamma`-contraction in it and Banach's
    theorem gives :math:`\|h_t - h^\star\| \le \gamma^t \|h_1 - h_0\|/(1-\gamma)`.  The
    construction of :func:`normalize` bounds column sums, the induced :math:`\ell_1`
    norm, so the guarantee holds in :math:`\ell_1`; the :math:`\ell_\infty` and
    :math:`\ell_2` bounds may fail.  Cost per step: one product with A, :math:`O(|E|)`
    sparse (dense here).  The paper stops at tolerance 1e-6 or 50 steps.

    References
    ----------
    J. Park, J. Choo and J. Park, Convergent graph solvers, ICLR 2022, arXiv:2106.01680
    (``park2022convergent``).

    Book: chapters/constrained/graph_solvers.ipynb

    Examples
    --------
    >>> A = normalize(np.ones((3, 3)), random_graph(3, in_degree=2, rng=0))
    >>> res = fixed_point(A, np.ones(3), gamma=0.5, n_iters=60, tol=1e-12)
    >>> np.round(res.x, 6).tolist(), res.converged
    ([2.0, 2.0, 2.0], True)
    """
    A = check_array(A, "A", ndim=2)
    n = len(A)
    if A.shape != (n, n):
        raise ValueError(f"A must be a square (n, n) matrix, got shape {A.shape}")
    b = check_array(b, "b", shape=(n,))
    h = np.zeros(n) if h0 is None else check_array(h0, "h0", shape=(n,))
    gamma = check_real(gamma, "gamma", low=0.0, high=1.0, low_open=True, high_open=True)
    n_iters = check_int(n_iters, "n_iters", low=1)
    tol = check_positive(tol, "tol")
    params = {"gamma": gamma, "n_iters": n_iters, "tol": tol}
    trace = Trace("fixed_point", params, callback)
    h_star = np.linalg.solve(np.eye(n) - gamma * A, b)
    orders = {"l1": 1, "linf": np.inf, "l2": 2}
    first = gamma * A @ h + b - h                                  # h_1 - h_0
    scale = {k: np.linalg.norm(first, p) / (1 - gamma) for k, p in orders.items()}

    def record(t, step):
        row = {f"err_{k}": np.linalg.norm(h - h_star, p) for k, p in orders.items()}
        row |= {f"bound_{k}": gamma**t * scale[k] for k in orders}
        return trace.log(t, step_l1=step, **row)

    stopped, n_done, converged = record(0, np.nan), 0, False
    for t in range(0 if stopped else n_iters):
        h_new = gamma * A @ h + b                              # T(h) = gamma A h + b
        trace.count("matvec")
        step, h, n_done = np.abs(h_new - h).sum(), h_new, t + 1
        converged = step < tol
        if trace.diverged(h, n_done) or record(n_done, step) or converged:
            break
    norm_A = {k: float(np.linalg.norm(A, p)) for k, p in orders.items()}
    message = "step below tol" if converged else None
    return trace.result(h, float(np.abs(h - h_star).sum()), n_iters=n_done,
                        converged=converged, message=message, h_direct=h_star,
                        norm_A=norm_A)


# --------------------------------------------------------------------------- torch: the implicit layer

def adjoint_solve(A, g, gamma: float, tol: float = 1e-12, max_iter: int = 1000):
    r"""Solve the adjoint :math:`a = \gamma A^\top a + g` by fixed-point iteration (batched).

    Converges because :math:`\|A^\top\|_\infty = \|A\|_1 \le 1`.  Stops when the
    largest change is below ``tol``.
    """
    a = g.clone()
    for _ in range(max_iter):
        a_new = gamma * (A.transpose(-1, -2) @ a[..., None])[..., 0] + g
        done = (a_new - a).abs().max() < tol
        a = a_new
        if done:
            break
    return a


class _ImplicitFixedPoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, A, b, gamma, tol):
        eye = torch.eye(A.shape[-1], dtype=A.dtype)
        h = torch.linalg.solve(eye - gamma * A, b[..., None])[..., 0]
        ctx.save_for_backward(A, h)
        ctx.gamma, ctx.tol = gamma, tol
        return h

    @staticmethod
    def backward(ctx, grad_h):
        A, h = ctx.saved_tensors
        a = adjoint_solve(A, grad_h, ctx.gamma, ctx.tol)     # (I - gamma A)^{-T} dl/dh
        return ctx.gamma * a[..., :, None] * h[..., None, :], a, None, None


def implicit_fixed_point(A, b, gamma: float = 0.5, *, adjoint_tol: float = 1e-12):
    r"""The fixed point :math:`h^\star = (I-\gamma A)^{-1} b` with gradients from the implicit function theorem.

    Forward: a direct solve.  Backward: with :math:`a = (I-\gamma A)^{-\top}\,\partial\ell/\partial h^\star`
    (:func:`adjoint_solve`, to ``adjoint_tol``), :math:`\partial\ell/\partial b = a` and
    :math:`\partial\ell/\partial A = \gamma\, a\, h^{\star\top}`.  Batched over leading axes.

    >>> A = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    >>> h = implicit_fixed_point(A, torch.ones(2, dtype=torch.float64), 0.5)
    >>> h.sum().backward(); h.tolist(), A.grad.round(decimals=9).tolist()
    ([2.0, 2.0], [[2.0, 2.0], [2.0, 2.0]])
    """
    gamma = check_real(gamma, "gamma", low=0.0, high=1.0, low_open=True, high_open=True)
    return _ImplicitFixedPoint.apply(A, b, gamma, check_positive(adjoint_tol, "adjoint_tol"))


# --------------------------------------------------------------------------- the task and the models

def make_graphs(n_graphs: int, n_nodes: int, *, in_degree: int = 3, alpha: float = 0.8, p_source: float = 0.2,
                rng=None) -> dict:
    r"""Random graphs and their stationary diffusion :math:`y = (I - \alpha W)^{-1} s`.

    :math:`W_{ij} = c_{ij} a_{ij}/d^{\mathrm{out}}_j` with conductances
    :math:`c_{ij} \sim U[0.5, 1]`; sources :math:`s_i \sim` Bernoulli(0.2).  Returns
    float64 arrays ``adj``, ``cond`` (G, n, n), ``x`` (G, n, 2) node features
    (source, in-degree / 3) and ``y`` (G, n).

    >>> data = make_graphs(2, 6, rng=0)
    >>> data["adj"].shape, data["x"].shape, data["y"].shape
    ((2, 6, 6), (2, 6, 2), (2, 6))
    """
    n_graphs = check_int(n_graphs, "n_graphs", low=1)
    alpha = check_real(alpha, "alpha", low=0.0, high=1.0, low_open=True, high_open=True)
    rng = as_rng(rng)
    adj = np.stack([random_graph(n_nodes, in_degree=in_degree, rng=rng) for _ in range(n_graphs)])
    cond = rng.uniform(0.5, 1.0, adj.shape) * adj
    s = (rng.random((n_graphs, n_nodes)) < check_real(p_source, "p_source", low=0.0, high=1.0)).astype(float)
    W = normalize(cond, adj)
    y = np.linalg.solve(np.eye(n_nodes) - alpha * W, s[..., None])[..., 0]
    x = np.stack([s, adj.sum(-1) / 3], axis=-1)
    return {"adj": adj, "cond": cond, "x": x, "y": y}


def _mlp(n_in, hidden, n_out):
    return nn.Sequential(nn.Linear(n_in, hidden), nn.LeakyReLU(), nn.Linear(hidden, n_out))


def _edge_inputs(x, cond):
    n = x.shape[-2]
    xi = x[..., :, None, :].expand(*x.shape[:-2], n, n, x.shape[-1])
    return torch.cat([xi, xi.transpose(-2, -3), cond[..., None]], dim=-1)  # (dst, src, c)


class CGS(nn.Module):
    r"""A convergent graph solver: M heads of contracting maps, their fixed points, an MLP decoder."""

    def __init__(self, n_features: int = 2, *, n_heads: int = 4, hidden: int = 32, gamma: float = 0.9):
        super().__init__()
        self.gamma = check_real(gamma, "gamma", low=0.0, high=1.0, low_open=True, high_open=True)
        n_heads, hidden = check_int(n_heads, "n_heads", low=1), check_int(hidden, "hidden", low=1)
        self.edge = _mlp(2 * n_features + 1, hidden, n_heads)      # edge weights w_ij per head
        self.bias = _mlp(n_features, hidden, n_heads)              # node biases b_i per head
        self.decode = _mlp(n_heads + n_features, hidden, 1)
        self.double()

    def forward(self, x, adj, cond):
        logits = self.edge(_edge_inputs(x, cond))                   # (G, n, n, M)
        w = torch.sigmoid(logits).movedim(-1, -3)                   # (G, M, n, n)
        A = normalize(w, adj[..., None, :, :])
        b = self.bias(x).movedim(-1, -2)                            # (G, M, n)
        h = implicit_fixed_point(A, b, self.gamma)                  # (G, M, n)
        return self.decode(torch.cat([h.movedim(-2, -1), x], dim=-1))[..., 0]


class MPNN(nn.Module):
    r"""The fixed-depth baseline: ``depth`` rounds of gated, out-degree-normalized message passing."""

    def __init__(self, n_features: int = 2, *, depth: int = 3, hidden: int = 32):
        super().__init__()
        self.embed, self.depth = nn.Linear(n_features, hidden), check_int(depth, "depth", low=1)
        self.gate = _mlp(2 * n_features + 1, hidden, 1)
        self.update = nn.ModuleList([_mlp(2 * hidden, hidden, hidden) for _ in range(depth)])
        self.decode = _mlp(hidden + n_features, hidden, 1)
        self.double()

    def forward(self, x, adj, cond):
        P = normalize(torch.sigmoid(self.gate(_edge_inputs(x, cond)))[..., 0], adj)
        h = self.embed(x)
        for layer in self.update:
            h = h + layer(torch.cat([h, P @ h], dim=-1))
        return self.decode(torch.cat([h, x], dim=-1))[..., 0]


def r2_score(y_true, y_pred) -> float:
    r"""The coefficient of determination over all nodes of all graphs."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    return float(1 - np.sum((y_true - y_pred) ** 2) / np.sum((y_true - y_true.mean()) ** 2))


def predict(model, data) -> np.ndarray:
    """The model's predictions (G, n) on a dict from :func:`make_graphs`."""
    with torch.no_grad():
        return model(*(torch.as_tensor(data[k]) for k in ("x", "adj", "cond"))).numpy()


def train(model, data, *, n_steps: int = 300, lr: float = 3e-3, batch_size: int = 16, rng=None) -> np.ndarray:
    r"""Adam on the mean squared error over minibatches of graphs; returns the training losses."""
    n_steps = check_int(n_steps, "n_steps", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1, high=len(data["y"]))
    rng = as_rng(rng)
    tensors = {k: torch.as_tensor(v) for k, v in data.items()}
    opt = torch.optim.Adam(model.parameters(), lr=check_positive(lr, "lr"))
    losses = np.empty(n_steps)
    for t in range(n_steps):
        idx = torch.as_tensor(rng.choice(len(data["y"]), size=batch_size, replace=False))
        pred = model(tensors["x"][idx], tensors["adj"][idx], tensors["cond"][idx])
        loss = ((pred - tensors["y"][idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses[t] = loss.item()
    return losses
