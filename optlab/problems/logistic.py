r"""L2-regularized logistic regression on synthetic and bundled real data.

The workhorse smooth, strongly convex finite sum of the stochastic chapters:

.. math::
    f(w) = \frac1n \sum_{i=1}^n \log\left(1 + e^{-s_i z_i^\top w}\right)
           + \frac{\lambda}{2} \|w\|^2, \qquad s_i \in \{-1, +1\},

where ``z_i`` is the feature vector ``x_i`` with a ``1`` appended (the
intercept, penalized like the other weights, so ``f`` is ``lambda``-strongly
convex).  Labels may be given in ``{0, 1}`` or ``{-1, 1}``.  The minimizer is
computed once, with :func:`scipy.optimize.minimize` (trust-region
Newton-CG, gradient tolerance ``1e-10``); it matches scikit-learn's ``LogisticRegression(C=1/(n lambda),
fit_intercept=False)`` fitted on the augmented features ``z_i``.

Real data come only from scikit-learn's bundled toy datasets: nothing is
downloaded.

Examples
--------
>>> p = synthetic_logistic(n=100, dim=3)
>>> p.dim, round(p.f(p.x0), 4), bool(np.linalg.norm(p.grad(p.x_star)) < 1e-8)
(3, 0.6931, True)

References
----------
D. R. Cox, The regression analysis of binary sequences, JRSS B 20(2), 1958.
W. H. Wolberg, W. N. Street and O. L. Mangasarian, Breast Cancer Wisconsin
(Diagnostic), UCI Machine Learning Repository, 1995.
E. Alpaydin and C. Kaynak, Optical Recognition of Handwritten Digits, UCI
Machine Learning Repository, 1998.

Book: chapters/toolkit.ipynb
"""
from __future__ import annotations

import numbers

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from ..core import Problem, as_array, as_rng
from .functions import _check_int, _check_real, _points, _value

__all__ = ["logistic_regression", "synthetic_logistic", "breast_cancer_logistic",
           "digits_logistic"]


