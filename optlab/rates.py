r"""Fitting rates: log-log slopes and affine fits, with the checks a claim needs.

A rate :math:`y \propto t^{s}` is a straight line of slope :math:`s` on a
log-log plot; :func:`loglog_slope` fits it by least squares.  :func:`affine_fit`
fits :math:`y = a + b t` and reports :math:`R^2`, for quantities that grow
linearly in a parameter (queries against a chain length, say).

Examples
--------
>>> round(loglog_slope([10, 100, 1000], [1.0, 0.1, 0.01]), 3)
-1.0
>>> fit = affine_fit([1, 2, 3], [3.0, 5.0, 7.0])
>>> round(fit.intercept, 6), round(fit.slope, 6), round(fit.r2, 6)
(1.0, 2.0, 1.0)

Book: chapters/foundations/last_iterate.ipynb

References
----------
Least squares: any statistics text, e.g. T. Hastie, R. Tibshirani and J. Friedman,
The Elements of Statistical Learning, 2nd ed., Springer 2009, section 3.2.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .validate import check_array

__all__ = ["loglog_slope", "loglog_fit", "affine_fit", "Fit"]


class Fit(NamedTuple):
    """A fitted line ``y = intercept + slope * x`` and its coefficient of determination."""

    slope: float
    intercept: float
    r2: float


def _pair(t, y, positive: bool, names=("t", "y")):
    a, b = names
    t = check_array(t, a, ndim=1, min_size=2)
    y = check_array(y, b, ndim=1, min_size=2)
    if t.shape != y.shape:
        raise ValueError(f"{a} and {b} must have the same length, got {t.size} and {y.size}")
    if positive and (np.any(t <= 0) or np.any(y <= 0)):
        raise ValueError(f"{a} and {b} must be > 0 for a log-log fit")
    if np.ptp(t) == 0:
        raise ValueError(f"{a} must take at least two different values")
    return t, y


def affine_fit(x, y) -> Fit:
    r"""Least-squares line :math:`y = a + b x`, with :math:`R^2 = 1 - SS_\mathrm{res}/SS_\mathrm{tot}`."""
    x, y = _pair(x, y, positive=False, names=("x", "y"))
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / ss_tot if ss_tot > 0 else 1.0
    return Fit(float(slope), float(intercept), r2)


def loglog_fit(t, y) -> Fit:
    r"""The fit of :math:`\log y = \log c + s \log t`; ``intercept`` is :math:`\log c`."""
    t, y = _pair(t, y, positive=True)
    fit = affine_fit(np.log(t), np.log(y))
    return fit


def loglog_slope(t, y) -> float:
    r"""Least-squares slope of :math:`\log y` against :math:`\log t` (a rate :math:`t^{s}` has slope s)."""
    return loglog_fit(t, y).slope
