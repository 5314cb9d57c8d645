"""Consensus-based optimization: optlab's cbo against CMA-ES (``cma``) and CBXpy (``cbx``) at equal evaluations.

Every method gets the same budget of 10^4 queries of f per run, from a start drawn uniformly in [-3, 3]^d from
the run's seed, on shifted Rastrigin (d = 2 and d = 5, minimizer (1, ..., 1)) and on Rosenbrock (d = 5, smooth,
minimizer (1, ..., 1)); ten seeds per problem.  CBO is run as in the consensus chapter's experiment 6:
N = 50 particles, 199 steps of dt = 0.05, alpha = 1000, lambda = 1, anisotropic noise with sigma = 0.8, constant
parameters.  CBXpy runs the same dynamics (its ``CBO`` with the same particles, parameters, noise model and
seed, and no parameter schedule), so the two compute the same iterates to rounding: the quick mode checks it.
CMA-ES: population 100, step size 2, restarted from a new random start whenever it stops early, until the
budget is spent (as in the chapter).  Quality: the median over the seeds of f(x) - f* at the returned point
(CBO's final consensus point, CMA-ES's best point), with gaps below 1e-8 counted as 1e-8 (solved), and the
number of successes, ||x - x*||_inf < 0.1.  Time: the median wall time of one run over the seeds.
"""
from __future__ import annotations

import importlib.util
import statistics
import time
import warnings

import numpy as np
from common import Row

COMPARISON = "Consensus-based optimization"
PEER = "CMA-ES (cma) and CBXpy (cbx)"
REQUIRES = ("cma",)  # cbx (CBXpy) is optional: without it the CBXpy rows are left out
SUMMARY = """
At equal queries (10^4 per run) CMA-ES is far better, on both kinds of problem. On shifted Rastrigin in d = 2 both
succeed in every run, but CBO's consensus point stops a few 1e-4 above the minimum (a finite alpha and constant
noise), where CMA-ES reaches it to rounding; in d = 5 CBO succeeds in none of ten runs and CMA-ES in most; on the
smooth Rosenbrock function in d = 5 the swarm contracts before it has followed the curved valley and stalls near f -
f* = 3 in every run, while CMA-ES solves all ten. This is the consensus chapter's finding (its experiment 6), not a
defect of the implementation: CBXpy, given the same particles, parameters and noise draws, computes the same
iterates to rounding (the quick mode checks 40 steps with both noise models) and gets the same numbers. CMA-ES
adapts a full covariance matrix and its step size; CBO with constant parameters is the analysable method the chapter
studies, and the CBO literature closes part of the gap with parameter schedules (CBXpy's default raises alpha by 5%
every step; we switch it off to compare the same dynamics). Per run optlab's `cbo` is the fastest of the three: two
to seven times faster than CBXpy (one vectorized update per step, against cbx's copies, best-particle and history
bookkeeping) and about an order of magnitude faster than `cma` (8 to 30 times over our runs) (an ask-and-tell loop
in Python over a population of 100). The quality ratios against CMA- ES are set by the floor of 1e-8 on f - f* (CMA-
ES reaches 1e-14 or 0): read them as "CMA-ES solved it and CBO did not, or less precisely".
"""
BUDGET, N_PARTICLES, POP, SEEDS = 10_000, 50, 100, 10
CBO = {"alpha": 1e3, "sigma": 0.8, "lam": 1.0, "dt": 0.05, "noise": "anisotropic"}
FLOOR = 1e-8  # a gap below this counts as solved


def _problems(quick):
    from optlab import problems
    from optlab.zeroth_order.consensus import shifted_rastrigin

    if quick:
        return {"shifted Rastrigin d=2": shifted_rastrigin(2)}
    return {"shifted Rastrigin d=2": shifted_rastrigin(2), "shifted Rastrigin d=5": shifted_rastrigin(5),
            "Rosenbrock d=5 (smooth)": problems.rosenbrock(5)}


def _start(d, seed, n=N_PARTICLES):
    return np.random.default_rng(seed).uniform(-3.0, 3.0, size=(n, d))


