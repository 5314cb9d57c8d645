r"""One-layer attention trained by gradient descent, and the attention SVM it converges to.

A single attention layer with a fixed linear head scores example :math:`i` as
:math:`f_i(W) = v^\top X_i^\top \mathrm{softmax}(X_i W z_i)`, with tokens
:math:`X_i \in \mathbb R^{T\times d}`, a query token :math:`z_i` and the attention weights
:math:`W = KQ^\top`.  :func:`attention_gd` runs normalized gradient descent on the logistic
loss, either on :math:`W` or on the factors :math:`(K, Q)`; :func:`att_svm` solves the
hard-margin attention SVM with cvxpy (Frobenius or nuclear norm); :func:`reg_path` follows the
norm-constrained minimizers :math:`\arg\min_{\|W\|\le R} L(W)` by projected gradient descent.

References
----------
D. A. Tarzanagh, Y. Li, C. Thrampoulidis and S. Oymak, Transformers as support vector
machines, arXiv:2308.16898 (``tarzanagh2023transformers``); see :func:`attention_gd`.

Book: chapters/networks/attention_svm.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Result, Trace, as_rng, geometric_steps
from ..prox import project_l1_ball
from ..validate import check_array, check_choice, check_int, check_positive, check_real

__all__ = ["token_data", "check_data", "loss", "grad", "softmax_probs", "selected_tokens", "optimal_tokens",
           "att_svm", "correlation", "attention_gd", "normalized_step",
           "project_ball", "reg_path"]


def token_data(n: int = 6, T: int = 8, d: int = 10, rng=None) -> dict:
    r"""Random unit-norm tokens ``X (n, T, d)``, queries ``z (n, d)``, head ``v (d,)``, labels ``Y (n,)``.

    >>> D = token_data(2, 3, 4, rng=0)
    >>> D["X"].shape, D["z"].shape, D["v"].shape, sorted(set(np.abs(D["Y"]).tolist()))
    ((2, 3, 4), (2, 4), (4,), [1.0])
    """
    n, T, d = (check_int(k, name, low=low) for k, name, low in ((n, "n", 1), (T, "T", 2), (d, "d", 1)))
    rng = as_rng(rng)

    def unit(*shape):
        g = rng.standard_normal(shape)
        return g / np.linalg.norm(g, axis=-1, keepdims=True)

    X, z, v = unit(n, T, d), unit(n, d), unit(d)
    return {"X": X, "z": z, "v": v, "Y": rng.choice([-1.0, 1.0], size=n)}


def check_data(data) -> dict:
    r"""Validate a data dict (``X (n, T, d)``, ``z (n, d)``, ``v (d,)``, labels ``Y`` in {-1, 1}); float64 copies."""
    if not isinstance(data, dict) or not {"X", "z", "v", "Y"} <= set(data):
        raise TypeError(f"data must be a dict with keys 'X', 'z', 'v', 'Y' (see token_data); got {type(data).__name__}")
    X = check_array(data["X"], "data['X']", ndim=3)
    n, T, d = X.shape
    out = {"X": X, "z": check_array(data["z"], "data['z']", shape=(n, d)),
           "v": check_array(data["v"], "data['v']", shape=(d,)), "Y": check_array(data["Y"], "data['Y']", shape=(n,))}
    if T < 2 or not np.all(np.abs(out["Y"]) == 1):
        raise ValueError("data needs T >= 2 tokens per example and labels data['Y'] in {-1, 1}")
    return out


def _weights(W, data):
    d = data["X"].shape[2]
    return check_array(W, "W", shape=(d, d))


def softmax_probs(W, data) -> np.ndarray:
    r"""Attention probabilities :math:`s_i = \mathrm{softmax}(X_i W z_i)`, shape ``(n, T)``."""
    data = check_data(data)
    W = _weights(W, data)
    a = np.einsum("itd,de,ie->it", data["X"], W, data["z"])
    a = a - a.max(axis=1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=1, keepdims=True)


def _margins(W, data):
    data = check_data(data)
    s = softmax_probs(W, data)
    g = data["X"] @ data["v"]                               # token values g_i = X_i v, (n, T)
    return s, g, data["Y"] * np.sum(s * g, axis=1)          # Y_i f_i(W)


def loss(W, data) -> float:
    r"""Logistic loss :math:`L(W) = \frac1n\sum_i \log(1 + e^{-Y_i f_i(W)})`."""
    return float(np.mean(np.logaddexp(0.0, -_margins(W, data)[2])))


def softmax_jacobian_vec(s, g):
    r""":math:`\partial (s^\top g)/\partial a = s \odot (g - s^\top g)` for :math:`s = \mathrm{softmax}(a)`."""
    return s * (g - np.sum(s * g, axis=1, keepdims=True))


def grad(W, data) -> np.ndarray:
    r""":math:`\nabla L(W) = \frac1n \sum_i \ell'(Y_i f_i) Y_i X_i^\top [s_i \odot (g_i - s_i^\top g_i)] z_i^\top`."""
    data = check_data(data)
    s, g, m = _margins(W, data)
    w = -0.5 * (1.0 - np.tanh(0.5 * m)) * data["Y"] / len(m)  # l'(m_i) Y_i / n
    h = softmax_jacobian_vec(s, g) * w[:, None]              # (n, T)
    return np.einsum("it,itd,ie->de", h, data["X"], data["z"])


def optimal_tokens(data) -> np.ndarray:
    r"""The globally optimal tokens :math:`\mathrm{opt}_i = \arg\max_t Y_i v^\top x_{it}`."""
    data = check_data(data)
    return np.argmax(data["Y"][:, None] * (data["X"] @ data["v"]), axis=1)


def selected_tokens(W, data) -> np.ndarray:
    r"""The tokens attention selects at ``W``: :math:`\arg\max_t s_{it}`."""
    return np.argmax(softmax_probs(W, data), axis=1)


def correlation(A, B) -> float:
    r""":math:`\langle A, B\rangle / (\|A\|_F \|B\|_F)`, the cosine between two matrices."""
    A = check_array(A, "A", ndim=(1, 2))
    B = check_array(B, "B", shape=A.shape)
    if not (np.any(A) and np.any(B)):
        raise ValueError("A and B must be nonzero for a correlation")
    return float(np.sum(A * B) / (np.linalg.norm(A) * np.linalg.norm(B)))


def att_svm(data, tokens=None, *, norm: str = "fro"):
    r"""The attention SVM: :math:`\min \|W\|` s.t. :math:`(x_{i\alpha_i} - x_{it})^\top W z_i \ge 1` (t != alpha_i).

    ``tokens`` are the selected indices :math:`\alpha_i` (default: the optimal ones);
    ``norm`` is ``"fro"`` (the bias of GD on W) or ``"nuc"`` (of the (K, Q) parameterization).
    Solved with cvxpy (Clarabel).  Returns ``W`` (d, d), or None when the problem is infeasible.

    >>> D = token_data(2, 3, 6, rng=0)
    >>> W = att_svm(D)
    >>> bool(np.all(selected_tokens(W, D) == optimal_tokens(D)))
    True
    """
    import cvxpy as cp

    check_choice(norm, "norm", ("fro", "nuc"))
    data = check_data(data)
    X, z = data["X"], data["z"]
    n, T, d = X.shape
    alpha = optimal_tokens(data) if tokens is None else np.asarray(tokens)
    if alpha.shape != (n,) or not np.issubdtype(alpha.dtype, np.integer) or np.any((alpha < 0) | (alpha >= T)):
        raise ValueError(f"tokens must be {n} integer indices in [0, {T}); got {alpha!r}")
    other = np.arange(T)[None, :] != alpha[:, None]               # (n, T): the constraints t != alpha_i
    D = (X[np.arange(n), alpha][:, None, :] - X)[other]           # rows x_{i alpha_i} - x_it
    Z = np.repeat(z, T - 1, axis=0)
    Wv = cp.Variable((d, d))
    obj = cp.sum_squares(Wv) if norm == "fro" else cp.normNuc(Wv)
    prob = cp.Problem(cp.Minimize(obj), [cp.sum(cp.multiply(D @ Wv, Z), axis=1) >= 1])
    prob.solve(solver="CLARABEL")
    return None if Wv.value is None or prob.status not in ("optimal", "optimal_inaccurate") else Wv.value


def attention_gd(data, x0, *, lr: float = 0.1, n_iters: int = 2000, lam: float = float(np.finfo(float).eps),
                 sat_tol: float = 1e-12, n_log: int = 40, rng=None, callback=None) -> Result:
    r"""Normalized gradient descent on the attention weights, as W or as factors (K, Q).

    Gradient descent on a separable-like softmax loss never converges in norm: the weights
    grow and only their *direction* settles.  Normalizing each step makes the growth linear
    in t, so the direction settles within a few thousand steps.

    Parameters
    ----------
    data : dict
        From :func:`token_data`: ``X``, ``z``, ``v``, ``Y``.
    x0 : array_like (d, d) or dict with ``"K"`` and ``"Q"`` (d, m)
        The start: W itself, or the factors (not modified).
    lr : float
        Step size :math:`\eta` of the normalized step.
    n_iters : int
        Maximum number of steps.
    lam : float
        For (K, Q): the penalty :math:`\lambda(\|K\|_F^2 + \|Q\|_F^2)` (machine epsilon, as in
        the official code); ignored for W.
    sat_tol : float
        Stop once every selected token has probability above ``1 - sat_tol`` (the softmax has
        saturated and the float64 gradient is no longer informative); 0 disables it.
    n_log : int
        About this many logged steps, geometrically spaced.
    rng : None, int or Generator
        Validated but unused (the method is deterministic); accepted for the common signature.
    callback : callable or None
        ``callback(record) -> bool`` at each logged step; True stops the run.

    Returns
    -------
    Result
        ``x``: W, or ``{"K", "Q"}``; ``f``: the loss.  Extras: ``W`` (the combined weights) and
        ``tokens`` (the selected tokens at the end; None if the run diverged).  History
        columns: ``t``, ``n_evals``, ``f``, ``W`` (a copy of the combined weights), ``norm``
        (:math:`\|W\|_F`), ``p_min`` (smallest selected-token probability).

    Notes
    -----
    For W: :math:`W_{t+1} = W_t - \eta \nabla L(W_t)/\|\nabla L(W_t)\|_F`.  For (K, Q), with
    :math:`G = \nabla L(KQ^\top)`: :math:`K \leftarrow K - \eta\, G_K/\|G_K\|_F` with
    :math:`G_K = GQ + 2\lambda K` and likewise :math:`G_Q = G^\top K + 2\lambda Q`, each factor
    normalized separately (the official code's rule).  Cost per step: O(nTd + d^2 m).
    Guarantee (the paper, W only): under its geometric conditions (a start in a cone around a
    locally optimal SVM direction, or over-parameterization) :math:`W_t/\|W_t\|` converges to
    :math:`W^{mm}/\|W^{mm}\|`, the Frobenius attention SVM built on the tokens selected in the
    limit.  For (K, Q) the paper proves the nuclear-norm bias only for the regularization path
    (:func:`reg_path`); the GD behaviour of the factors is empirical.

    References
    ----------
    D. A. Tarzanagh, Y. Li, C. Thrampoulidis and S. Oymak, Transformers as support vector
    machines, arXiv:2308.16898 (``tarzanagh2023transformers``).

    Book: chapters/networks/attention_svm.ipynb

    Examples
    --------
    >>> D = token_data(3, 4, 8, rng=1)
    >>> res = attention_gd(D, np.zeros((8, 8)), n_iters=300)
    >>> bool(res.history["norm"][-1] > 20), correlation(res.W, att_svm(D, res.tokens)) > 0.95
    (True, True)
    """
    data = check_data(data)
    factored = isinstance(x0, dict)
    if factored:
        if set(x0) != {"K", "Q"}:
            raise ValueError(f"x0 as a dict must have exactly the keys 'K' and 'Q'; got {sorted(x0)}")
        K = check_array(x0["K"], "x0['K']", ndim=2)
        Q = check_array(x0["Q"], "x0['Q']", shape=K.shape)
        d = K.shape[0]
    else:
        W = check_array(x0, "x0", ndim=2)
        d = W.shape[0]
    if data["X"].shape[2] != d or (not factored and W.shape != (d, d)):
        raise ValueError(f"x0 must be (d, d) (or factors (d, m)) with d = {data['X'].shape[2]} the token dimension")
    lr, n_iters = check_positive(lr, "lr"), check_int(n_iters, "n_iters", low=1)
    lam, sat_tol = check_real(lam, "lam", low=0.0), check_real(sat_tol, "sat_tol", low=0.0, high=1.0)
    steps, _ = geometric_steps(n_iters, n_log), as_rng(rng)   # rng: validated, unused
    params = {"lr": lr, "n_iters": n_iters, "param": "KQ" if factored else "W", "lam": lam, "sat_tol": sat_tol}
    trace = Trace("attention_gd", params, callback)

    def combined():
        return K @ Q.T if factored else W

    def record(t):
        Wc = combined()
        s = softmax_probs(Wc, data)
        return trace.log(t, f=loss(Wc, data), W=Wc.copy(), norm=np.linalg.norm(Wc), p_min=s.max(axis=1).min())

    stopped, n_done = record(0), 0
    for t in range(0 if stopped else n_iters):
        G = grad(combined(), data)
        trace.count("grad")
        if factored:
            K, Q = normalized_step(G, (K, Q), lr=lr, lam=lam)
        else:
            W = normalized_step(G, W, lr=lr)
        n_done = t + 1
        Wc = combined()
        if trace.diverged(Wc, n_done):
            break
        saturated = sat_tol > 0 and softmax_probs(Wc, data).max(axis=1).min() > 1 - sat_tol
        if (n_done in steps or saturated) and record(n_done):
            break
        if saturated:
            trace.message = f"softmax saturated (every selected probability > 1 - {sat_tol:g}) at step {n_done}"
            break
    Wc = combined()
    x = {"K": K, "Q": Q} if factored else W
    finite = bool(np.all(np.isfinite(Wc)))
    f, tokens = (loss(Wc, data), selected_tokens(Wc, data)) if finite else (None, None)
    return trace.result(x, f, n_iters=n_done, W=Wc, tokens=tokens)


def normalized_step(G, x, *, lr: float, lam: float = 0.0):
    r"""One normalized step from the W-gradient ``G``, on ``x = W`` or on factors ``x = (K, Q)``.

    For W: :math:`W - \eta G/\|G\|_F`.  For (K, Q), separately normalized factor steps with
    :math:`G_K = GQ + 2\lambda K` and :math:`G_Q = G^\top K + 2\lambda Q` (chain rule for
    :math:`W = KQ^\top`, plus the penalty :math:`\lambda(\|K\|_F^2 + \|Q\|_F^2)`).

    >>> normalized_step(np.array([[3.0, 4.0]]), np.zeros((1, 2)), lr=1.0).tolist()
    [[-0.6, -0.8]]
    """
    lr, lam = check_positive(lr, "lr"), check_real(lam, "lam", low=0.0)
    G = check_array(G, "G", ndim=2, finite=False)  # non-finite: the run diverges

    def unit(A):
        return A / max(np.linalg.norm(A), 1e-300)

    if not isinstance(x, tuple):
        return check_array(x, "x", shape=G.shape) - lr * unit(G)
    if len(x) != 2:
        raise ValueError(f"x must be W or a pair (K, Q); got a tuple of {len(x)}")
    K = check_array(x[0], "x[0] (K)", shape=(G.shape[0], None))
    Q = check_array(x[1], "x[1] (Q)", shape=(G.shape[1], K.shape[1]))
    GK, GQ = G @ Q + 2 * lam * K, G.T @ K + 2 * lam * Q
    return K - lr * unit(GK), Q - lr * unit(GQ)


def project_ball(W, radius: float, norm: str = "fro") -> np.ndarray:
    r"""Euclidean projection of ``W`` onto :math:`\{\|W\| \le R\}`, Frobenius or nuclear norm.

    The nuclear ball projects the singular values onto the l1 ball of radius R.

    >>> float(np.round(np.linalg.norm(project_ball(np.eye(2) * 3, 1.5, "nuc"), "nuc"), 6))
    1.5
    """
    check_choice(norm, "norm", ("fro", "nuc"))
    R = check_positive(radius, "radius")
    W = check_array(W, "W", ndim=2)
    if norm == "fro":
        nrm = np.linalg.norm(W)
        return W if nrm <= R else W * (R / nrm)
    U, s, Vt = np.linalg.svd(W)
    return (U * project_l1_ball(s, R)) @ Vt


def reg_path(data, radii, *, norm: str = "fro", lr: float = 0.1,
             n_iters: int = 300) -> np.ndarray:
    r"""Approximate regularization path :math:`W_R = \arg\min_{\|W\|\le R} L(W)` for each radius.

    Projected normalized GD, :math:`W \leftarrow \Pi_R(W - \eta R\, \nabla L/\|\nabla L\|_F)`, warm
    started from the previous radius (the step scales with R so every radius gets the same
    relative resolution).  The nuclear ball is the (K, Q) path, since
    :math:`\|W\|_* = \min_{KQ^\top = W} \tfrac12(\|K\|_F^2 + \|Q\|_F^2)`.  Returns ``(len(radii), d, d)``.

    >>> D = token_data(3, 4, 8, rng=1)
    >>> P = reg_path(D, [1.0, 8.0], norm="nuc", n_iters=50)
    >>> P.shape, bool(np.linalg.norm(P[-1], "nuc") <= 8.0 + 1e-9)
    ((2, 8, 8), True)
    """
    check_choice(norm, "norm", ("fro", "nuc"))
    data = check_data(data)
    radii = [check_positive(R, "radii") for R in radii]
    lr, n_iters = check_positive(lr, "lr"), check_int(n_iters, "n_iters", low=1)
    d = data["X"].shape[2]
    W, out = np.zeros((d, d)), []
    for R in radii:
        for t in range(n_iters):
            G = grad(W, data)
            step = lr * R / np.sqrt(t + 1)
            W = project_ball(W - step * G / max(np.linalg.norm(G), 1e-300), R, norm)
        out.append(W.copy())
    return np.array(out)
