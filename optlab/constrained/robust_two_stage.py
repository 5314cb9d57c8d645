r"""Two-stage robust capital budgeting: exact column-and-constraint generation and Neur2RO.

The problem (:func:`capital_budgeting`) is :math:`\min_{x\in X}\max_{\xi\in\Xi}Q(x,\xi)` with binary first-
and second-stage decisions.  :func:`second_stage` solves :math:`Q(x,\xi)` by enumeration (batched; the ground
truth), :func:`second_stage_milp` by scipy's HiGHS.  :func:`ccg` is classical column-and-constraint generation
over a fixed scenario net; :func:`neur2ro` is its learned variant, whose main and adversarial problems embed a
ReLU value network (:func:`train_value_net`) as big-M mixed-integer programs (:func:`main_problem`,
:func:`adversarial_problem`).

References
----------
J. Dumouchelle, E. Julien, J. Kurtz and E. B. Khalil, Neur2RO: Neural two-stage robust optimization,
ICLR 2024, arXiv:2310.04345 (``dumouchelle2024neur2ro``).

Book: chapters/constrained/robust_two_stage.ipynb
"""
from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from ..core import Trace, as_rng
from ..validate import check_array, check_int, check_real, describe
from .value_net import ReluMILP, check_params, value_net

__all__ = ["capital_budgeting", "scenario_net", "second_stage", "second_stage_milp", "worst_case",
           "robust_optimum", "nominal_decision", "check_instance", "ccg", "sample_pairs", "features",
           "labels", "predict", "main_problem", "adversarial_problem", "neur2ro", "K_RECOURSE"]

K_RECOURSE = 0.8     # a project started late earns this share of its revenue


def capital_budgeting(n_instances: int, n_items: int = 8, xi_dim: int = 4, rng=None) -> dict:
    r"""Random instances of the paper's capital-budgeting benchmark, batched over ``n_instances``.

    Costs :math:`c_i(\xi)=(1+\Phi_i^\top\xi/2)\bar c_i` and revenues :math:`r_i(\xi)=(1+\Psi_i^\top\xi/2)\bar r_i`,
    :math:`\bar c\sim U[1,10]`, :math:`\bar r=\bar c/5`, :math:`\Phi_i,\Psi_i` uniform on the simplex, budget
    :math:`B=\sum_i\bar c_i/2`, :math:`\xi\in[-1,1]^L`.  Returns arrays ``cbar, rbar (I, n)``, ``phi, psi
    (I, n, L)``, ``budget (I,)``.

    >>> capital_budgeting(3, n_items=5, rng=0)["phi"].shape
    (3, 5, 4)
    """
    size = (check_int(n_instances, "n_instances", low=1), check_int(n_items, "n_items", low=1, high=14))
    L, rng = check_int(xi_dim, "xi_dim", low=1), as_rng(rng)
    cbar = rng.uniform(1.0, 10.0, size)
    phi, psi = rng.dirichlet(np.ones(L), size), rng.dirichlet(np.ones(L), size)
    return {"cbar": cbar, "rbar": cbar / 5.0, "phi": phi, "psi": psi, "budget": cbar.sum(1) / 2.0}


def scenario_net(xi_dim: int = 4, n_random: int = 200, rng=None) -> np.ndarray:
    r"""The fixed scenario net: the grid :math:`\{-1,0,1\}^L` and ``n_random`` uniform points of the box."""
    L, m = check_int(xi_dim, "xi_dim", low=1), check_int(n_random, "n_random", low=0)
    grid = np.array(list(itertools.product([-1.0, 0.0, 1.0], repeat=L)))
    return np.vstack([grid, as_rng(rng).uniform(-1.0, 1.0, (m, L))])


_KEYS = ("cbar", "rbar", "phi", "psi", "budget")


