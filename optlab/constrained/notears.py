r"""NOTEARS: a DAG by continuous optimization, the augmented Lagrangian on a smooth acyclicity equation.

:func:`notears` minimizes the least-squares score of a linear SEM plus an l1 penalty
subject to :math:`h(W) = 0`, with NOTEARS' trace-exponential :func:`h_expm` or the
log-det function :func:`h_logdet`.  The data and the score are
:mod:`optlab.constrained.dag_sem`; TOPO, which improves its result, is
:mod:`optlab.constrained.dag_learning`.

References
----------
X. Zheng, B. Aragam, P. Ravikumar and E. P. Xing, NeurIPS 2018, arXiv:1803.01422
(``zheng2018dags``); see :func:`notears`.

Book: chapters/constrained/dag_learning.ipynb
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.optimize as sopt

from ..core import Trace
from ..validate import check_array, check_choice, check_int, check_real
from .dag_sem import _ls_score, gram, ls_score

__all__ = ["h_expm", "h_logdet", "notears"]


def h_expm(W):
    r"""NOTEARS' acyclicity :math:`h(W) = \mathrm{tr}\, e^{W\circ W} - d` and its gradient.

    The gradient is :math:`\nabla h(W) = (e^{W\circ W})^\top \circ 2W`.

    >>> float(h_expm(np.array([[0.0, 1.0], [0.0, 0.0]]))[0])
    0.0
    """
    return _h_expm(_square(W, "W"))


def _square(W, name):
    """A square float array argument."""
    W = check_array(W, name, ndim=2)
    if W.shape[0] != W.shape[1]:
        raise ValueError(f"{name} must be a square d x d array, got shape {W.shape}")
    return W


def _h_expm(W):
    """:func:`h_expm` without the checks (NOTEARS' inner loop)."""
    E = sla.expm(W * W)
    return float(np.trace(E) - len(W)), E.T * 2 * W


def h_logdet(W, s: float = 1.0):
    r"""The log-det acyclicity :math:`h(W) = -\log\det(sI - W\circ W) + d\log s` and its gradient.

    The gradient is :math:`\nabla h(W) = 2W \circ (sI - W\circ W)^{-\top}`.

    Defined where the spectral radius of :math:`W \circ W` is below ``s``; elsewhere
    ``(inf, nan)``.

    >>> float(h_logdet(np.array([[0.0, 2.0], [0.0, 0.0]]))[0])
    0.0
    """
    return _h_logdet(_square(W, "W"), check_real(s, "s", low=0.0, low_open=True))


def _h_logdet(W, s):
    """:func:`h_logdet` without the checks."""
    A = W * W
    if np.max(np.abs(np.linalg.eigvals(A))) >= s:
        return float("inf"), np.full_like(W, np.nan)
    M = s * np.eye(len(W)) - A
    return float(len(W) * np.log(s) - np.linalg.slogdet(M)[1]), 2 * W * np.linalg.inv(M).T


def notears(X, W0=None, *, lam: float = 0.1, h: str = "expm", s: float = 1.0,
            rho_factor: float = 10.0, h_decrease: float = 0.25, h_tol: float = 1e-8,
            rho_max: float = 1e16, threshold: float = 0.3, n_iters: int = 100,
            callback=None):
    r"""NOTEARS: the augmented Lagrangian method on :math:`\min Q(W) + \lambda\|W\|_1` s.t. :math:`h(W) = 0`.

    Parameters
    ----------
    X : array_like, shape (n, d)
        The data (centred inside).
    W0 : array_like, shape (d, d), or None
        The start (default: zeros; the diagonal is kept at 0).
    lam : float
        The l1 weight :math:`\lambda \ge 0`.
    h : {"expm", "logdet"}
        The acyclicity function: :func:`h_expm` or :func:`h_logdet` (with ``s``).
    rho_factor, h_decrease : float
        :math:`\rho` is multiplied by ``rho_factor`` until h falls below ``h_decrease``
        times its previous value.
    h_tol, rho_max : float
        Stop when :math:`h \le` ``h_tol`` or :math:`\rho \ge` ``rho_max``.
    threshold : float
        Entries with :math:`|W_{ij}| <` ``threshold`` are dropped from the returned graph.
    n_iters : int
        At most this many dual (outer) steps.
    callback : callable or None
        ``callback(record) -> bool`` after each dual step; True stops.

    Returns
    -------
    Result
        ``x``: the thresholded :math:`W`; ``f``: :math:`Q + \lambda\|W\|_1` at the raw
        iterate.  Extras: ``W_raw`` (before thresholding), ``alpha``, ``rho``, ``h`` (final).
        History columns: ``t``, ``f``, ``h``, ``rho``, ``alpha``, ``multiplier``
        (:math:`\alpha + \rho h`, the weight of :math:`\nabla h` in the stationarity
        condition), ``grad_h_norm`` (:math:`\|\nabla h(W)\|_F`), ``n_evals``.

    Notes
    -----
    With :math:`W = W_+ - W_-`, :math:`W_\pm \ge 0`, each primal step solves with L-BFGS-B
    :math:`\min Q(W) + \lambda \mathbf 1^\top (W_+ + W_-) + \alpha h(W) + \frac\rho2 h(W)^2`
    from the last iterate, raising :math:`\rho` until h has decreased enough; then
    :math:`\alpha \leftarrow \alpha + \rho h`.  Cost per evaluation: a d x d matrix
    exponential (or inverse) and products of d x d matrices (the data enter through S).
    No KKT point exists (the chapter): :math:`\nabla h = 0` at every DAG, so the multiplier
    must diverge; the method returns an approximately acyclic W, thresholded.

    References
    ----------
    X. Zheng, B. Aragam, P. Ravikumar and E. P. Xing, DAGs with NO TEARS, NeurIPS 2018,
    arXiv:1803.01422 (``zheng2018dags``); the log-det function: K. Bello, B. Aragam and
    P. Ravikumar, DAGMA, NeurIPS 2022, arXiv:2209.08037 (``bello2022dagma``).

    Book: chapters/constrained/dag_learning.ipynb

    Examples
    --------
    >>> X = np.random.default_rng(0).standard_normal((500, 2)) @ np.array([[1.0, 1.5], [0.0, 1.0]])
    >>> res = notears(X)
    >>> bool(res.x[0, 1] != 0), float(res.x[1, 0]), res.h < 1e-8
    (True, 0.0, True)
    """
    S = gram(X)
    d = len(S)
    W = np.zeros((d, d)) if W0 is None else check_array(W0, "W0", shape=(d, d))
    lam = check_real(lam, "lam", low=0.0)
    s = check_real(s, "s", low=0.0, low_open=True)
    if check_choice(h, "h", ("expm", "logdet")) == "expm":
        acyclicity = _h_expm
    else:
        acyclicity = lambda V: _h_logdet(V, s)
    rho_factor = check_real(rho_factor, "rho_factor", low=1.0, low_open=True)
    h_decrease = check_real(h_decrease, "h_decrease", low=0.0, high=1.0,
                            low_open=True, high_open=True)
    h_tol = check_real(h_tol, "h_tol", low=0.0)
    rho_max = check_real(rho_max, "rho_max", low=0.0, low_open=True)
    threshold = check_real(threshold, "threshold", low=0.0)
    n_iters = check_int(n_iters, "n_iters", low=1)
    params = {"lam": lam, "h": h, "s": s, "rho_factor": rho_factor,
              "h_decrease": h_decrease, "h_tol": h_tol, "rho_max": rho_max,
              "threshold": threshold}
    trace, rho, alpha = Trace("notears", params, callback), 1.0, 0.0
    off = np.tile(1 - np.eye(d).ravel(), 2)      # the diagonal stays at 0
    bounds = [(0, None) if keep else (0, 0) for keep in off]
    w = np.concatenate([np.maximum(W, 0), np.maximum(-W, 0)], axis=None) * off

    def split(v):                                # W = W+ - W-
        return (v[:d * d] - v[d * d:]).reshape(d, d)

    def augmented(v):                            # value and gradient in (W+, W-)
        V = split(v)
        q, gq = _ls_score(V, S)
        hv, gh = acyclicity(V)
        trace.count("score")
        if not np.isfinite(hv):                  # outside the log-det domain
            return 1e12, np.full_like(v, 1e12)
        g = gq + (alpha + rho * hv) * gh
        value = q + lam * v.sum() + alpha * hv + 0.5 * rho * hv ** 2
        return value, np.concatenate([g + lam, lam - g], axis=None)

    def record(t, V):
        hv, gh = acyclicity(V)
        f = ls_score(V, S)[0] + lam * np.abs(V).sum()
        return trace.log(t, f=f, h=hv, rho=rho, alpha=alpha,
                         multiplier=alpha + rho * hv, grad_h_norm=np.linalg.norm(gh))

    hv, converged, t = np.inf, False, 0          # h of the last accepted step
    stopped = record(0, W)
    for t in range(0 if stopped else n_iters):
        while True:                              # primal step; raise rho until h drops
            w_new = sopt.minimize(augmented, w, jac=True, method="L-BFGS-B",
                                  bounds=bounds).x
            h_new = acyclicity(split(w_new))[0]
            if h_new <= h_decrease * hv or rho >= rho_max:
                break
            rho *= rho_factor
        w, hv = w_new, h_new
        alpha += rho * hv                        # dual ascent on the multiplier
        converged = hv <= h_tol
        if record(t + 1, split(w)) or converged or rho >= rho_max:
            break
    W_raw = split(w)
    if converged:
        message = f"h = {hv:.2e} <= h_tol"
    else:
        message = "rho reached rho_max" if rho >= rho_max else None
    f = ls_score(W_raw, S)[0] + lam * np.abs(W_raw).sum()
    W_thr = np.where(np.abs(W_raw) >= threshold, W_raw, 0.0)
    return trace.result(W_thr, f, n_iters=t + 1 - stopped, converged=converged,
                        message=message, W_raw=W_raw, alpha=alpha, rho=rho, h=hv)
