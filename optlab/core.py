r"""The shared pieces of every method: problems, results, histories and the trace.

Every method in ``optlab`` has the same shape::

    res = method(<oracles>, x0, *, <hyperparameters>, n_iters=..., rng=None, callback=None)

and returns one :class:`Result`.  Inside, the method writes its own visible
``for t in range(n_iters):`` loop and does its bookkeeping through a
:class:`Trace`: it counts oracle calls, records a row of the :class:`History`
per logged step, and asks the optional callback whether to stop.

Book: chapters/toolkit.ipynb
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["Problem", "Result", "History", "Trace", "as_rng", "as_schedule", "as_array", "source"]


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
    if isinstance(rng, (bool, np.bool_)):
        raise TypeError("rng must be None, an int seed or a numpy.random.Generator, got a bool")
    if isinstance(rng, numbers.Integral):
        if rng < 0:
            raise ValueError(f"rng must be a non-negative int seed, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}"
    )


def as_schedule(lr) -> Callable[[int], float]:
    r"""Turn a step size into a schedule ``t -> float`` (``t = 0, 1, ...``).

    Parameters
    ----------
    lr : float or callable
        A non-negative number gives a constant schedule; a callable is used
        as it is (see :mod:`optlab.schedules`).

    Examples
    --------
    >>> as_schedule(0.1)(7)
    0.1
    """
    if callable(lr):
        return lr
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a non-negative float or a schedule t -> float, got {type(lr).__name__}")
    lr = float(lr)
    if not np.isfinite(lr) or lr < 0:
        raise ValueError(f"lr must be a finite non-negative float, got {lr}")
    from .schedules import constant

    return constant(lr)


def as_array(x0, name: str = "x0", ndim: Optional[int] = 1) -> np.ndarray:
    r"""Copy a starting point into a finite float64 array, or raise a clear error.

    The copy means a method never mutates its caller's ``x0``.

    Examples
    --------
    >>> as_array([1, 2]).dtype
    dtype('float64')
    """
    try:
        x = np.array(x0, dtype=float, copy=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of numbers: {exc}") from None
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return x


@dataclass
class Problem:
    r"""An objective with its oracles and, where known, its solution.

    Parameters
    ----------
    name : str
        A short readable name, e.g. ``"rosenbrock(d=2)"``.
    f : callable
        ``f(x) -> float``.
    grad : callable or None
        ``grad(x) -> ndarray``, the gradient (or a subgradient).
    x0 : ndarray
        The conventional starting point.
    hvp : callable or None
        ``hvp(x, v) -> ndarray``, a Hessian-vector product, where it is cheap.
    stoch_grad : callable or None
        ``stoch_grad(x, rng) -> ndarray``, an unbiased stochastic gradient.
    x_star, f_star : ndarray or None, float or None
        A minimizer and the minimum, where known (``f_star`` may be known
        without ``x_star``, e.g. for functions with many minimizers).
    bounds : ndarray or None
        A ``(d, 2)`` box of lower/upper bounds, for test functions that are
        conventionally searched in a box.
    info : dict
        Anything else (data, condition number, ...).

    Examples
    --------
    >>> p = Problem("sphere", f=lambda x: float(x @ x), grad=lambda x: 2 * x,
    ...             x0=np.ones(3), x_star=np.zeros(3), f_star=0.0)
    >>> p.dim, p.f(p.x0), p.gap(p.x0)
    (3, 3.0, 3.0)
    """

    name: str
    f: Callable[[np.ndarray], float]
    grad: Optional[Callable[[np.ndarray], np.ndarray]]
    x0: np.ndarray
    hvp: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None
    stoch_grad: Optional[Callable[..., np.ndarray]] = None
    x_star: Optional[np.ndarray] = None
    f_star: Optional[float] = None
    bounds: Optional[np.ndarray] = None
    info: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """The number of variables."""
        return int(np.size(self.x0))

    def gap(self, x) -> float:
        """Suboptimality ``f(x) - f_star`` (requires a known ``f_star``)."""
        if self.f_star is None:
            raise ValueError(f"problem {self.name!r} has no known f_star")
        return float(self.f(x) - self.f_star)

    def __repr__(self) -> str:
        known = "known" if self.f_star is not None else "unknown"
        return f"Problem({self.name!r}, dim={self.dim}, f_star {known})"


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

    def __contains__(self, key: str) -> bool:
        return key in self._cols

    def __len__(self) -> int:
        return self._n

    def as_dict(self) -> dict:
        """All columns as arrays."""
        return {k: self[k] for k in self._cols}

    def __repr__(self) -> str:
        return f"History({self._n} rows; columns {self.columns})"


@dataclass
class Result:
    r"""What every method returns.

    Attributes
    ----------
    x : ndarray
        The final point (the method's own choice: e.g. the last iterate).
    f : float
        The objective at ``x`` (NaN if the method was given no ``f``).
    history : History
        Per-step records; ``history["f"]`` is an array.
    method : str
        The method's name.
    params : dict
        The hyperparameters actually used.
    n_iters : int
        Iterations performed.
    n_evals : dict
        Oracle calls by oracle name, e.g. ``{"grad": 100}``; logging calls are
        not counted.
    converged : bool
        Whether a stopping test (not the iteration budget) ended the run.
    message : str
        A readable stopping reason.
    """

    x: np.ndarray
    f: float
    history: History
    method: str
    params: dict
    n_iters: int
    n_evals: dict
    converged: bool
    message: str

    def __repr__(self) -> str:
        evals = ", ".join(f"{k}={v}" for k, v in self.n_evals.items())
        return (f"Result(method={self.method!r}, f={self.f:.6g}, n_iters={self.n_iters}, "
                f"n_evals={{{evals}}}, converged={self.converged}, message={self.message!r})")


class Trace:
    r"""Bookkeeping for one run: oracle counts, the history and the callback.

    A method makes one ``Trace``, calls :meth:`count` when it calls an oracle,
    :meth:`log` once per recorded step (``log`` returns True when the
    callback asks to stop) and finishes with :meth:`result`.

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
    >>> res = tr.result(np.zeros(2), 1.0, n_iters=1)
    >>> res.n_evals, res.history["n_evals"].tolist(), res.message
    ({'grad': 1}, [1], 'reached n_iters=1')
    """

    def __init__(self, method: str, params: dict, callback=None, keep_x: bool = False):
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
        self.method = method
        self.params = dict(params)
        self.callback = callback
        self.keep_x = bool(keep_x)
        self.history = History()
        self.n_evals: dict[str, int] = {}
        self.stopped_by_callback = False

    def count(self, oracle: str, k: int = 1) -> None:
        """Record ``k`` calls of ``oracle``."""
        self.n_evals[oracle] = self.n_evals.get(oracle, 0) + int(k)

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
            row["x"] = np.array(x, copy=True)
        self.history.append(**row)
        if self.callback is not None and self.callback(row):
            self.stopped_by_callback = True
            return True
        return False

    def result(self, x, f, *, n_iters: int, converged: bool = False, message: Optional[str] = None) -> Result:
        """Package the run into a :class:`Result`."""
        if message is None:
            message = "stopped by callback" if self.stopped_by_callback else f"reached n_iters={n_iters}"
        return Result(x=np.array(x, copy=True), f=float(f) if f is not None else float("nan"),
                      history=self.history, method=self.method, params=self.params,
                      n_iters=int(n_iters), n_evals=dict(self.n_evals), converged=bool(converged),
                      message=message)


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
    >>> print(source(as_array).splitlines()[0])
    def as_array(x0, name: str = "x0", ndim: Optional[int] = 1) -> np.ndarray:
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
