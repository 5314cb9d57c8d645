r"""Privacy accounting for the Gaussian mechanism: zero-concentrated DP and its (epsilon, delta) guarantee.

The Gaussian mechanism releases :math:`\hat a = q(D) + N(0, \sigma^2 I)` for a vector of
statistics :math:`q`.  Its privacy depends on :math:`\sigma` and on the **L2 sensitivity**

.. math::
    \Delta_2 = \max_{D \sim D'} \|q(D) - q(D')\|_2 ,

the largest move of :math:`q` between *neighbouring* data sets.  Which data sets are neighbours is
part of the guarantee and must be said: here, as in the chapters that use this module, two data sets
of the same size ``n`` are neighbours when they differ in **one row replaced** by another (the
*replace-one*, or bounded, convention; adding or removing a row is the other common convention and
gives other sensitivities).

The accounting goes through zero-concentrated differential privacy (zCDP; Bun and Steinke, 2016):

* the Gaussian mechanism with sensitivity :math:`\Delta_2` and noise :math:`\sigma` is
  :math:`\rho`-zCDP with :math:`\rho = \Delta_2^2 / (2\sigma^2)` (:func:`gaussian_zcdp`), so a
  budget :math:`\rho` calls for :math:`\sigma = \Delta_2/\sqrt{2\rho}` (:func:`gaussian_sigma`);
* zCDP composes additively: mechanisms that are :math:`\rho_1`- and :math:`\rho_2`-zCDP run on
  the same data are :math:`(\rho_1+\rho_2)`-zCDP (:func:`compose`);
* :math:`\rho`-zCDP implies :math:`(\varepsilon, \delta)`-DP for every :math:`\delta \in (0, 1)` with

  .. math::
      \varepsilon(\rho, \delta) = \inf_{\alpha > 1}\; \alpha\rho
      + \frac{\log(1/\delta) + (\alpha - 1)\log(1 - 1/\alpha) - \log\alpha}{\alpha - 1}

  (Canonne, Kamath and Steinke, 2020: the tight conversion, :func:`zcdp_epsilon`), which is
  smaller than the classical :math:`\rho + 2\sqrt{\rho\log(1/\delta)}` (Bun and Steinke, 2016;
  ``conversion="loose"``), valid but loose;
* :func:`zcdp_rho` inverts the conversion: the largest :math:`\rho` whose guarantee is within a
  target :math:`(\varepsilon, \delta)`;
* :func:`gaussian_delta` is the *exact* privacy curve of one Gaussian mechanism (Balle and Wang,
  2018), tighter still than any conversion from zCDP.

Examples
--------
The budget of one release at :math:`(\varepsilon, \delta) = (1, 10^{-6})`, its noise for
sensitivity 1, and what the loose conversion would have stated for the same noise:

>>> rho = zcdp_rho(1.0, 1e-6)
>>> round(rho, 4), round(gaussian_sigma(1.0, rho), 3), round(zcdp_epsilon(rho, 1e-6, "loose"), 3)
(0.0244, 4.531, 1.185)

References
----------
M. Bun and T. Steinke, Concentrated differential privacy: simplifications, extensions, and lower
bounds, TCC 2016, arXiv:1605.02065 (``bun2016concentrated``).
C. Canonne, G. Kamath and T. Steinke, The discrete Gaussian for differential privacy, NeurIPS 2020,
arXiv:2004.00010 (``canonne2020discrete``): the tight conversion.
B. Balle and Y.-X. Wang, Improving the Gaussian mechanism for differential privacy, ICML 2018,
arXiv:1805.06530 (``balle2018improving``): the exact curve of the Gaussian mechanism.

Book: chapters/zeroth_order/private_gsd.ipynb
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_ndtr

from .core import as_rng
from .validate import check_array, check_choice, check_positive, check_real

__all__ = ["gaussian_zcdp", "gaussian_sigma", "compose", "zcdp_epsilon", "zcdp_delta", "zcdp_rho",
           "gaussian_mechanism", "gaussian_delta", "CONVERSIONS"]

CONVERSIONS = ("tight", "loose")


def _delta(delta) -> float:
    return check_real(delta, "delta", low=0.0, high=1.0, low_open=True, high_open=True)


def gaussian_zcdp(sensitivity: float, sigma: float) -> float:
    r"""The zCDP parameter :math:`\rho = \Delta_2^2/(2\sigma^2)` of the Gaussian mechanism.

    >>> gaussian_zcdp(1.0, 2.0)
    0.125
    """
    return check_positive(sensitivity, "sensitivity") ** 2 / (2.0 * check_positive(sigma, "sigma") ** 2)


def gaussian_sigma(sensitivity: float, rho: float) -> float:
    r"""The noise :math:`\sigma = \Delta_2/\sqrt{2\rho}` that makes the Gaussian mechanism :math:`\rho`-zCDP.

    >>> gaussian_sigma(1.0, 0.125)
    2.0
    """
    return check_positive(sensitivity, "sensitivity") / math.sqrt(2.0 * check_positive(rho, "rho"))


def compose(rhos) -> float:
    r"""zCDP composes by adding: the :math:`\rho` of running all the given mechanisms on the same data.

    >>> compose([0.01, 0.02, 0.03])
    0.06
    """
    values = check_array(rhos, "rhos", ndim=1)
    if np.any(values < 0):
        raise ValueError("rhos must be numbers >= 0")
    return float(round(values.sum(), 15))


def _tight_terms(alpha, rho, log_inv_delta):
    """The objective of the tight conversion at order ``alpha > 1``."""
    am1 = alpha - 1.0
    return alpha * rho + (log_inv_delta + am1 * math.log1p(-1.0 / alpha) - math.log(alpha)) / am1


def zcdp_epsilon(rho: float, delta: float, conversion: str = "tight") -> float:
    r"""The :math:`\varepsilon` such that :math:`\rho`-zCDP implies :math:`(\varepsilon, \delta)`-DP.

    ``conversion="tight"`` minimizes the Canonne-Kamath-Steinke bound over the Rényi order
    :math:`\alpha > 1` (a smooth unimodal function of :math:`\log(\alpha - 1)`, minimized by bounded
    Brent search); ``"loose"`` is :math:`\rho + 2\sqrt{\rho\log(1/\delta)}`.

    >>> round(zcdp_epsilon(0.01, 1e-5), 4), round(zcdp_epsilon(0.01, 1e-5, "loose"), 4)
    (0.5457, 0.6886)
    """
    rho, delta = check_positive(rho, "rho"), _delta(delta)
    check_choice(conversion, "conversion", CONVERSIONS)
    log_inv_delta = -math.log(delta)
    loose = rho + 2.0 * math.sqrt(rho * log_inv_delta)
    if conversion == "loose":
        return loose
    # the loose bound's optimal order is 1 + sqrt(log(1/delta)/rho); search a wide bracket around it in log(alpha - 1)
    centre = math.log(math.sqrt(log_inv_delta / rho))
    res = minimize_scalar(lambda s: _tight_terms(1.0 + math.exp(s), rho, log_inv_delta),
                          bounds=(centre - 12.0, centre + 12.0), method="bounded", options={"xatol": 1e-10})
    return float(min(res.fun, loose))


def zcdp_delta(rho: float, epsilon: float) -> float:
    r"""The :math:`\delta` at which :math:`\rho`-zCDP gives :math:`(\varepsilon, \delta)`-DP (tight conversion).

    :math:`\delta = \inf_{\alpha>1} \exp\big((\alpha-1)(\alpha\rho-\varepsilon)\big)\,(1-1/\alpha)^\alpha/(\alpha-1)`,
    capped at 1; the inverse of :func:`zcdp_epsilon` in :math:`\delta`.

    >>> round(zcdp_delta(0.01, zcdp_epsilon(0.01, 1e-5)) / 1e-5, 6)
    1.0
    """
    rho, epsilon = check_positive(rho, "rho"), check_real(epsilon, "epsilon", low=0.0)

    def log_delta(s):
        alpha = 1.0 + math.exp(s)
        am1 = alpha - 1.0
        return am1 * (alpha * rho - epsilon) + alpha * math.log1p(-1.0 / alpha) - math.log(am1)

    centre = math.log(max((epsilon + rho) / (2.0 * rho), 1e-3))
    res = minimize_scalar(log_delta, bounds=(centre - 12.0, centre + 12.0), method="bounded",
                          options={"xatol": 1e-10})
    return float(min(1.0, math.exp(res.fun)))


def zcdp_rho(epsilon: float, delta: float, conversion: str = "tight") -> float:
    r"""The largest :math:`\rho` whose :math:`\rho`-zCDP guarantee is within :math:`(\varepsilon, \delta)`-DP.

    The loose conversion inverts in closed form, :math:`\rho = (\sqrt{\log(1/\delta) + \varepsilon}
    - \sqrt{\log(1/\delta)})^2`; the tight one by bisection on :math:`\rho` (its
    :math:`\varepsilon` increases with :math:`\rho`), keeping the side whose guarantee holds.

    >>> rho = zcdp_rho(1.0, 1e-6)
    >>> zcdp_epsilon(rho, 1e-6) <= 1.0 < zcdp_epsilon(rho * 1.001, 1e-6)
    True
    """
    epsilon, delta = check_positive(epsilon, "epsilon"), _delta(delta)
    check_choice(conversion, "conversion", CONVERSIONS)
    log_inv_delta = -math.log(delta)
    loose = (math.sqrt(log_inv_delta + epsilon) - math.sqrt(log_inv_delta)) ** 2
    if conversion == "loose":
        return loose
    lo, hi = loose, epsilon  # the tight bound is below the loose one, and epsilon >= rho always
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if zcdp_epsilon(mid, delta) <= epsilon else (lo, mid)
    return lo * (1.0 - 1e-12)   # a hair below, so that rounding in sigma and back cannot cross the target


def gaussian_mechanism(values, sensitivity: float, rho: float, rng=None):
    r"""Release ``values + N(0, sigma^2 I)`` with :math:`\sigma = \Delta_2/\sqrt{2\rho}`: a :math:`\rho`-zCDP release.

    The caller vouches for ``sensitivity``: it must bound the L2 change of ``values`` between
    neighbouring data sets (under the convention the caller states).

    Returns
    -------
    noisy : ndarray
        The released vector, shaped like ``values``.
    sigma : float
        The standard deviation of the noise added to each entry.

    >>> noisy, sigma = gaussian_mechanism(np.zeros(3), 1.0, 0.5, rng=0)
    >>> noisy.shape, sigma
    ((3,), 1.0)
    """
    values = check_array(values, "values", ndim=(1, 2))
    sigma = gaussian_sigma(sensitivity, rho)
    return values + sigma * as_rng(rng).standard_normal(values.shape), sigma


def gaussian_delta(sigma: float, epsilon: float, sensitivity: float = 1.0) -> float:
    r"""The exact :math:`\delta(\varepsilon)` of one Gaussian mechanism (Balle and Wang, 2018).

    :math:`\delta = \Phi\big(\tfrac{\Delta}{2\sigma} - \tfrac{\varepsilon\sigma}{\Delta}\big)
    - e^{\varepsilon}\,\Phi\big(-\tfrac{\Delta}{2\sigma} - \tfrac{\varepsilon\sigma}{\Delta}\big)`,
    computed in logarithms; no accounting of the Gaussian mechanism can state a smaller
    :math:`\delta` at this :math:`\varepsilon`.

    >>> gaussian_delta(1.0, 0.5) < zcdp_delta(gaussian_zcdp(1.0, 1.0), 0.5)
    True
    """
    sigma, sensitivity = check_positive(sigma, "sigma"), check_positive(sensitivity, "sensitivity")
    epsilon = check_real(epsilon, "epsilon", low=0.0)
    a, b = sensitivity / (2.0 * sigma), epsilon * sigma / sensitivity
    log_first, log_second = log_ndtr(a - b), epsilon + log_ndtr(-a - b)
    return float(max(0.0, math.exp(log_first) * -math.expm1(log_second - log_first)))