def check_instance(inst, name: str = "inst", one: bool = False) -> dict:
    r"""Check a batch of instances (the dict of :func:`capital_budgeting`); ``one``: exactly one instance."""
    if not isinstance(inst, dict) or any(k not in inst for k in _KEYS):
        raise TypeError(f"{name} must be a dict with keys {', '.join(_KEYS)} (from capital_budgeting), "
                        f"got {describe(inst)}")
    cbar = check_array(inst["cbar"], f"{name}['cbar']", ndim=2)
    k, n = cbar.shape
    for key, shape in (("rbar", (k, n)), ("budget", (k,))):
        check_array(inst[key], f"{name}[{key!r}]", shape=shape)
    for key in ("phi", "psi"):
        a = check_array(inst[key], f"{name}[{key!r}]", ndim=3)
        if a.shape[:2] != (k, n):
            raise ValueError(f"{name}[{key!r}] must have shape ({k}, {n}, L), got {a.shape}")
    if one and k != 1:
        raise ValueError(f"{name} must hold one instance (leading axis 1), got {k}: slice it")
    return inst


def _check_pairs(inst, X, XI):
    check_instance(inst)
    k, n, L = inst["phi"].shape
    X = check_array(X, "X", ndim=3)
    XI = check_array(XI, "XI", shape=(k, X.shape[1], L))
    if X.shape != (k, X.shape[1], n):
        raise ValueError(f"X must have shape ({k}, P, {n}), got {X.shape}")
    return X, XI


