r"""The shared pieces of every method: problems, results, histories, the trace and replicas.

Every method in ``optlab`` has the same shape::

    res = method(<oracles>, x0, *, <hyperparameters>, n_iters=..., rng=None, callback=None)

and returns one :class:`Result`.  Inside, the method checks its arguments once
(:mod:`optlab.validate`), writes its own visible ``for t in range(n_iters):``
loop and does its bookkeeping through a :class:`Trace`: it counts oracle calls,
records a row of the :class:`History` per logged step, asks the optional
callback whether to stop, and notices when the iterates stop being finite.

Conventions of the whole library
--------------------------------
* **Oracles** are plain callables named after the mathematics: ``f``, ``grad``,
  ``stoch_grad(x, rng)``, ``stoch_f(x, rng)``, ``hvp(x, v)``, ``prox(v, lr)``
  (the proximal map of ``lr * h``), ``project(x)``.  Everything minimizes.
* **Steps**: ``lr`` is a number or a schedule ``t -> float`` for ``t = 0, 1, ...``
  (:mod:`optlab.schedules`).  The history column ``lr`` on the row of step ``t``
  is the step that was taken to *reach* ``x_t`` (NaN on the row of ``x_0``).
* **Counting**: ``Result.n_evals`` counts oracle calls by name; a batched call
  on ``n`` points counts ``n`` (:meth:`Trace.counted`), so zeroth-order and
  Bayesian-optimization methods are compared at equal queries.  Evaluations made
  only to log progress are not counted.
* **Replicas**: where a claim is statistical, a method runs ``R`` independent
  replicas at once: ``x0`` has shape ``(R, d)`` and the oracles act row-wise
  (a ``(R, d)`` batch in, ``(R, d)`` gradients or ``(R,)`` values out).  The
  history then logs the mean and chosen quantiles over the replicas
  (:func:`replica_stats`), and a thousand seeds cost one vectorized loop.
  :func:`as_batch` and :func:`check_rowwise` make this safe.
* **Populations** that *interact* (consensus particles, federated clients,
  candidate datasets) are not replicas: they are their own argument (e.g.
  ``particles`` of shape ``(N, d)``), never an overloaded ``x0``.
* **Several variables** (bilevel ``x``/``y``, primal/dual) are named blocks: ``x``
  of a :class:`Result` may be a dict of arrays.  A multiobjective method's ``f``
  is a vector.
* **Randomness** enters through one ``rng`` argument, normalized once by
  :func:`as_rng`; the library never touches global seeds.
* **Non-finite iterates** end a run with a :class:`Result` whose message says
  so (:meth:`Trace.diverged`); bad *arguments* raise before the run starts.

Book: chapters/toolkit.ipynb

References
----------
The ``Result`` with an extras mapping readable as attributes follows
``scipy.optimize.OptimizeResult`` (Virtanen et al., SciPy 1.0, Nature Methods 17, 2020).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .validate import check_array, check_callable, check_int, check_output, check_probability, check_real, describe

__all__ = ["Problem", "Result", "History", "Trace", "as_rng", "as_schedule", "step_at", "as_array",
           "as_batch", "check_rowwise", "replica_stats", "quantile_names", "geometric_steps",
           "array_namespace", "check_oracle", "source"]


# --------------------------------------------------------------------------- randomness and steps

def as_rng(rng=None) -> np.random.Generator:
    r"""Normalize a seed into a :class:`numpy.random.Generator`.

    Parameters
    ----------
    rng : None, int or numpy.random.Generator
        ``None`` gives a fresh, unseeded generator; an int seeds a new one; a
        generator is returned unchanged (so a caller can share one stream).

    Examples
    --------
    >>> as_rng(0).integers(10, size=3).tolist() == as_rng(0).integers(10, size=3).tolist()
    True
    """
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, numbers.Integral):
        raise TypeError(f"rng must be None, an int seed >= 0 or a numpy.random.Generator, got {describe(rng)}")
    if rng < 0:
        raise ValueError(f"rng must be None, an int seed >= 0 or a numpy.random.Generator, got {rng}")
    return np.random.default_rng(int(rng))


def as_schedule(lr, name: str = "lr") -> Callable[[int], float]:
    r"""Turn a step size into a schedule ``t -> float`` (``t = 0, 1, ...``).

    Parameters
    ----------
    lr : float or callable
        A finite number ``>= 0`` gives a constant schedule; a callable is used
        as it is (see :mod:`optlab.schedules`); what it returns is checked at
        every step by :func:`step_at`.
    name : str
        The argument's name in error messages.

    Examples
    --------
    >>> as_schedule(0.1)(7)
    0.1
    """
    if callable(lr):
        return lr
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
        raise TypeError(f"{name} must be a finite number >= 0 or a schedule t -> float, got {describe(lr)}")
    from .schedules import constant

    return constant(check_real(lr, name, low=0.0))


def step_at(schedule, t: int, name: str = "lr") -> float:
    r"""The step ``schedule(t)`` as a float, or a :class:`ValueError` if it is negative or not finite.

    >>> step_at(lambda t: 1.0 / (t + 1), 3)
    0.25
    """
    try:
        eta = float(schedule(t))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} schedule must return a number at step t={t}: {exc}") from None
    if not (math.isfinite(eta) and eta >= 0):
        raise ValueError(f"{name} schedule must return finite steps >= 0, got {eta:g} at step t={t}")
    return eta


def as_array(x0, name: str = "x0", ndim: Optional[int] = 1) -> np.ndarray:
    r"""Copy a starting point into a finite float64 array of ``ndim`` dimensions, or raise a clear error.

    The copy means a method never mutates its caller's ``x0``
    (:func:`optlab.validate.check_array` with one dimension by default).

    Examples
    --------
    >>> as_array([1, 2]).dtype
    dtype('float64')
    """
    return check_array(x0, name, ndim=ndim)


def array_namespace(x):
    r"""``numpy`` for arrays, ``torch`` for torch tensors, so one step function serves both.

    Without importing torch: a tensor is recognized by its type's module.

    >>> array_namespace(np.ones(2)).__name__
    'numpy'
    """
    if type(x).__module__.split(".")[0] == "torch":
        import torch

        return torch
    return np


# --------------------------------------------------------------------------- replicas

def as_batch(x0, name: str = "x0") -> tuple[np.ndarray, bool]:
    r"""A starting point ``(d,)`` or replicas ``(R, d)`` as a ``(R, d)`` copy, and whether it was one point.

    >>> X, single = as_batch([1.0, 2.0])
    >>> X.shape, single
    ((1, 2), True)
    """
    x = check_array(x0, name, ndim=(1, 2))
    return (x[None, :], True) if x.ndim == 1 else (x, False)


def check_rowwise(fn, X: np.ndarray, name: str = "f") -> np.ndarray:
    r"""Evaluate a row-wise objective on a batch and check that it *is* row-wise.

    ``fn(X)`` must return one value per row, shape ``(R,)``; and ``fn`` on the
    first row alone (as a ``(1, d)`` batch) must return the first value.  The
    second test catches an ``f`` that reduces over the wrong axis, which the shape
    alone cannot when ``R`` equals ``d``.

    >>> check_rowwise(lambda X: np.sum(X ** 2, axis=-1), np.ones((3, 3))).tolist()
    [3.0, 3.0, 3.0]
    >>> check_rowwise(lambda X: np.sum(X ** 2, axis=0), np.ones((3, 3)))
    Traceback (most recent call last):
    ...
    ValueError: f must be row-wise: on a (1, d) batch it returned shape (3,), expected (1,)
    """
    values = np.asarray(fn(X), dtype=float)
    if values.shape != (len(X),):
        raise ValueError(f"{name} must be row-wise: on a {X.shape} batch it returned shape {values.shape}, "
                         f"expected ({len(X)},)")
    first = np.asarray(fn(X[:1]), dtype=float)
    if first.shape != (1,):
        raise ValueError(f"{name} must be row-wise: on a (1, d) batch it returned shape {first.shape}, expected (1,)")
    if not np.allclose(first[0], values[0], rtol=1e-9, atol=1e-12, equal_nan=True):
        raise ValueError(f"{name} must be row-wise: its value on the first row alone differs from its value "
                         "on the whole batch")
    return values


def quantile_names(quantiles, prefix: str = "f") -> dict:
    r"""Checked quantile levels and their history column names, ``{0.95: "f_q95", ...}``.

    >>> quantile_names([0.5, 0.95])
    {0.5: 'f_q50', 0.95: 'f_q95'}
    """
    if isinstance(quantiles, (str, bytes)) or not np.iterable(quantiles):
        raise TypeError(f"quantiles must be a sequence of numbers in [0, 1], got {describe(quantiles)}")
    qs = [check_probability(q, "quantiles") for q in quantiles]
    names = {q: f"{prefix}_q{100 * q:g}".replace(".", "_") for q in qs}
    if len(set(names.values())) < len(qs):
        raise ValueError(f"quantiles must be distinct at the resolution of their column names, got {list(quantiles)}")
    return names


def replica_stats(values, quantiles=(0.5, 0.95), prefix: str = "f") -> dict:
    r"""The mean and the chosen quantiles of a per-replica value, as history columns.

    >>> replica_stats(np.arange(101.0), quantiles=(0.5, 0.95))
    {'f': 50.0, 'f_q50': 50.0, 'f_q95': 95.0}
    """
    v = np.asarray(values, dtype=float).ravel()
    names = quantile_names(quantiles, prefix)
    row = {prefix: float(v.mean())}
    if names:
        row.update(zip(names.values(), np.quantile(v, list(names)).tolist()))
    return row


def geometric_steps(n_iters: int, n_log: int) -> set:
    r"""About ``n_log`` steps in ``[1, n_iters]``, geometrically spaced, plus step 0: where to log.

    Cheap (a long run logs few rows) and evenly spread on a log axis.

    >>> sorted(geometric_steps(1000, 4))
    [0, 1, 10, 100, 1000]
    """
    n_iters, n_log = check_int(n_iters, "n_iters", low=1), check_int(n_log, "n_log", low=2)
    return {0, *np.unique(np.round(np.geomspace(1, n_iters, n_log)).astype(int)).tolist()}


# --------------------------------------------------------------------------- problems

_ORACLES = ("grad", "h", "prox", "project", "hvp", "stoch_grad", "stoch_f")


@dataclass
class Problem:
    r"""An objective with its oracles, its constants and, where known, its solution.

    The objective is :math:`F = f + h`: a smooth or Lipschitz part :math:`f`
    with the gradient oracles, and an optional convex "simple" part :math:`h`
    reached only through its proximal map (``h = None`` means :math:`F = f`).

    Parameters
    ----------
    name : str
        A short readable name, e.g. ``"rosenbrock(d=2)"``.
    f : callable
        ``f(x) -> float`` (and, for batch-aware problems, ``(n, d) -> (n,)``).
    grad : callable or None
        ``grad(x)``: the gradient (or a subgradient) of ``f``.
    x0 : ndarray
        The conventional starting point.
    h : callable or None
        ``h(x)``, the non-smooth part of :math:`F`; its ``prox`` must be given too.
    prox : callable or None
        ``prox(v, lr)``, the proximal map of ``lr * h`` (row-wise on batches).
    project : callable or None
        ``project(x)``, the Euclidean projection onto the feasible set.
    hvp : callable or None
        ``hvp(x, v)``, a Hessian-vector product of ``f``, where it is cheap.
    stoch_grad : callable or None
        ``stoch_grad(x, rng)``, an unbiased stochastic gradient of ``f``;
        row-wise on an ``(R, d)`` batch of replicas.
    stoch_f : callable or None
        ``stoch_f(x, rng)``, an unbiased noisy value of ``f`` (for zeroth-order methods).
    L, mu, G : float or None
        Smoothness of ``f`` (gradient Lipschitz constant), strong convexity of
        :math:`F`, and a Lipschitz constant of ``f``: the one spelling that step
        rules read.
    x_star, f_star : ndarray or None, float or None
        A minimizer and the minimum of :math:`F`, where known.
    bounds : ndarray or None
        A ``(d, 2)`` box of lower/upper bounds, for functions conventionally searched in a box.
    info : dict
        Anything else (data, condition number, ...).

    Examples
    --------
    >>> p = Problem("sphere", f=lambda x: float(x @ x), grad=lambda x: 2 * x,
    ...             x0=np.ones(3), x_star=np.zeros(3), f_star=0.0, L=2.0, mu=2.0)
    >>> p.dim, p.F(p.x0), p.gap(p.x0)
    (3, 3.0, 3.0)
    """

    name: str
    f: Callable
    grad: Optional[Callable]
    x0: np.ndarray
    h: Optional[Callable] = None
    prox: Optional[Callable] = None
    project: Optional[Callable] = None
    hvp: Optional[Callable] = None
    stoch_grad: Optional[Callable] = None
    stoch_f: Optional[Callable] = None
    L: Optional[float] = None
    mu: Optional[float] = None
    G: Optional[float] = None
    x_star: Optional[np.ndarray] = None
    f_star: Optional[float] = None
    bounds: Optional[np.ndarray] = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {describe(self.name)}")
        check_callable(self.f, "f")
        for oracle in _ORACLES:
            check_callable(getattr(self, oracle), oracle, optional=True)
        if (self.h is None) != (self.prox is None):
            raise ValueError("h and prox go together: give both (F = f + h) or neither")
        self.x0 = check_array(self.x0, "x0", ndim=1)
        for const in ("L", "mu", "G"):
            if getattr(self, const) is not None:
                setattr(self, const, check_real(getattr(self, const), const, low=0.0))
        if self.x_star is not None:
            self.x_star = check_array(self.x_star, "x_star", shape=self.x0.shape)
        if self.f_star is not None:
            self.f_star = check_real(self.f_star, "f_star")
        if self.bounds is not None:
            self.bounds = check_array(self.bounds, "bounds", shape=(self.dim, 2))
            if not np.all(self.bounds[:, 0] < self.bounds[:, 1]):
                raise ValueError("bounds must have lower < upper in every row")
        if not isinstance(self.info, dict):
            raise TypeError(f"info must be a dict, got {describe(self.info)}")

    @property
    def dim(self) -> int:
        """The number of variables."""
        return int(self.x0.size)

    def F(self, x):
        r"""The whole objective :math:`F(x) = f(x) + h(x)` (just ``f`` when there is no ``h``)."""
        return self.f(x) if self.h is None else self.f(x) + self.h(x)

    def gap(self, x):
        r"""Suboptimality :math:`F(x) - F^\star`: a float for one point, an array for a batch of replicas."""
        if self.f_star is None:
            raise ValueError(f"problem {self.name!r} has no known f_star")
        value = np.asarray(self.F(x), dtype=float) - self.f_star
        return float(value) if value.ndim == 0 else value

    def __repr__(self) -> str:
        known = "known" if self.f_star is not None else "unknown"
        oracles = ", ".join(o for o in _ORACLES if getattr(self, o) is not None)
        return f"Problem({self.name!r}, dim={self.dim}, f_star {known}, oracles: {oracles or 'f only'})"


# --------------------------------------------------------------------------- history and result

class History:
    r"""Columns of per-step records: ``t``, ``f``, ``n_evals`` and named extras.

    ``history["f"]`` gives a numpy array; ``history.columns`` lists the names.
    A column that was not recorded on every row is padded with NaN.

    Examples
    --------
    >>> h = History()
    >>> h.append(t=0, f=2.0, n_evals=1)
    >>> h.append(t=1, f=1.0, n_evals=2, grad_norm=0.5)
    >>> h["f"].tolist(), h["grad_norm"].tolist()[1], len(h)
    ([2.0, 1.0], 0.5, 2)
    """

    def __init__(self):
        self._cols: dict[str, list] = {}
        self._n = 0

    def append(self, **row) -> None:
        """Add one row; new columns are back-filled with NaN."""
        for key, value in row.items():
            if key not in self._cols:
                self._cols[key] = [np.nan] * self._n
            self._cols[key].append(value)
        self._n += 1
        for col in self._cols.values():
            if len(col) < self._n:
                col.append(np.nan)

    @property
    def columns(self) -> list:
        """The recorded column names, in first-seen order."""
        return list(self._cols)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._cols:
            raise KeyError(f"no history column {key!r}; recorded: {self.columns}")
        return np.asarray(self._cols[key])

    def last(self, key: str):
        """The last recorded value of a column."""
        return self[key][-1]

    def __contains__(self, key: str) -> bool:
        return key in self._cols

    def __len__(self) -> int:
        return self._n

    def as_dict(self) -> dict:
        """All columns as arrays."""
        return {k: self[k] for k in self._cols}

    def __repr__(self) -> str:
        return f"History({self._n} rows; columns {self.columns})"


def _short(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, np.ndarray):
        return f"array{value.shape}" if value.size > 3 else np.array2string(value, precision=4)
    if isinstance(value, float):
        return f"{value:.6g}"
    return describe(value)


@dataclass(repr=False)
class Result:
    r"""What every method returns (one class for all of them, never subclassed).

    Attributes
    ----------
    x : ndarray or dict of ndarray
        The method's answer: one array (e.g. the last iterate, or ``(R, d)``
        replicas), or named blocks for methods with several variables (``{"x": ..,
        "y": ..}`` in bilevel optimization, primal and dual variables).
    f : float or ndarray
        The objective at ``x`` (a vector for multiobjective methods; the mean over
        replicas; NaN if the method was given no objective).
    history : History
        Per-step records; ``history["f"]`` is an array.
    method : str
        The method's name.
    params : dict
        The hyperparameters actually used.
    n_iters : int
        Iterations performed.
    n_evals : dict
        Oracle calls by oracle name, e.g. ``{"grad": 100}``; logging calls are not counted.
    converged : bool
        Whether a stopping test (not the iteration budget) ended the run.
    message : str
        A readable stopping reason.
    extras : dict
        Method-specific outputs (a running average, dual variables, the best point
        found, a Pareto set), documented under Returns in each method's docstring and
        readable as attributes: ``res.x_avg`` is ``res.extras["x_avg"]``.

    Examples
    --------
    >>> res = Result(x=np.zeros(2), f=0.0, history=History(), method="demo", params={}, n_iters=0,
    ...              n_evals={}, converged=False, message="done", extras={"x_avg": np.ones(2)})
    >>> res.x_avg.tolist()
    [1.0, 1.0]
    """

    x: Any
    f: Any
    history: History
    method: str
    params: dict
    n_iters: int
    n_evals: dict
    converged: bool
    message: str
    extras: dict = field(default_factory=dict)

    def __getattr__(self, name):
        extras = self.__dict__.get("extras", {})
        if name in extras:
            return extras[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or extra {name!r}; "
                             f"extras: {sorted(extras)}")

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self.__dict__.get("extras", {})))

    def __repr__(self) -> str:
        evals = ", ".join(f"{k}={v}" for k, v in self.n_evals.items())
        fields = [f"method={self.method!r}", f"f={_short(self.f)}", f"n_iters={self.n_iters}",
                  f"n_evals={{{evals}}}", f"converged={self.converged}", f"message={self.message!r}"]
        if self.extras:
            fields.append(f"extras=[{', '.join(self.extras)}]")
        # wrapped at 88 characters, the width of the book's page
        lines, line = [], "Result("
        for i, item in enumerate(fields):
            item += "," if i < len(fields) - 1 else ")"
            if len(line) + len(item) + 1 > 88 and line.strip() != "Result(":
                lines.append(line.rstrip())
                line = "       "
            line += item + " "
        return "\n".join(lines + [line.rstrip()])


def _copy(x):
    if isinstance(x, dict):
        return {k: np.array(v, copy=True) for k, v in x.items()}
    return np.array(x, copy=True)


def _as_f(f):
    if f is None:
        return float("nan")
    f = np.asarray(f, dtype=float)
    return float(f) if f.ndim == 0 else f


class Trace:
    r"""Bookkeeping for one run: oracle counts, the history, the callback and divergence.

    A method makes one ``Trace``, calls :meth:`count` when it calls an oracle (or
    wraps the oracle once with :meth:`counted`), :meth:`log` once per recorded step
    (``log`` returns True when the callback asks to stop), :meth:`diverged` where
    iterates may have blown up, and finishes with :meth:`result`.

    Parameters
    ----------
    method : str
        Name stored in the result.
    params : dict
        Hyperparameters stored in the result.
    callback : callable or None
        ``callback(record) -> bool``; ``record`` is the dict just logged.
        Returning True stops the run.
    keep_x : bool
        Also store a copy of ``x`` in each row (column ``"x"``).

    Examples
    --------
    >>> tr = Trace("demo", {"lr": 0.1})
    >>> tr.count("grad")
    >>> tr.log(0, f=1.0)
    False
    >>> res = tr.result(np.zeros(2), 1.0, n_iters=1, x_avg=np.ones(2))
    >>> res.n_evals, res.history["n_evals"].tolist(), res.message, res.x_avg.tolist()
    ({'grad': 1}, [1], 'reached n_iters=1', [1.0, 1.0])
    """

    def __init__(self, method: str, params: dict, callback=None, keep_x: bool = False):
        check_callable(callback, "callback", optional=True, signature="record -> bool")
        self.method = method
        self.params = dict(params)
        self.callback = callback
        self.keep_x = bool(keep_x)
        self.history = History()
        self.n_evals: dict[str, int] = {}
        self.stopped_by_callback = False
        self.message: Optional[str] = None

    def count(self, oracle: str, k: int = 1) -> None:
        """Record ``k`` calls of ``oracle``."""
        self.n_evals[oracle] = self.n_evals.get(oracle, 0) + int(k)

    def counted(self, oracle: str, fn, *, per_row: bool = False):
        r"""``fn`` wrapped so that each call is counted under ``oracle``.

        With ``per_row``, a call on a batch ``(n, d)`` counts ``n`` queries (a
        zeroth-order method that evaluates 20 perturbed points pays 20).
        """
        check_callable(fn, oracle)

        def wrapped(x, *args, **kwargs):
            self.count(oracle, len(x) if per_row and np.ndim(x) == 2 else 1)
            return fn(x, *args, **kwargs)

        return wrapped

    @property
    def total_evals(self) -> int:
        """All oracle calls so far."""
        return sum(self.n_evals.values())

    def log(self, t: int, x=None, **values: Any) -> bool:
        """Append a row ``t, n_evals, **values`` (and ``x`` when kept); True means stop."""
        row = {"t": int(t), "n_evals": self.total_evals}
        row.update({k: (float(v) if np.ndim(v) == 0 and isinstance(v, numbers.Real) else v)
                    for k, v in values.items()})
        if self.keep_x and x is not None:
            row["x"] = _copy(x)
        self.history.append(**row)
        if self.callback is not None and self.callback(row):
            self.stopped_by_callback = True
            return True
        return False

    def diverged(self, x, t: int) -> bool:
        """True (and the run's message set) when ``x`` (an array or named blocks) is no longer finite."""
        blocks = x.values() if isinstance(x, dict) else [x]
        if all(np.all(np.isfinite(b)) for b in blocks):
            return False
        self.message = f"iterates became non-finite (NaN or inf) by step {t}: the step size may be too large"
        return True

    def result(self, x, f, *, n_iters: int, converged: bool = False, message: Optional[str] = None,
               **extras) -> Result:
        """Package the run into a :class:`Result`; keyword arguments become its extras."""
        if message is None:
            message = self.message or ("stopped by callback" if self.stopped_by_callback
                                       else f"reached n_iters={n_iters}")
        return Result(x=_copy(x), f=_as_f(f), history=self.history, method=self.method, params=self.params,
                      n_iters=int(n_iters), n_evals=dict(self.n_evals), converged=bool(converged),
                      message=message, extras=extras)


def check_oracle(fn, name: str, x, *args, shape=None):
    """Call an oracle and check the shape of what it returns (``shape`` defaults to ``x``'s)."""
    return check_output(fn(x, *args), name, np.shape(x) if shape is None else shape)


# --------------------------------------------------------------------------- showing code

def source(obj, docstring: bool = False) -> str:
    r"""The source code of a function or class, as chapters display it.

    Parameters
    ----------
    obj : function or class
        What to show.
    docstring : bool
        Keep the docstring (default: drop it, the chapter's text explains).

    Examples
    --------
    >>> print(source(as_batch).splitlines()[0])
    def as_batch(x0, name: str = "x0") -> tuple[np.ndarray, bool]:
    """
    import ast
    import inspect
    import textwrap

    text = textwrap.dedent(inspect.getsource(obj))
    if docstring:
        return text
    node = ast.parse(text).body[0]
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        lines = text.splitlines(keepends=True)
        doc = body[0]
        text = "".join(lines[: doc.lineno - 1] + lines[doc.end_lineno:])
    return text