def run_optlab(p, d, seed, budget=BUDGET):
    """optlab's CBO: ``(x, queries)``; N (n_iters + 1) queries, the first for the starting consensus point."""
    from optlab.zeroth_order.consensus import cbo

    res = cbo(p.f, _start(d, seed), n_iters=budget // N_PARTICLES - 1, log_every=budget, rng=seed, **CBO)
    return res.x, res.n_evals["f"]


def run_cbx(p, d, seed, budget=BUDGET, params=CBO, particles=False):
    """CBXpy's CBO with the same particles, parameters and noise draws: ``(x, queries)`` (or the particles)."""
    from cbx.dynamics import CBO as CBXDynamics

    from optlab.zeroth_order.consensus import consensus_point

    def f(X):                                       # cbx passes (runs, particles, d) and wants (runs, particles)
        return p.f(X.reshape(-1, d)).reshape(X.shape[:-1])

    kw = {k: v for k, v in params.items() if k != "lam"}
    dyn = CBXDynamics(f, f_dim="3D", x=_start(d, seed), lamda=params["lam"], max_it=budget // N_PARTICLES - 1,
                      check_f_dims=False, verbosity=0, seed=seed, **kw)  # check_f_dims would draw noise
    dyn.optimize(sched=None)                        # no schedule: the default one raises alpha each step
    X = dyn.x[0]
    if particles:
        return X
    # cbx's steps use the consensus of the particles before the step: the returned point is that of the last
    # particles, N more queries (optlab's cbo counts them too)
    return consensus_point(X, p.f(X), params["alpha"]), int(dyn.num_f_eval[0]) + N_PARTICLES


def run_cma(p, d, seed, budget=BUDGET):
    """CMA-ES with restarts from random starts until the budget is spent: ``(best x, queries)``."""
    import cma

    gen, used, best_x, best_f = np.random.default_rng(seed), 0, None, np.inf
    while used + POP <= budget:
        opts = {"popsize": POP, "seed": int(gen.integers(1, 2**31)), "verbose": -9, "verb_log": 0, "verb_disp": 0}
        es = cma.CMAEvolutionStrategy(gen.uniform(-3.0, 3.0, d), 2.0, opts)
        while not es.stop() and used + POP <= budget:
            X = np.array(es.ask())
            es.tell(list(X), p.f(X).tolist())
            used += POP
        if es.result.fbest < best_f:
            best_x, best_f = es.result.xbest, es.result.fbest
    return best_x, used


def _runs(method, p, d, budget=BUDGET):
    """Gaps, successes, queries and the median seconds of one run, over the seeds."""
    gaps, hits, times, used = [], 0, [], []
    for seed in range(SEEDS):
        start = time.perf_counter()
        x, n = method(p, d, seed, budget)
        times.append(time.perf_counter() - start)
        gaps.append(max(float(p.f(x)) - p.f_star, FLOOR))
        hits += int(np.abs(x - p.x_star).max() < 0.1)
        used.append(n)
    return {"gap": float(np.median(gaps)), "hits": hits, "seconds": statistics.median(times), "used": max(used)}


def _quick_checks(p):
    # identical iterates: the same particles after 40 steps, both noise models
    d = p.x_star.size
    if importlib.util.find_spec("cbx") is not None:
        from optlab.zeroth_order.consensus import cbo

        for noise in ("isotropic", "anisotropic"):
            params = {**CBO, "noise": noise}
            ours = cbo(p.f, _start(d, 3), n_iters=40, log_every=40, rng=3, **params).particles
            theirs = run_cbx(p, d, 3, budget=41 * N_PARTICLES, params=params, particles=True)
            assert np.allclose(ours, theirs, rtol=1e-9, atol=1e-9), (noise, np.abs(ours - theirs).max())
    # CMA-ES is another method: on a small budget both must find the minimizer of a well-conditioned quadratic
    from optlab import problems

    q = problems.quadratic(2, cond=2.0, rng=0)
    x_cbo, _ = run_optlab(q, 2, 0, budget=2000)
    x_cma, _ = run_cma(q, 2, 0, budget=2000)
    assert np.abs(x_cbo - q.x_star).max() < 0.05 and np.abs(x_cma - q.x_star).max() < 0.05, (x_cbo, x_cma)
    return float(np.abs(x_cbo - q.x_star).max())


def run(quick: bool = False) -> list:
    has_cbx = importlib.util.find_spec("cbx") is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cma's notes about restarts and flat fitness
        if quick:
            name, p = next(iter(_problems(True).items()))
            dist = _quick_checks(p)
            return [Row(COMPARISON, f"{name} (same iterates as CBXpy); 2-D quadratic", "||x_cbo - x*||_inf",
                        dist, 1.0)]
        rows = []
        for name, p in _problems(False).items():
            d = p.x_star.size
            ours, cma = _runs(run_optlab, p, d), _runs(run_cma, p, d)
            problem = f"{name}, {BUDGET} queries, {SEEDS} seeds"
            rows.append(Row(COMPARISON, problem, "median f - f* (floor 1e-8), against CMA-ES", ours["gap"],
                            cma["gap"], ours["seconds"], cma["seconds"],
                            note=f"successes {ours['hits']}/{SEEDS} (optlab) and {cma['hits']}/{SEEDS} (CMA-ES)",
                            extra={"optlab": ours, "peer": cma}))
            if has_cbx:
                theirs = _runs(run_cbx, p, d)
                rows.append(Row(COMPARISON, problem, "median f - f* (floor 1e-8), against CBXpy", ours["gap"],
                                theirs["gap"], ours["seconds"], theirs["seconds"],
                                note=f"same iterates; successes {ours['hits']}/{SEEDS} and {theirs['hits']}/{SEEDS}",
                                extra={"optlab": ours, "peer": theirs}))
        if not has_cbx:
            rows[-1].note += "; CBXpy not installed: its rows are missing"
        return rows
