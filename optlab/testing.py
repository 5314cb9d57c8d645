r"""Check oracles against finite differences.

Chapters and tests use these to make sure a hand-written gradient or
Hessian-vector product matches the function it claims to differentiate.  Both
return a relative error, so a caller states its own tolerance::

    assert check_grad(p.f, p.grad, x) < 1e-6

Two more checks serve every method's tests: :func:`check_bad_inputs` (each bad
argument raises a ``TypeError``/``ValueError`` that names it) and
:func:`check_method_contract` (the :class:`~optlab.core.Result` of the core
contract: fields, ``x0`` not mutated, same ``rng`` same history, callback stops).

Book: chapters/toolkit.ipynb

References
----------
Nocedal & Wright, Numerical Optimization, 2nd ed., Springer 2006, section 8.1
(finite-difference derivative approximations).
"""
from __future__ import annotations

import numpy as np

from .core import History, Result, as_array, as_rng
from .validate import check_callable, check_int, check_positive

__all__ = ["check_grad", "check_hvp", "fd_grad", "check_bad_inputs", "check_method_contract", "GARBAGE"]


def _relative_error(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(np.linalg.norm(a - b) / max(1.0, np.linalg.norm(a), np.linalg.norm(b)))


def _directions(dim, n_dirs, rng):
    """The coordinate basis, or ``n_dirs`` random unit directions."""
    if n_dirs is None:
        return np.eye(dim)
    if check_int(n_dirs, "n_dirs", low=1) >= dim:
        return np.eye(dim)
    d = as_rng(rng).standard_normal((int(n_dirs), dim))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def fd_grad(f, x, eps: float = 1e-6) -> np.ndarray:
    r"""Central-difference gradient of ``f`` at ``x`` (``2 d`` calls of ``f``).

    Examples
    --------
    >>> np.round(fd_grad(lambda x: float(x @ x), np.array([1.0, -2.0])), 6)
    array([ 2., -4.])
    """
    x = as_array(x, "x")
    eps = check_positive(eps, "eps")
    check_callable(f, "f", signature="x -> float")
    E = np.eye(x.size) * eps
    return np.array([(f(x + e) - f(x - e)) / (2 * eps) for e in E])


def check_grad(f, grad, x, *, eps: float = 1e-6, n_dirs=None, rng=None) -> float:
    r"""Relative error between ``grad(x)`` and central finite differences of ``f``.

    Compares directional derivatives ``grad(x) @ u`` with
    ``(f(x + eps u) - f(x - eps u)) / (2 eps)`` along the coordinate axes
    (default) or along ``n_dirs`` random unit directions (cheaper in high
    dimension).  The error is ``||a - b|| / max(1, ||a||, ||b||)``; for a
    correct smooth gradient it is around ``1e-8`` with the default ``eps``.

    Parameters
    ----------
    f, grad : callable
        ``f(x) -> float`` and ``grad(x) -> ndarray``.
    x : array_like
        The point, 1-D.
    eps : float
        Finite-difference step.
    n_dirs : int or None
        Number of random directions; ``None`` uses all coordinates.
    rng : None, int or Generator
        Seeds the random directions.

    Returns
    -------
    float
        The relative error.

    Examples
    --------
    >>> f = lambda x: float(np.sum(x ** 4))
    >>> check_grad(f, lambda x: 4 * x ** 3, np.array([0.5, -1.0])) < 1e-7
    True
    >>> check_grad(f, lambda x: 3 * x ** 3, np.array([0.5, -1.0])) > 0.1
    True
    """
    x = as_array(x, "x")
    eps = check_positive(eps, "eps")
    check_callable(f, "f", signature="x -> float")
    check_callable(grad, "grad", signature="x -> array")
    g = np.asarray(grad(x), dtype=float)
    if g.shape != x.shape:
        raise ValueError(f"grad(x) has shape {g.shape}, expected {x.shape}")
    U = _directions(x.size, n_dirs, rng)
    fd = np.array([(f(x + eps * u) - f(x - eps * u)) / (2 * eps) for u in U])
    return _relative_error(U @ g, fd)


def check_hvp(grad, hvp, x, v=None, *, eps: float = 1e-6, rng=None) -> float:
    r"""Relative error between ``hvp(x, v)`` and a central difference of ``grad``.

    ``H v`` is approximated by ``(grad(x + eps v) - grad(x - eps v)) / (2 eps)``.

    Parameters
    ----------
    grad, hvp : callable
        ``grad(x) -> ndarray`` and ``hvp(x, v) -> ndarray``.
    x : array_like
        The point, 1-D.
    v : array_like or None
        The direction; a random unit vector when None.
    eps : float
        Finite-difference step.
    rng : None, int or Generator
        Seeds the random direction.

    Returns
    -------
    float
        The relative error.

    Examples
    --------
    >>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> check_hvp(lambda x: A @ x, lambda x, v: A @ v, np.ones(2), rng=0) < 1e-8
    True
    """
    x = as_array(x, "x")
    eps = check_positive(eps, "eps")
    check_callable(grad, "grad", signature="x -> array")
    check_callable(hvp, "hvp", signature="(x, v) -> array")
    if v is None:
        v = as_rng(rng).standard_normal(x.size)
        v /= np.linalg.norm(v)
    v = as_array(v, "v")
    if v.shape != x.shape:
        raise ValueError(f"v has shape {v.shape}, expected {x.shape}")
    hv = np.asarray(hvp(x, v), dtype=float)
    fd = (np.asarray(grad(x + eps * v)) - np.asarray(grad(x - eps * v))) / (2 * eps)
    return _relative_error(hv, fd)


#: Values no argument of optlab accepts (a number, an array, a callable, a seed, an option, a flag).
GARBAGE = {"a string": "not-a-valid-value", "an object": object(), "a complex number": 1 + 2j,
           "a dict": {"a": 1}}


def check_bad_inputs(fn, good: dict, bad: dict, *, generic=None, skip_generic=()) -> int:
    r"""Assert that every bad argument makes ``fn`` raise a clear error that names it.

    For each argument ``name`` and each value in ``bad[name]`` (and, for every argument
    of ``good`` not in ``skip_generic``, each value of :data:`GARBAGE`), calls
    ``fn(**{**good, name: value})`` and requires a :class:`TypeError` or
    :class:`ValueError` whose message contains ``name``.  A call that succeeds, or
    raises anything else (an ``IndexError`` from numpy broadcasting, a
    ``LinAlgError``...), fails with an ``AssertionError`` saying which argument and value.

    Parameters
    ----------
    fn : callable
        The function under test (keyword arguments only; wrap positional ones in a lambda).
    good : dict
        A valid call's keyword arguments.
    bad : dict
        ``{name: [bad values]}`` (the name in the message may be overridden with
        ``{name: [(value, "expected text in the message")]}``).
    generic : dict or None
        The generic bad values (default :data:`GARBAGE`).
    skip_generic : sequence of str
        Arguments that accept arbitrary objects (names, labels, ``info`` dicts).

    Returns
    -------
    int
        The number of bad calls checked.

    Examples
    --------
    >>> from optlab.schedules import cosine
    >>> check_bad_inputs(lambda lr, n_iters: cosine(lr, n_iters), {"lr": 0.1, "n_iters": 10},
    ...                  {"lr": [-1.0, float("nan")], "n_iters": [0, 2.5]})
    12
    """
    generic = GARBAGE if generic is None else generic
    fn(**good)  # the good call must work
    cases = [(name, value, name) for name, values in bad.items() for value in values]
    cases = [(n, v[0], v[1]) if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], str) else (n, v, m)
             for n, v, m in cases]
    cases += [(name, value, name) for name in good if name not in skip_generic for value in generic.values()]
    for name, value, expected in cases:
        try:
            fn(**{**good, name: value})
        except (TypeError, ValueError) as err:
            assert expected in str(err), f"{name}={value!r}: the message does not name {expected!r}: {err}"
        except Exception as err:  # noqa: BLE001 - the point is to catch cryptic errors
            raise AssertionError(f"{name}={value!r} raised a cryptic {type(err).__name__}: {err}") from err
        else:
            raise AssertionError(f"{name}={value!r} was accepted silently")
    return len(cases)