def _binaries(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def _cost_rev(inst, XI):
    """Costs and revenues ``(I, P, n)`` at scenarios ``XI (I, P, L)``."""
    C = inst["cbar"][:, None] * (1 + np.einsum("inl,ipl->ipn", inst["phi"], XI) / 2)
    R = inst["rbar"][:, None] * (1 + np.einsum("inl,ipl->ipn", inst["psi"], XI) / 2)
    return C, R


def second_stage(inst: dict, X, XI) -> np.ndarray:
    r"""Second-stage values :math:`Q(x,\xi)=-\max_y\{r(\xi)^\top(x+k y): x+y\le1,\ c(\xi)^\top(x+y)\le B\}`.

    Batched: ``X (I, P, n)`` binary, ``XI (I, P, L)``; returns ``(I, P)``.  Exact, by enumerating all
    :math:`2^n` recourse vectors :math:`y` (:math:`-\infty` where :math:`x` itself breaks the budget).
    """
    X, XI = _check_pairs(inst, X, XI)
    Y = _binaries(X.shape[-1])
    C, R = _cost_rev(inst, XI)
    cx, rx = (C * X).sum(-1), (R * X).sum(-1)
    ok = (X @ Y.T == 0) & (cx[..., None] + C @ Y.T <= inst["budget"][:, None, None] + 1e-9)
    best = np.where(ok, R @ Y.T, -np.inf).max(-1)
    return -(rx + K_RECOURSE * best)


def second_stage_milp(cost, rev, budget: float, x) -> tuple:
    r"""One second-stage problem solved by HiGHS (``scipy.optimize.milp``): ``(Q, y)``."""
    cost, rev, x = (check_array(v, name, ndim=1) for v, name in ((cost, "cost"), (rev, "rev"), (x, "x")))
    budget = check_real(budget, "budget")
    ub = 1.0 - x
    res = milp(-K_RECOURSE * rev, integrality=np.ones(len(x)), bounds=Bounds(0.0, ub),
               constraints=LinearConstraint(cost[None], -np.inf, budget - cost @ x))
    if res.x is None:
        return -np.inf, None
    y = np.round(res.x)
    return -(rev @ x + K_RECOURSE * rev @ y), y


def _feasible_x(inst, i):
    r"""First-stage decisions feasible for every scenario: :math:`1.5\,\bar c^\top x\le B`."""
    Xall = _binaries(inst["cbar"].shape[1])
    return Xall[1.5 * Xall @ inst["cbar"][i] <= inst["budget"][i] + 1e-9]


def _one(inst, i):
    return {k: v[i:i + 1] for k, v in inst.items()}


def worst_case(inst: dict, X, net) -> np.ndarray:
    r"""True worst case :math:`\max_{\xi\in\text{net}}Q(x,\xi)` of decisions ``X (I, P, n)``: ``(I, P)``."""
    net = check_array(net, "net", ndim=2)
    X = check_array(X, "X", ndim=3)
    n_inst, P, _ = X.shape
    XI = np.broadcast_to(np.tile(net, (P, 1)), (n_inst, P * len(net), net.shape[1]))
    return second_stage(inst, np.repeat(X, len(net), 1), XI).reshape(n_inst, P, len(net)).max(-1)


def robust_optimum(inst: dict, net) -> tuple:
    r"""Ground truth by enumeration: the best robust ``x (I, n)`` over the net and its value ``(I,)``."""
    out = [(Xf[np.argmin(v)], v.min()) for i in range(len(inst["budget"]))   # loop over instances: memory
           for Xf in [_feasible_x(inst, i)] for v in [worst_case(_one(inst, i), Xf[None], net)[0]]]
    return np.array([o[0] for o in out]), np.array([o[1] for o in out])


def nominal_decision(inst: dict) -> np.ndarray:
    r"""The best robustly feasible ``x`` for the nominal scenario :math:`\xi=0` only, ``(I, n)``."""
    net0 = np.zeros((1, inst["phi"].shape[2]))
    return np.array([Xf[np.argmin(worst_case(_one(inst, i), Xf[None], net0)[0])]
                     for i in range(len(inst["budget"])) for Xf in [_feasible_x(inst, i)]])


def _ccg_master(inst, S):
    r"""Main problem of exact CCG, with one copy :math:`y^s` of the recourse per scenario (HiGHS)."""
    n, B = inst["cbar"].shape[1], inst["budget"][0]
    C, R = (a[0] for a in _cost_rev(inst, S[None]))
    m = ReluMILP()
    x, theta = m.add(n, 0.0, 1.0, 1), m.add(1, -np.inf, np.inf)
    Mx, Mt = m.var(x)[0], m.var(theta)[0]
    m.constrain((1.5 * inst["cbar"][0][None] @ Mx, np.zeros(1)), -np.inf, B)    # feasible for every xi
    for s in range(len(S)):
        My = m.var(m.add(n, 0.0, 1.0, 1))[0]
        Mx, Mt = m._pad(Mx), m._pad(Mt)
        m.constrain((-Mt - R[s] @ (Mx + K_RECOURSE * My)[None], np.zeros(1)), -np.inf, 0.0)  # theta >= Q_s
        m.constrain((C[s] @ (Mx + My)[None], np.zeros(1)), -np.inf, B)                        # budget
        m.constrain((Mx + My, np.zeros(n)), -np.inf, 1.0)                                     # x + y^s <= 1
    v, val = m.solve(m.var(theta))
    return np.round(v[x]), val


def ccg(inst: dict, net, *, tol: float = 1e-7, n_iters: int = 50, callback=None):
    r"""Exact column-and-constraint generation (CCG) for one instance, the adversary searching a scenario net.

    The classical way to solve :math:`\min_x\max_{\xi}Q(x,\xi)`: keep a few scenarios, optimize against
    them, ask an adversary for the scenario that hurts the current decision most, add it, repeat.

    Parameters
    ----------
    inst : dict
        One instance (arrays with a leading axis of length 1, e.g. from :func:`capital_budgeting`).
    net : array_like, shape (N, L)
        The scenario net searched by the adversary (:func:`scenario_net`).
    tol : float
        Relative tolerance of the stopping test ``upper <= lower + tol * max(1, |lower|)``.
    n_iters : int
        Maximum number of CCG iterations.
    callback : callable or None
        ``callback(record) -> bool`` after each iteration; True stops the run.

    Returns
    -------
    Result
        ``x``: the best decision found, ``(n,)``; ``f``: its worst case over the net (the upper bound).
        Extras: ``scenarios``, the scenario set :math:`S` ``(|S|, L)``. History columns ``lower`` (the main
        problem's value), ``upper`` (the best worst case so far), ``n_scenarios``. ``n_evals`` counts
        ``main_milp`` and ``second_stage`` (one per scenario of the net and iteration).

    Notes
    -----
    Main problem over :math:`S` (a MILP with one copy :math:`y^s` of the recourse per scenario, HiGHS):
    :math:`\min\{\theta:\theta\ge-r(\xi^s)^\top(x+ky^s),\ c(\xi^s)^\top(x+y^s)\le B,\ x+y^s\le1,\ s\in S\}`
    over robustly feasible binary :math:`x`; its value is a lower bound.  Adversary:
    :math:`\xi^\star=\arg\max_{\xi\in\text{net}}Q(x,\xi)` by enumeration (:func:`second_stage`), an upper
    bound.  Guarantee: the bounds meet after finitely many iterations (at most the number of first-stage
    decisions), at the optimum over the net, because a decision proposed again after its worst scenario
    joined :math:`S` has :math:`\theta` equal to its worst case.  With integer recourse there is no dual of
    the second stage, so the adversary cannot be a single MILP over a continuous set: this is why the
    book's ground truth uses a finite net.  Cost per iteration: one MILP with :math:`n(|S|+1)` binaries and
    :math:`N2^n` second-stage evaluations.

    References
    ----------
    B. Zeng and L. Zhao, Operations Research Letters 41, 2013 (``zeng2013solving``); J. Dumouchelle et al.,
    arXiv:2310.04345 (``dumouchelle2024neur2ro``), its exact baseline.

    Book: chapters/constrained/robust_two_stage.ipynb

    Examples
    --------
    >>> inst = capital_budgeting(1, n_items=4, rng=0)
    >>> res = ccg(inst, scenario_net(4, 10, rng=0))
    >>> res.converged, bool(abs(res.f - robust_optimum(inst, scenario_net(4, 10, rng=0))[1][0]) < 1e-9)
    (True, True)
    """
    net, tol, n_iters = check_array(net, "net", ndim=2), check_real(tol, "tol", low=0.0), \
        check_int(n_iters, "n_iters", low=1)
    check_instance(inst, one=True)
    if net.shape[1] != inst["phi"].shape[2]:
        raise ValueError(f"net must have {inst['phi'].shape[2]} columns (xi_dim), got {net.shape[1]}")
    S = np.zeros((1, net.shape[1]))
    trace = Trace("ccg", {"tol": tol, "n_iters": n_iters, "n_net": len(net)}, callback)
    best, x_best, converged, t = np.inf, None, False, 0
    for t in range(n_iters):
        x, lower = _ccg_master(inst, S)
        trace.count("main_milp")
        Q = second_stage(inst, np.tile(x, (1, len(net), 1)), net[None])[0]
        trace.count("second_stage", len(net))
        upper = float(Q.max())
        if upper < best:
            best, x_best = upper, x
        stop = trace.log(t + 1, lower=lower, upper=best, n_scenarios=len(S))
        if best <= lower + tol * max(1.0, abs(lower)):
            converged = True
            break
        if stop:
            break
        S = np.vstack([S, net[np.argmax(Q)]])
    return trace.result(x_best, best, n_iters=t + 1, converged=converged, scenarios=S)


# --------------------------------------------------------------------------- the value network

def features(inst: dict, X, XI) -> tuple:
    r"""Per-item inputs of the value network, ``FX`` from :math:`x` and ``FZ`` from :math:`\xi`, each
    ``(I*P, n, 3)``: :math:`[x_i, \bar c_i/s, x_i\bar c_i/s]` and :math:`[c_i(\xi)/s, 5r_i(\xi)/s, \bar c_i/s]`
    with :math:`s` the mean :math:`\bar c`.  Each is affine in its decision, so the network embeds as a MILP."""
    X, XI = _check_pairs(inst, X, XI)
    s = inst["cbar"].mean(1)[:, None, None]
    cb = np.broadcast_to((inst["cbar"][:, None] / s), X.shape)
    C, R = _cost_rev(inst, XI)
    FX, FZ = np.stack([X, cb, cb * X], -1), np.stack([C / s, 5 * R / s, cb], -1)
    return FX.reshape(-1, *FX.shape[2:]), FZ.reshape(-1, *FZ.shape[2:])



def sample_pairs(inst: dict, n_x: int, n_xi: int, rng=None) -> tuple:
    r"""Training pairs: ``n_x`` uniform robustly feasible decisions per instance, each with ``n_xi`` uniform
    scenarios of the box; ``X (I, n_x*n_xi, n)``, ``XI (I, n_x*n_xi, L)``."""
    check_instance(inst)
    n_x, n_xi, rng = check_int(n_x, "n_x", low=1), check_int(n_xi, "n_xi", low=1), as_rng(rng)
    Xall = _binaries(inst["cbar"].shape[1])
    ok = 1.5 * inst["cbar"] @ Xall.T <= inst["budget"][:, None] + 1e-9              # (I, 2^n)
    pick = np.argmax(rng.random((len(ok), n_x, ok.shape[1])) * ok[:, None], -1)      # uniform feasible
    X = np.repeat(Xall[pick], n_xi, axis=1)
    return X, rng.uniform(-1.0, 1.0, (*X.shape[:2], inst["phi"].shape[2]))


def _scale(inst):
    return float(inst["rbar"].sum())


def labels(inst: dict, X, XI) -> np.ndarray:
    r"""What the network learns: the second-stage part :math:`(Q(x,\xi)+r(\xi)^\top x)/\sum_i\bar r_i` of
    the value, ``(I, P)``; the first-stage revenue :math:`-r(\xi)^\top x` is added exactly, as in the paper."""
    first = (_cost_rev(inst, XI)[1] * np.asarray(X, dtype=float)).sum(-1)
    return (second_stage(inst, X, XI) + first) / inst["rbar"].sum(1)[:, None]


def predict(params: dict, inst: dict, X, XI) -> np.ndarray:
    r"""The surrogate :math:`\hat Q(x,\xi)=-r(\xi)^\top x+\sum_i\bar r_i\,\mathrm{NN}(x,\xi)`, ``(I, P)``."""
    check_params(params)
    X, XI = _check_pairs(inst, X, XI)
    nn = value_net(params, *features(inst, X, XI)).reshape(X.shape[:2])
    return -(_cost_rev(inst, XI)[1] * X).sum(-1) + inst["rbar"].sum(1)[:, None] * nn


def main_problem(params: dict, inst: dict, S) -> tuple:
    r"""Neur2RO's main problem :math:`\min_{x\in X,\theta}\theta` s.t. :math:`\theta\ge\hat Q(x,\xi^s)`,
    :math:`s\in S`, as a MILP (one instance).  The first per-item layer is exact without big-M (binary
    :math:`x_i` selects one of two precomputed activations); :math:`\xi^s`'s embedding is a constant.
    Returns ``(x, theta)``, theta in units of :math:`Q`."""
    check_params(params)
    check_instance(inst, one=True)
    S = check_array(S, "S", ndim=2)
    L = inst["phi"].shape[2]
    if S.shape[1] != L:
        raise ValueError(f"S must have xi_dim = {L} columns, got shape {S.shape}")
    n = inst["cbar"].shape[1]
    m = ReluMILP()
    x = m.add(n, 0.0, 1.0, 1)
    FX1, FX0 = (features(inst, np.full((1, 1, n), b), S[None, :1])[0][0]
                for b in (1.0, 0.0))        # per-item inputs with x_i = 1 and x_i = 0
    A1, A0 = (np.maximum(F @ params["W1"] + params["b1"], 0.0) for F in (FX1, FX0))
    Mx, _ = m.var(x)
    s1 = ((A1 - A0).T @ Mx / n, A0.mean(0))        # mean_i [x_i A1_i + (1 - x_i) A0_i]
    ex = m.relu(m.affine(params["W2"], params["b2"], s1))
    theta = m.add(1, -np.inf, np.inf)
    E = params["W2"].shape[1]
    FS = features(inst, np.zeros((1, len(S), n)), S[None])
    ez = value_net(params, *FS, parts=True)[2]      # scenario embeddings: constants
    R = _cost_rev(inst, S[None])[1][0] / _scale(inst)     # first-stage revenue, exact
    for s in range(len(S)):
        b5 = params["b5"] + ez[s] @ params["W5"][E:]
        a5 = m.relu(m.affine(params["W5"][:E], b5, ex))
        out = m.affine(params["W6"], params["b6"], a5)
        M, c = m._pad(out[0]), out[1]
        M[0, theta] -= 1.0
        M[0, x] -= R[s]
        m.constrain((M, c), -np.inf, 0.0)                 # theta >= -r_s x + out_s
    robust = (1.5 * inst["cbar"][0][None] @ m._pad(Mx), np.zeros(1))
    m.constrain(robust, -np.inf, inst["budget"][0])   # feasible for every scenario
    v, val = m.solve(m.var(theta))
    return np.round(v[x]), val * _scale(inst)


def adversarial_problem(params: dict, inst: dict, x) -> tuple:
    r"""Neur2RO's adversarial problem :math:`\max_{\xi\in[-1,1]^L}\hat Q(x,\xi)` as a MILP (``x`` fixed):
    the scenario branch gets one big-M ReLU per item and unit.  Returns ``(xi, value)``."""
    check_params(params)
    check_instance(inst, one=True)
    x = check_array(x, "x", shape=(inst["cbar"].shape[1],))
    n, L = len(x), inst["phi"].shape[2]
    m = ReluMILP()
    xi = m.add(L, -1.0, 1.0)
    Mxi, _ = m.var(xi)
    s = inst["cbar"][0].mean()
    cb, rb = inst["cbar"][0] / s, inst["rbar"][0] / s
    FX = features(inst, x[None, None], np.zeros((1, 1, L)))
    ex = value_net(params, *FX, parts=True)[1]        # decision embedding: a constant
    H, E = params["W3"].shape[1], params["W4"].shape[1]
    z3_M, z3_c = [], []
    for i in range(n):                                          # fz_i is affine in xi
        slopes = np.stack([cb[i] * inst["phi"][0, i] / 2,
                           5 * rb[i] * inst["psi"][0, i] / 2, np.zeros(L)])
        F = (slopes @ Mxi, np.array([cb[i], 5 * rb[i], cb[i]]))
        Mi, ci = m.affine(params["W3"], params["b3"], F)
        z3_M.append(Mi)
        z3_c.append(ci)
    h3 = m.relu((np.vstack(z3_M), np.concatenate(z3_c)))
    s3 = m.affine(np.tile(np.eye(H), (n, 1)) / n, np.zeros(H), h3)    # mean over items
    ez = m.relu(m.affine(params["W4"], params["b4"], s3))
    a5 = m.relu(m.affine(params["W5"][E:], params["b5"] + ex[0] @ params["W5"][:E], ez))
    M, c = m.affine(params["W6"], params["b6"], a5)
    M = m._pad(M)
    M[0, xi] -= (x * rb) @ inst["psi"][0] / 2 * s / _scale(inst)    # - r(xi) x, exact
    v, val = m.solve((M, c - x @ rb * s / _scale(inst)), maximize=True)
    return v[xi], val * _scale(inst)


def neur2ro(params: dict, inst: dict, *, tol: float = 1e-6, n_iters: int = 30,
            callback=None):
    r"""Neur2RO: column-and-constraint generation with a learned second-stage value, for one instance.

    CCG's two hard problems both contain the second-stage problem.  Neur2RO replaces it by a ReLU network
    :math:`\mathrm{NN}(x,\xi)` trained offline, so that the main problem and the adversary over the whole
    continuous box become mixed-integer linear programs of fixed, small size.

    Parameters
    ----------
    params : dict
        The value network's parameters (``train_value_net(...).x``).
    inst : dict
        One instance (leading axis of length 1).
    tol : float
        Relative tolerance of the stopping test ``adversary <= theta + tol * max(1, |theta|)``.
    n_iters : int
        Maximum number of iterations.
    callback : callable or None
        ``callback(record) -> bool`` after each iteration; True stops the run.

    Returns
    -------
    Result
        ``x``: the decision ``(n,)``; ``f``: its predicted worst case (the adversary's last value).
        Extras: ``scenarios`` (the set :math:`S`), ``theta`` (the last main problem's value), ``xi_adv``
        (the adversary's last scenario).  History columns ``theta``, ``adversary``, ``n_scenarios``.
        ``n_evals`` counts ``main_milp`` and ``adversarial_milp``.

    Notes
    -----
    With :math:`\hat Q(x,\xi)=-r(\xi)^\top x+\sum_i\bar r_i\,\mathrm{NN}(x,\xi)` (:func:`predict`; the
    first-stage revenue is exact, the network learns the recourse part), iteration :math:`t` solves
    :math:`(x_t,\theta_t)=\arg\min_{x\in X}\max_{s\in S}\hat Q(x,\xi^s)` (:func:`main_problem`) and
    :math:`\xi_t=\arg\max_{\xi\in[-1,1]^L}\hat Q(x_t,\xi)` (:func:`adversarial_problem`), both exact MILPs
    (big-M ReLUs, :class:`~optlab.constrained.value_net.ReluMILP`); it stops when
    :math:`\hat Q(x_t,\xi_t)\le\theta_t`, else adds :math:`\xi_t` to :math:`S`.  Guarantee (for the
    surrogate only): finite termination at an optimum of :math:`\min_x\max_\xi\hat Q(x,\xi)`, by the argument
    of :func:`ccg`.  The true worst case of :math:`x` is as good as the network: nothing bounds it.
    Differences from the paper: one network predicts the objective only (the first stage is robustly
    feasible here, so no constraint prediction), trained in numpy; the main problem takes the network's
    maximum over :math:`S`, while the official capital-budgeting code also selects the argmax scenario with
    binaries and optimizes the true recourse for it; HiGHS instead of Gurobi.  Cost per iteration: two
    MILPs, with :math:`n+E+V|S|` and :math:`nH+E+V` binaries (hidden sizes H, E, V of the network).

    References
    ----------
    J. Dumouchelle, E. Julien, J. Kurtz and E. B. Khalil, Neur2RO: Neural two-stage robust optimization,
    ICLR 2024, arXiv:2310.04345 (``dumouchelle2024neur2ro``).

    Book: chapters/constrained/robust_two_stage.ipynb

    Examples
    --------
    >>> from optlab.constrained.value_net import train_value_net
    >>> tr = capital_budgeting(20, n_items=4, rng=0)
    >>> X, XI = sample_pairs(tr, 5, 5, rng=0)
    >>> params = train_value_net(*features(tr, X, XI), labels(tr, X, XI).ravel(), hidden=4, n_iters=2, rng=0).x
    >>> res = neur2ro(params, capital_budgeting(1, n_items=4, rng=1))
    >>> res.converged, res.x.shape, bool(res.f <= res.theta + 1e-6 * max(1, abs(res.theta)))
    (True, (4,), True)
    """
    tol, n_iters = check_real(tol, "tol", low=0.0), check_int(n_iters, "n_iters", low=1)
    check_params(params)
    check_instance(inst, one=True)
    S = np.zeros((1, inst["phi"].shape[2]))          # start from the nominal scenario
    trace = Trace("neur2ro", {"tol": tol, "n_iters": n_iters}, callback)
    converged, t = False, 0
    for t in range(n_iters):
        x, theta = main_problem(params, inst, S)
        trace.count("main_milp")
        xi, adv = adversarial_problem(params, inst, x)
        trace.count("adversarial_milp")
        stop = trace.log(t + 1, theta=theta, adversary=adv, n_scenarios=len(S))
        if adv <= theta + tol * max(1.0, abs(theta)):
            converged = True
            break
        if stop:
            break
        S = np.vstack([S, xi])
    return trace.result(x, adv, n_iters=t + 1, converged=converged, scenarios=S,
                        theta=theta, xi_adv=xi)
