"""The last iterate and the average of SGD: optlab's sgd against scikit-learn's SGDRegressor.

Same data (least squares, n = 500, d = 20), same constant step, the same number of stochastic gradients
(5 epochs), last iterate (``average=False``) and average (``average=True``).  scikit-learn visits the
samples in a fresh random order each epoch (sampling *without* replacement); optlab's problems sample
*with* replacement, the setting of the theory.  The benchmark runs optlab both ways: with the zoo's oracle
and with a reshuffling oracle written here, so the page separates the sampling scheme from the
implementation.  Quality: the mean suboptimality over 100 seeds.  Time: one run, and 100 independent runs
(optlab runs them as replicas in one vectorized loop; scikit-learn fits 100 models).
"""
from __future__ import annotations

import warnings

import numpy as np
from common import Row, timed_alternating

COMPARISON = "SGD, last iterate and average"
PEER = "scikit-learn SGDRegressor"
REQUIRES = ("sklearn",)
SUMMARY = """
Given the same samples in the same order, `optlab.foundations.last_iterate.sgd` and `SGDRegressor` compute the same
iterates and the same average, to rounding (the quick mode checks it). With random sampling, scikit-learn's lower
error comes from its sampling scheme, not from its code: it visits the samples in a fresh random order each epoch
(without replacement), which is known to give a smaller final error than sampling with replacement, the setting of
the book's theory; with the same reshuffling scheme the two match. For one run, `sgd` is tens to hundreds of times
slower (the ratio moves with the load of the machine): it is a Python loop over steps, with numpy calls and checks
of its oracles' outputs at every step, against scikit-learn's compiled loop over samples. It is built for many runs
at once: a hundred independent runs cost it one vectorized loop, and there it is about as fast as fitting a hundred
models (and faster for more). The book keeps the readable loop, which is the point of `optlab`; a reader who needs
one fast run of plain SGD should use scikit-learn.
"""


def _problem(n, d):
    from optlab import problems

    return problems.least_squares(n=n, dim=d, noise=0.5, rng=0)


def sample_order(n, epochs, n_replicas, rng=None):
    """``(n_replicas, n * epochs)`` sample indices: a fresh random permutation per epoch, or in order (rng=None)."""
    if rng is None:
        return np.tile(np.arange(n), (n_replicas, epochs))
    return np.concatenate([np.argsort(rng.random((n_replicas, n)), axis=1) for _ in range(epochs)], axis=1)


def ordered_oracle(p, order):
    """Stochastic gradients of sample ``order[:, t]`` at step t (one row of indices per replica)."""
    X, y = p.info["X"], p.info["y"]
    step = {"t": 0}

    def stoch_grad(w, _rng):
        i = order[:, step["t"]]
        step["t"] += 1
        W = np.atleast_2d(w)
        g = (np.einsum("rd,rd->r", X[i], W) - y[i])[:, None] * X[i]
        return g if np.ndim(w) == 2 else g[0]

    return stoch_grad


def _sklearn(p, eta, epochs, seed, average, shuffle=True):
    from sklearn.linear_model import SGDRegressor

    model = SGDRegressor(loss="squared_error", penalty=None, learning_rate="constant", eta0=eta, max_iter=epochs,
                         tol=None, shuffle=shuffle, fit_intercept=False, average=average, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Maximum number of iteration reached": a fixed budget is the point
        model.fit(p.info["X"], p.info["y"])
    return model.coef_.copy()


def run(quick: bool = False) -> list:
    from optlab.foundations import last_iterate as li

    n, d, eta, epochs, seeds = (60, 4, 0.01, 2, 8) if quick else (500, 20, 0.01, 5, 100)
    p = _problem(n, d)
    T = n * epochs
    start = np.zeros((seeds, d))

    def ours(oracle_kind, n_replicas=seeds):
        rng = np.random.default_rng(1)
        oracle = p.stoch_grad if oracle_kind == "with replacement" else \
            ordered_oracle(p, sample_order(n, epochs, n_replicas, rng))
        res = li.sgd(oracle, start[:n_replicas], lr=eta, n_iters=T, n_log=2, rng=rng)
        return p.gap(res.x), p.gap(res.x_avg)

    def theirs(average):
        return np.array([p.gap(_sklearn(p, eta, epochs, s, average)) for s in range(seeds)])

    if quick:
        # exact agreement: both visit the samples in the same fixed order, so the iterates must coincide
        order = sample_order(n, epochs, 1)
        for average in (False, True):
            res = li.sgd(ordered_oracle(p, order), np.zeros(d), lr=eta, n_iters=T, n_log=2)
            ours_w = res.x_avg if average else res.x
            theirs_w = _sklearn(p, eta, epochs, 0, average, shuffle=False)
            assert np.allclose(ours_w, theirs_w, rtol=1e-10, atol=1e-12), (average, ours_w, theirs_w)
        return [Row(COMPARISON, f"least squares n={n} d={d}", "max |w_optlab - w_sklearn|",
                    float(np.abs(ours_w - theirs_w).max()), 1.0)]

    rows = []
    last_w, avg_w = ours("with replacement")
    last_r, avg_r = ours("reshuffled")
    sk_last, sk_avg = theirs(False), theirs(True)
    one = np.zeros(d)
    t = timed_alternating({"ours_many": lambda: ours("with replacement"), "sk_many": lambda: theirs(False),
                           "ours_one": lambda: li.sgd(p.stoch_grad, one, lr=eta, n_iters=T, n_log=2, rng=0),
                           "sk_one": lambda: _sklearn(p, eta, epochs, 0, False)}, repeats=5)
    t_ours_many, t_sk_many, t_ours_one, t_sk_one = t["ours_many"], t["sk_many"], t["ours_one"], t["sk_one"]
    problem = f"least squares n={n} d={d}, {epochs} epochs, step {eta}"
    rows.append(Row(COMPARISON, problem, "mean gap, last iterate (with replacement)", last_w.mean(), sk_last.mean(),
                    t_ours_many, t_sk_many, note=f"{seeds} runs: optlab as replicas, scikit-learn {seeds} fits"))
    rows.append(Row(COMPARISON, problem, "mean gap, last iterate (reshuffled)", last_r.mean(), sk_last.mean(),
                    note="same sampling scheme as scikit-learn (a fresh permutation each epoch)"))
    rows.append(Row(COMPARISON, problem, "mean gap, average (reshuffled)", avg_r.mean(), sk_avg.mean(),
                    note="optlab averages x_1..x_T; scikit-learn's ASGD averages from its first step too"))
    rows.append(Row(COMPARISON, problem, "single run, last iterate", float(last_w[0]), float(sk_last[0]),
                    t_ours_one, t_sk_one, note="one run: a Python loop over steps against compiled code"))
    return rows
