r"""The Bayesian-optimization loop, shared by every surrogate of the book, and random search.

:func:`bayes_opt` minimizes an expensive ``f`` over a box: an initial design (Sobol or uniform), then
at each step it fits the surrogate to the evaluations so far, maximizes an acquisition function and
evaluates ``f`` once at the maximizer.  :func:`random_search` is the baseline with the same history.

The surrogate interface
-----------------------
The loop needs nothing of a surrogate but this (:class:`optlab.bayesopt.gp.GPSurrogate` is the GP's,
the next chapter's networks follow it too)::

    model = surrogate.fit(X, y, rng)      # X (n, d) in the unit cube [0, 1]^d, y (n,); returns a
                                          # fitted model and leaves the surrogate unchanged
    mean, var = model.predict(Xs)         # (m,), (m,): posterior mean and variance of f at Xs (m, d)
    mean, cov = model.predict(Xs, full_cov=True)   # (m,), (m, m): the joint posterior (knowledge
                                          # gradient, noisy EI)
    model.noise_var                       # the observation-noise variance the model assumes
    draws = model.sample(Xs, k, rng)      # (k, m) joint posterior draws (max-value entropy search only)

The variance is that of the latent :math:`f`, without the observation noise.  An acquisition is
either a name of :data:`optlab.bayesopt.acquisition.ACQUISITIONS` or a callable
``make(model, X_obs, y_obs, rng) -> score`` whose ``score(Xs) -> (m,)`` is maximized; the loop
works in the unit cube and maps points to the box only to evaluate ``f``.

References
----------
P. I. Frazier, A tutorial on Bayesian optimization, arXiv:1807.02811, 2018 (``frazier2018tutorial``),
Algorithm 1.

Book: chapters/bayesopt/gp_bo.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Result, Trace, as_rng, check_oracle
from ..validate import check_array, check_callable, check_choice, check_int, check_real, describe
from .acquisition import ACQUISITIONS, maximize_acquisition, sobol_design
from .gp import GPSurrogate

__all__ = ["bayes_opt", "random_search", "check_bounds", "initial_design"]


def check_bounds(bounds) -> np.ndarray:
    """A ``(d, 2)`` box with lower < upper in every row."""
    b = check_array(bounds, "bounds", shape=(None, 2))
    if not np.all(b[:, 0] < b[:, 1]):
        raise ValueError("bounds must have lower < upper in every row")
    return b


def initial_design(n, d, kind="sobol", rng=None) -> np.ndarray:
    """``n`` points of the unit cube: a scrambled Sobol design (``"sobol"``) or uniform draws (``"random"``)."""
    check_choice(kind, "init", ("sobol", "random"))
    rng = as_rng(rng)
    return sobol_design(n, d, rng) if kind == "sobol" else rng.uniform(size=(check_int(n, "n_init", low=1), d))


def _evaluator(trace, oracle, name, box, rng):
    """Evaluate the (counted) oracle at unit-cube points mapped to the box; ``None`` if a value is not finite."""
    counted = trace.counted(name, oracle, per_row=True)

    def evaluate(U):
        X = box[:, 0] + U * (box[:, 1] - box[:, 0])
        args = (rng,) if name == "stoch_f" else ()
        values = check_oracle(counted, name, X, *args, shape=(len(X),))
        return values if np.all(np.isfinite(values)) else None
    return evaluate


def bayes_opt(f, bounds, *, surrogate=None, acquisition="ei", n_init=5, n_iters=25,
              init="sobol", stoch_f=None, recommend=None, f_star=None,
              n_candidates=1024, scales=(0.1, 0.03, 0.01, 0.003), rng=None,
              callback=None) -> Result:
    r"""Bayesian optimization (the tutorial's Algorithm 1) of ``f`` over the box ``bounds``.

    Parameters
    ----------
    f : callable
        ``f(X) -> (n,)`` on a batch ``(n, d)``: the objective, evaluated (and counted) unless
        ``stoch_f`` is given, in which case ``f`` only measures the regret of the recommendation.
    bounds : array_like, shape (d, 2)
        The box.
    surrogate : object or None
        ``fit(X, y, rng) -> model`` (module docstring); default ``GPSurrogate()`` (Matérn-5/2, ML-II).
    acquisition : str or callable
        ``"ei"``, ``"noisy_ei"``, ``"ucb"``, ``"mes"`` or ``make(model, X_obs, y_obs, rng) -> score``.
    n_init : int
        Size of the initial design; ``n_iters`` evaluations follow (``n_init + n_iters`` in all).
    init : {"sobol", "random"}
    stoch_f : callable or None
        ``stoch_f(X, rng) -> (n,)``: noisy evaluations (counted as ``stoch_f``).
    recommend : {"best_observed", "best_mean"} or None
        The point reported after each step: the best evaluated value (default without noise) or the
        evaluated point of lowest posterior mean (default with ``stoch_f``).
    f_star : float or None
        The known minimum: adds the ``regret`` column.
    n_candidates : int
        Sobol candidates per step (refreshed every step), then polished at ``scales``
        (:func:`optlab.bayesopt.acquisition.maximize_acquisition`; ``()`` for none).
    rng, callback
        The one source of randomness; ``callback(record) -> bool`` after each step, True stops.

    Returns
    -------
    Result
        ``x``: the recommended point, ``f``: ``f`` there (computed for logging when noisy).  Extras:
        ``X``, ``y`` (every evaluated point in the box and its observed value), ``model`` (the last
        fitted surrogate).  History, one row per step (row 0: the initial design): ``t``, ``n_evals``,
        ``y`` (the newest observation), ``best`` (``f`` at the recommendation), ``regret``
        (``best - f_star``) and ``acq`` (the maximized acquisition value; NaN on row 0).

    Notes
    -----
    Step :math:`t`: fit :math:`\mu_n, \Sigma_n` to :math:`(x_i, y_i)_{i \le n}`, take
    :math:`x_{n+1} = \arg\max_x \alpha_n(x)` over the candidates, observe :math:`y_{n+1}`.  Cost per
    step: the surrogate's fit (for the GP, :math:`O(n^3)` per likelihood evaluation) and the
    acquisition on about ``n_candidates + n_top * n_local * len(scales)`` points.  Everything
    minimizes; the tutorial maximizes.

    References
    ----------
    P. I. Frazier, arXiv:1807.02811 (``frazier2018tutorial``), Algorithm 1.

    Book: chapters/bayesopt/gp_bo.ipynb

    Examples
    --------
    >>> res = bayes_opt(lambda X: np.sum((X - 0.3) ** 2, axis=1), [[0.0, 1.0]], n_init=3, n_iters=4,
    ...                 f_star=0.0, n_candidates=64, rng=0)
    >>> res.n_evals, len(res.history), bool(res.history["regret"][-1] < 1e-3)
    ({'f': 7}, 5, True)
    """
    box, rng = check_bounds(bounds), as_rng(rng)
    d = len(box)
    check_callable(f, "f", signature="X -> (n,) values")
    check_callable(stoch_f, "stoch_f", optional=True,
                   signature="(X, rng) -> (n,) values")
    surrogate = GPSurrogate() if surrogate is None else surrogate
    if not callable(getattr(surrogate, "fit", None)):
        raise TypeError("surrogate must have a method fit(X, y, rng) -> model, "
                        f"got {describe(surrogate)}")
    make = acquisition if callable(acquisition) else \
        ACQUISITIONS[check_choice(acquisition, "acquisition", ACQUISITIONS)]
    n_init = check_int(n_init, "n_init", low=1)
    n_iters = check_int(n_iters, "n_iters", low=0)
    noisy = stoch_f is not None
    recommend = recommend or ("best_mean" if noisy else "best_observed")
    check_choice(recommend, "recommend", ("best_observed", "best_mean"))
    f_star = None if f_star is None else check_real(f_star, "f_star")
    n_candidates = check_int(n_candidates, "n_candidates", low=1)
    name = acquisition if isinstance(acquisition, str) else describe(acquisition)
    params = {"acquisition": name, "surrogate": repr(surrogate), "n_init": n_init,
              "init": init, "recommend": recommend, "n_candidates": n_candidates,
              "scales": tuple(scales), "noisy": noisy}
    trace = Trace("bayes_opt", params, callback)
    oracle = "stoch_f" if noisy else "f"
    evaluate = _evaluator(trace, stoch_f if noisy else f, oracle, box, rng)

    def to_box(u):
        return box[:, 0] + u * (box[:, 1] - box[:, 0])

    def record(t, acq):
        # the recommendation: the best value seen, or the evaluated point of lowest mean
        if recommend == "best_observed":
            i = int(np.argmin(y))
        else:
            i = int(np.argmin(model.predict(U)[0]))
        value = float(np.asarray(f(to_box(U[i])[None]))[0]) if noisy else float(y[i])
        row = {"y": y[-1], "best": value, "acq": acq}
        if f_star is not None:
            row["regret"] = value - f_star
        return i, value, trace.log(t, **row)

    U = initial_design(n_init, d, init, rng)
    y = evaluate(U)
    if y is None:
        raise ValueError("f returned non-finite values on the initial design")
    model = surrogate.fit(U, y, rng)
    i, value, stop = record(0, np.nan)
    n_done = 0
    for t in range(0 if stop else n_iters):
        score = make(model, U, y, rng)                     # alpha_n, to maximize
        u_next, acq = maximize_acquisition(score, d, rng, n_candidates=n_candidates,
                                           scales=scales, anchors=U)
        y_next = evaluate(u_next[None])
        if y_next is None:
            trace.message = f"f returned a non-finite value at step {t + 1}"
            break
        U, y = np.vstack([U, u_next]), np.append(y, y_next)
        model = surrogate.fit(U, y, rng)                   # the new posterior
        n_done = t + 1
        i, value, stop = record(n_done, acq)
        if stop:
            break
    return trace.result(to_box(U[i]), value, n_iters=n_done, X=to_box(U), y=y,
                        model=model)


def random_search(f, bounds, *, n_evals, f_star=None, rng=None, callback=None) -> Result:
    r"""Uniform random search: ``n_evals`` uniform points of the box, the best kept; the baseline of the loop.

    History, one row per evaluation: ``t``, ``n_evals``, ``y``, ``best`` and, with ``f_star``, ``regret``.
    The points do not adapt, so they are evaluated in one batch: the ``n_evals`` column counts that
    batch on every row, and ``t`` is the number of evaluations the row's ``best`` has seen (plot
    against ``t``).

    >>> res = random_search(lambda X: X[:, 0] ** 2, [[-1.0, 1.0]], n_evals=20, f_star=0.0, rng=0)
    >>> res.n_evals, bool(res.history["regret"][-1] == res.f)
    ({'f': 20}, True)
    """
    box, rng = check_bounds(bounds), as_rng(rng)
    check_callable(f, "f", signature="X -> (n,) values")
    n_evals = check_int(n_evals, "n_evals", low=1)
    f_star = None if f_star is None else check_real(f_star, "f_star")
    trace = Trace("random_search", {"n_evals": n_evals}, callback)
    evaluate = _evaluator(trace, f, "f", box, rng)
    U = rng.uniform(size=(n_evals, len(box)))
    values = evaluate(U)                                          # all at once: the points do not adapt
    if values is None:
        raise ValueError("f returned non-finite values")
    running = np.minimum.accumulate(values)
    n_done = 0
    for t in range(n_evals):                                      # one history row per evaluation
        n_done = t + 1
        row = {"y": values[t], "best": running[t]} | ({} if f_star is None else {"regret": running[t] - f_star})
        if trace.log(n_done, **row):
            break
    i = int(np.argmin(values[:n_done]))
    x_best, best = U[i], float(values[i])
    return trace.result(box[:, 0] + x_best * (box[:, 1] - box[:, 0]), best, n_iters=n_done)