def check_method_contract(run, *, stochastic: bool = True, x0_name: str = "x0") -> Result:
    r"""The core contract of a method, checked on one small run.

    ``run(rng=..., callback=None, x0=<default start>)`` must call the method with its usual
    arguments and these; the ``x0`` default is the start whose mutation is checked.  Checks: a
    :class:`~optlab.core.Result` with every field of the right type; ``x0`` not mutated; the same
    ``rng`` gives the same history and ``x``; another seed changes them (if ``stochastic``); a
    callback that returns True stops the run after its first record with the message
    ``"stopped by callback"``; a bad ``rng`` and a non-callable callback raise clear errors.

    Returns the first run's result.
    """
    import inspect

    sig_x0 = inspect.signature(run).parameters.get(x0_name)
    has_default = sig_x0 is not None and sig_x0.default is not inspect.Parameter.empty \
        and sig_x0.default is not None
    x0 = np.array(sig_x0.default, dtype=float) if has_default else None
    a, b = run(rng=0), run(rng=0)
    assert isinstance(a, Result), f"a method returns a Result, got {type(a).__name__}"
    assert isinstance(a.history, History) and len(a.history) >= 1 and "t" in a.history and "n_evals" in a.history
    assert isinstance(a.method, str) and isinstance(a.params, dict) and isinstance(a.message, str)
    assert isinstance(a.n_iters, int) and isinstance(a.converged, bool) and isinstance(a.extras, dict)
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in a.n_evals.items()), a.n_evals
    for key in a.history.columns:
        if key != "x":
            same = np.array_equal(np.asarray(a.history[key], dtype=float), np.asarray(b.history[key], dtype=float),
                                  equal_nan=True)
            assert same, f"the same rng must give the same history (column {key!r})"
    xa, xb = (a.x, b.x) if not isinstance(a.x, dict) else (np.concatenate([np.ravel(v) for v in a.x.values()]),
                                                           np.concatenate([np.ravel(v) for v in b.x.values()]))
    assert np.array_equal(xa, xb, equal_nan=True), "the same rng must give the same x"
    if stochastic:
        c = run(rng=1)
        xc = c.x if not isinstance(c.x, dict) else np.concatenate([np.ravel(v) for v in c.x.values()])
        assert not np.array_equal(xa, xc), "another seed should change a stochastic method's result"
    if x0 is not None:
        kept = x0.copy()
        run(rng=0, **{x0_name: x0})
        assert np.array_equal(x0, kept), "the method must not mutate x0"
    seen = []
    stopped = run(rng=0, callback=lambda rec: seen.append(rec) or True)
    assert stopped.message == "stopped by callback" and len(seen) == 1, (stopped.message, len(seen))
    for bad_rng in ("seed", -1, 1.5):
        try:
            run(rng=bad_rng)
        except (TypeError, ValueError) as err:
            assert "rng" in str(err), err
        else:
            raise AssertionError(f"rng={bad_rng!r} was accepted silently")
    try:
        run(rng=0, callback=3)
    except TypeError as err:
        assert "callback" in str(err), err
    else:
        raise AssertionError("callback=3 was accepted silently")
    return a
