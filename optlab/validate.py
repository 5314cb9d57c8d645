r"""One set of input checks for every function of ``optlab``.

Each check takes the value and the name of the argument, returns the value in
its normal form (an ``int``, a ``float``, a float64 array) and otherwise
raises an error that names the argument and what it accepts:

* :class:`TypeError` when the value has the wrong kind (a string where a number
  belongs, a bool where an int belongs, something that is not callable);
* :class:`ValueError` when the kind is right but the value is not (out of range,
  NaN or infinite, the wrong shape).

The messages share one style, ``"<name> must be <what is accepted>, got <value>"``,
so that a reader who passes a bad argument learns which one and how to fix it:

>>> check_real(-0.1, "lr", low=0.0)
Traceback (most recent call last):
...
ValueError: lr must be a finite number >= 0, got -0.1

A method module therefore spends its lines on mathematics: it calls these checks
once at the top and then trusts its arguments.  The checks of what an *oracle*
returns (:func:`check_output`) and of what a schedule returns
(:func:`optlab.core.step_at`) are used inside the loops.

Book: chapters/toolkit.ipynb

References
----------
The numpydoc and Python conventions for exceptions: ``TypeError`` for an
argument of the wrong type, ``ValueError`` for the right type with a wrong
value (Python Language Reference, "Built-in Exceptions").
"""
from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np

__all__ = ["check_int", "check_real", "check_positive", "check_probability", "check_bool", "check_callable",
           "check_choice", "check_array", "check_output", "check_finite_output", "describe"]


def describe(value) -> str:
    """A short readable rendering of a bad value, for error messages."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if callable(value) and not isinstance(value, type):
        return f"the callable {getattr(value, '__name__', type(value).__name__)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bound_text(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


def check_int(value, name: str, *, low: Optional[int] = None, high: Optional[int] = None) -> int:
    r"""An integer in ``[low, high]`` (bools are rejected: ``True`` is not a count).

    >>> check_int(3, "n_iters", low=1)
    3
    """
    bad_type = isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)
    if bad_type or (low is not None and value < low) or (high is not None and value > high):
        what = ("an int " + _bound_text(low, high, False, False)).strip()
        raise (TypeError if bad_type else ValueError)(
            f"{name} must be {what}, got {describe(value) if bad_type else value}")
    return int(value)


def check_real(value, name: str, *, low: Optional[float] = None, high: Optional[float] = None,
               low_open: bool = False, high_open: bool = False) -> float:
    r"""A finite real number in the interval given by ``low``/``high`` (open ends where asked).

    >>> check_real(0.5, "beta", low=0.0, high=1.0, high_open=True)
    0.5
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        what = ("a finite number " + _bound_text(low, high, low_open, high_open)).strip()
        raise TypeError(f"{name} must be {what}, got {describe(value)}")
    value = float(value)
    bad = not math.isfinite(value)
    bad |= low is not None and (value < low or (low_open and value == low))
    bad |= high is not None and (value > high or (high_open and value == high))
    if bad:
        what = ("a finite number " + _bound_text(low, high, low_open, high_open)).strip()
        raise ValueError(f"{name} must be {what}, got {value:g}")
    return value


def check_positive(value, name: str) -> float:
    """A finite number > 0."""
    return check_real(value, name, low=0.0, low_open=True)


def check_probability(value, name: str, *, open_right: bool = False) -> float:
    """A number in ``[0, 1]`` (or ``[0, 1)`` with ``open_right``, e.g. a momentum ``beta``)."""
    return check_real(value, name, low=0.0, high=1.0, high_open=open_right)


def check_bool(value, name: str) -> bool:
    """A bool (``True``/``False``, or numpy's), not any truthy object."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


def check_callable(value, name: str, *, optional: bool = False, signature: str = ""):
    """A callable (or None when ``optional``); ``signature`` describes it in the message."""
    if value is None and optional:
        return None
    if not callable(value):
        what = f"a callable {signature}".strip() + (" or None" if optional else "")
        raise TypeError(f"{name} must be {what}, got {describe(value)}")
    return value


def check_choice(value, name: str, choices) -> str:
    """One of a fixed set of options (usually strings)."""
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {describe(value)}")
    return value


def check_array(value, name: str = "x0", *, ndim=None, shape=None, finite: bool = True,
                min_size: int = 1) -> np.ndarray:
    r"""A float64 *copy* of an array argument (so a method never mutates its caller's data).

    Parameters
    ----------
    value : array_like
    name : str
        The argument's name, for messages.
    ndim : int, tuple of int or None
        Accepted numbers of dimensions.
    shape : tuple or None
        The exact shape, with ``None`` for a free axis, e.g. ``(None, 3)``.
    finite : bool
        Reject NaN and infinity.
    min_size : int
        Reject arrays with fewer entries (default: empty arrays).

    >>> check_array([1, 2]).dtype
    dtype('float64')
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be an array of numbers, got {describe(value)}")
    try:
        x = np.array(value, dtype=float, copy=True)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers, got {describe(value)}") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            dims = " or ".join(f"{k}-D" for k in allowed)
            raise ValueError(f"{name} must be a {dims} array, got shape {x.shape}")
    if shape is not None:
        if x.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, x.shape)):
            want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
            raise ValueError(f"{name} must have shape {want}, got {x.shape}")
    if x.size < min_size:
        need = "must not be empty" if min_size == 1 else f"must have at least {min_size} entries"
        raise ValueError(f"{name} {need}, got shape {x.shape}")
    if finite and not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return x


def check_output(value, name: str, shape) -> np.ndarray:
    r"""What an oracle returned, as a float array of the expected ``shape``, or a clear error.

    Non-finite values are *not* an error here (an iterate may diverge); the
    method decides, usually by ending the run with a message.

    >>> check_output([1.0, 2.0], "grad", (2,)).tolist()
    [1.0, 2.0]
    """
    try:
        out = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must return an array of numbers, got {describe(value)}") from None
    shape = tuple(shape)
    if out.shape != shape:
        raise ValueError(f"{name} returned shape {out.shape}, expected {shape}")
    return out


def check_finite_output(value, name: str, shape) -> np.ndarray:
    """Like :func:`check_output`, and finite (for oracles evaluated at a finite point)."""
    out = check_output(value, name, shape)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} returned non-finite values (NaN or inf) at a finite point")
    return out