def _signs(y, n: int) -> np.ndarray:
    """Labels in {0, 1} or {-1, 1} as signs in {-1, +1}, or a clear error."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X, got {y.shape}")
    if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
        raise TypeError(f"y must hold numeric labels in {{0, 1}} or {{-1, 1}}, got dtype {y.dtype}")
    labels = set(np.unique(y).tolist())
    if not (labels <= {0, 1} or labels <= {-1, 1}):
        raise ValueError(f"y must hold labels in {{0, 1}} or {{-1, 1}}, got {sorted(labels)}")
    return np.where(y > 0, 1.0, -1.0)


def logistic_regression(X, y, l2: float = 1e-3, name: str = "logistic_regression", *,
                        fit_intercept: bool = True) -> Problem:
    r"""Mean logistic loss plus ``l2 / 2 ||w||^2`` on the data ``(X, y)``.

    Parameters
    ----------
    X : array_like, shape (n, p)
        Features (finite).
    y : array_like, shape (n,)
        Labels in ``{0, 1}`` or ``{-1, 1}``.
    l2 : float
        Regularization ``lambda > 0`` (it makes the minimizer exist and unique).
    name : str
        The problem's name.
    fit_intercept : bool
        Append a column of ones to ``X`` (the last weight is the intercept,
        penalized like the others); ``dim = p + 1``, else ``dim = p``.

    Returns
    -------
    Problem
        ``f``, ``grad`` (both also on a batch of weights ``(m, dim)``), ``hvp``,
        ``stoch_grad(w, rng, batch_size=1)`` (the gradient on ``batch_size`` samples
        drawn uniformly with replacement, plus the full regularizer: unbiased; on a
        batch of replicas each draws its own samples), ``stoch_f(w, rng, batch_size=1)``
        (the loss on such samples), ``x0 = 0`` (``f(x0) = log 2``), ``x_star``,
        ``f_star``, ``L = ||Z||_2^2 / (4n) + l2`` and ``mu = l2``.  ``info`` has
        ``X`` and ``y`` as given, the design ``Z`` that ``w`` multiplies, ``l2`` and
        the solver's ``grad_norm`` at ``x_star``.

    Notes
    -----
    With ``p_i = sigma(s_i z_i^T w)``: ``grad = -Z^T (s (1 - p)) / n + lambda w``
    and ``hvp(w, v) = Z^T (p (1 - p) Z v) / n + lambda v``; costs ``O(n dim)``.
    The loss is evaluated as ``logaddexp(0, -margin)``, which never overflows.

    Examples
    --------
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
    >>> p = logistic_regression(X, y, l2=0.1)
    >>> p.dim, round(p.f_star, 4), np.round(p.x_star, 3).tolist()
    (2, 0.4616, [0.987, -0.972])
    """
    X = as_array(X, "X", ndim=2)
    n, p = X.shape
    s = _signs(y, n)
    l2 = _check_real(l2, "l2", 0.0)
    if not isinstance(fit_intercept, (bool, np.bool_)):
        raise TypeError(f"fit_intercept must be a bool, got {fit_intercept!r}")
    Z = np.hstack([X, np.ones((n, 1))]) if fit_intercept else X
    d = Z.shape[1]

    def f(w):
        w = _points(w, d, "w")
        margins = s * (w @ Z.T)
        return _value(np.mean(np.logaddexp(0.0, -margins), axis=-1)
                      + 0.5 * l2 * np.sum(w**2, axis=-1))

    def grad(w):
        w = _points(w, d, "w")
        coef = -s * expit(-s * (w @ Z.T))
        return coef @ Z / n + l2 * w

    def hvp(w, v):
        w, v = _points(w, d, "w"), _points(v, d, "v")
        prob = expit(Z @ w)
        return Z.T @ (prob * (1.0 - prob) * (Z @ v)) / n + l2 * v

    def _sample(w, rng, batch_size):
        """Samples drawn with replacement, one draw per replica: (Zb, signs, margins)."""
        batch_size = _check_int(batch_size, "batch_size", 1)
        w = _points(w, d, "w")
        idx = as_rng(rng).integers(n, size=w.shape[:-1] + (batch_size,))
        Zb, sb = Z[idx], s[idx]
        return Zb, sb, sb * np.einsum("...bd,...d->...b", Zb, w)

    def stoch_grad(w, rng, batch_size=1):
        Zb, sb, margins = _sample(w, rng, batch_size)
        return np.einsum("...b,...bd->...d", -sb * expit(-margins), Zb) / batch_size + l2 * np.asarray(w, float)

    def stoch_f(w, rng, batch_size=1):
        margins = _sample(w, rng, batch_size)[2]
        w = np.asarray(w, dtype=float)
        return _value(np.mean(np.logaddexp(0.0, -margins), axis=-1) + 0.5 * l2 * np.sum(w**2, axis=-1))

    # Trust-region Newton-CG; it may report "failure to predict improvement" once
    # the gradient is at rounding level, so we record the gradient norm instead.
    x_star = minimize(f, np.zeros(d), jac=grad, hessp=hvp, method="trust-ncg",
                      options={"gtol": 1e-10, "maxiter": 1000}).x
    return Problem(name, f=f, grad=grad, hvp=hvp, stoch_grad=stoch_grad, stoch_f=stoch_f, x0=np.zeros(d),
                   x_star=x_star, f_star=f(x_star), L=float(np.linalg.norm(Z, 2) ** 2 / (4 * n) + l2), mu=l2,
                   info={"X": X, "y": np.array(y, copy=True), "Z": Z, "l2": l2,
                         "fit_intercept": bool(fit_intercept),
                         "grad_norm": float(np.linalg.norm(grad(x_star)))})


def synthetic_logistic(n: int = 500, dim: int = 10, l2: float = 1e-3, rng=0) -> Problem:
    r"""Logistic regression on Gaussian features with labels from a planted model.

    ``x_i ~ N(0, I)``, ``w_true ~ N(0, 9 I / dim)`` (so ``x_i^T w_true ~ N(0, 9)``) and ``y_i ~ Bernoulli(sigma(x_i^T
    w_true))``.  There is no intercept (the data have none), so ``p.dim == dim``.

    Parameters
    ----------
    n, dim : int
        Samples and features, ``>= 1``.
    l2 : float
        Regularization, ``> 0``.
    rng : None, int or numpy.random.Generator
        Seed for the data.

    Examples
    --------
    >>> p = synthetic_logistic()
    >>> p.name, p.dim, round(p.f_star, 4)
    ('synthetic_logistic(n=500, d=10)', 10, 0.3921)
    """
    n, d = _check_int(n, "n", 1), _check_int(dim, "dim", 1)
    rng = as_rng(rng)
    X = rng.standard_normal((n, d))
    w_true = rng.standard_normal(d) * 3.0 / np.sqrt(d)
    y = (rng.random(n) < expit(X @ w_true)).astype(int)
    p = logistic_regression(X, y, l2, f"synthetic_logistic(n={n}, d={d})", fit_intercept=False)
    p.info["w_true"] = w_true
    return p


def breast_cancer_logistic(l2: float = 1e-3) -> Problem:
    r"""Logistic regression on the Wisconsin breast-cancer data (569 x 30, bundled).

    Features standardized to mean 0 and standard deviation 1; label 1 is benign;
    with the intercept, ``dim = 31``.

    Examples
    --------
    >>> p = breast_cancer_logistic()
    >>> p.dim, round(p.f(p.x0), 4), round(p.f_star, 4)
    (31, 0.6931, 0.0598)
    """
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return logistic_regression(X, y, l2, "breast_cancer_logistic")


def digits_logistic(l2: float = 1e-3, classes=(3, 8)) -> Problem:
    r"""Logistic regression between two classes of the 8x8 digits (bundled).

    Pixels scaled from ``[0, 16]`` to ``[0, 1]``; label 1 is ``classes[1]``;
    64 pixels plus the intercept give ``dim = 65``.

    Parameters
    ----------
    l2 : float
        Regularization, ``> 0``.
    classes : pair of int
        Two distinct digits in ``0..9``.

    Examples
    --------
    >>> p = digits_logistic()
    >>> p.name, p.dim, len(p.info["y"])
    ('digits_logistic(3 vs 8)', 65, 357)
    """
    try:
        c0, c1 = classes
    except (TypeError, ValueError):
        raise TypeError(f"classes must be a pair of digits, got {classes!r}") from None
    for c in (c0, c1):
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 0 <= c <= 9:
            raise ValueError(f"classes must be two distinct ints in 0..9, got {classes!r}")
    if c0 == c1:
        raise ValueError(f"classes must be two distinct ints in 0..9, got {classes!r}")
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    keep = (y == c0) | (y == c1)
    return logistic_regression(X[keep] / 16.0, (y[keep] == c1).astype(int), l2,
                               f"digits_logistic({c0} vs {c1})")
