"""M-FAC's inverse-Fisher products against a dense solve of the damped empirical Fisher, as d grows.

The damped empirical Fisher of m = 32 gradients, F = lambda I + G^T G / m (lambda = 1e-3, G standard normal,
m x d), and a vector x: each side is given G, lambda and x and returns F^{-1} x.  optlab: the static M-FAC
inverse (``optlab.stochastic.obs.static_inverse``, O(d m^2) once, then O(d m) per product) and the dynamic
window of the optimizer (``optlab.stochastic.mfac.window_replace`` and ``window_ihvp``: one new gradient
replaces the oldest, O(d m + m^3), then the product).  Peers: form F (O(d^2 m)) and solve it densely,
``scipy.linalg.cho_factor``/``cho_solve`` (F is positive definite) and ``numpy.linalg.solve`` (LU).
Quality: the relative residual ||F y - x|| / ||x|| of each answer (lower is better), F applied matrix-free;
the relative difference of the two answers is in the notes, and the quick mode asserts it is below 1e-8.
Time: the median of several calls, the sides taking turns (``common.timed_alternating``).
"""
from __future__ import annotations

import numpy as np
from common import Row, timed_alternating

COMPARISON = "M-FAC inverse-Fisher product"
PEER = "dense solve (scipy cho_solve, numpy solve)"
REQUIRES = ("scipy",)
SUMMARY = """
Both M-FAC algorithms return the dense answer to about 1e-12 (relative), and their residuals are as small as those
of the dense Cholesky and LU solves (quality ratios between 0.6 and 1.4 are rounding at the 1e-12 level, not a
difference of method). The costs differ in kind: M-FAC needs O(d m^2) (static: precompute and one product) or O(d m
+ m^3) (the optimizer's window: one gradient replaced, then the product), a dense solve O(d^2 m) to form F and
O(d^3) to factor it. At d = 128 they are level (calls of about 0.3 ms, whose ratio ranged from 0.6 to 2.4 over our
runs on this shared, loaded machine: the two dense timings of a row, the same computation on different gradients,
differed by up to three times within one run); at d = 512 static M-FAC is about ten times faster (8 to 30 times over
our runs), and at d = 2048 tens to hundreds of times, the window update more still; at the size of a small network
(d = 10^6) the dense F would not even fit in memory (8 TB). Below d of about 100 a dense solve is as fast and
simpler. The dense peers ignore that G^T G has rank m; static M-FAC computes the same inverse as the Woodbury
identity, organized as m vectors that serve many products and single entries of the inverse (the OBS pruning of the
chapter).
"""
M, DAMP = 32, 1e-3


def _data(d, seed=0):
    gen = np.random.default_rng(seed)
    return gen.standard_normal((M + 1, d)), gen.standard_normal(d)


def dense_cho(G, x, damp):
    """The peer: F = lambda I + G^T G / m, Cholesky factorization, two triangular solves."""
    from scipy.linalg import cho_factor, cho_solve

    F = G.T @ G / G.shape[0]
    F[np.diag_indices_from(F)] += damp
    return cho_solve(cho_factor(F), x)


def dense_lu(G, x, damp):
    """The plain peer: F formed, then ``numpy.linalg.solve`` (LU with pivoting)."""
    F = G.T @ G / G.shape[0]
    F[np.diag_indices_from(F)] += damp
    return np.linalg.solve(F, x)


def residual(G, y, x, damp):
    """||F y - x|| / ||x|| with F applied matrix-free."""
    return float(np.linalg.norm(damp * y + G.T @ (G @ y) / G.shape[0] - x) / np.linalg.norm(x))


def sides(d, seed=0):
    """``{name: () -> F^{-1} x}`` on the same data: optlab static and dynamic, the two dense peers."""
    from optlab.stochastic import mfac, obs

    G_all, x = _data(d, seed)
    G = G_all[:M]
    before = mfac.mfac_state(G_all[0], n_grads=M, damp=DAMP)
    for g in G_all[:M]:            # a full window; replacing its oldest gradient by the last leaves G_all[1:]
        before = mfac.window_replace(before, g, DAMP)
    return {"static": (G, lambda: obs.static_inverse(G, DAMP).ihvp(x)),
            "dynamic": (G_all[1:], lambda: mfac.window_ihvp(mfac.window_replace(before, G_all[M], DAMP), x, DAMP)),
            "cho_solve": (G, lambda: dense_cho(G, x, DAMP)),
            "dense_dynamic": (G_all[1:], lambda: dense_cho(G_all[1:], x, DAMP)),
            "numpy_solve": (G, lambda: dense_lu(G, x, DAMP))}, x


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run(quick: bool = False) -> list:
    dims = (64, 200) if quick else (128, 512, 2048)
    rows = []
    for d in dims:
        calls, x = sides(d)
        ys = {k: fn() for k, (_, fn) in calls.items()}
        res = {k: residual(calls[k][0], ys[k], x, DAMP) for k in calls}
        agree = {"static": _rel(ys["static"], ys["cho_solve"]), "dynamic": _rel(ys["dynamic"], ys["dense_dynamic"]),
                 "numpy": _rel(ys["static"], ys["numpy_solve"])}
        if quick:
            assert max(agree.values()) < 1e-8, agree
            rows.append(Row(COMPARISON, f"d={d}, m={M}", "max relative difference to the dense solve",
                            max(agree.values()), 1.0))
            continue
        t = timed_alternating({k: fn for k, (_, fn) in calls.items()}, repeats=15 if d < 2048 else 3)
        problem = f"d={d}, m={M}, damping {DAMP:g}"
        rows.append(Row(COMPARISON, problem, "relative residual, static M-FAC against cho_solve", res["static"],
                        res["cho_solve"], t["static"], t["cho_solve"],
                        note=f"answers differ by {agree['static']:.1e} (relative); precompute and one product",
                        extra={"seconds": t, "residuals": res}))
        rows.append(Row(COMPARISON, problem, "relative residual, M-FAC window update against cho_solve",
                        res["dynamic"], res["dense_dynamic"], t["dynamic"], t["dense_dynamic"],
                        note=f"answers differ by {agree['dynamic']:.1e}; one gradient replaced, then the product"))
        if d == dims[-1]:
            rows.append(Row(COMPARISON, problem, "relative residual, static M-FAC against numpy.linalg.solve",
                            res["static"], res["numpy_solve"], t["static"], t["numpy_solve"],
                            note=f"answers differ by {agree['numpy']:.1e}; LU instead of Cholesky"))
    return rows
