"""optlab.privacy: the Gaussian mechanism's zCDP, the conversions to (epsilon, delta), and a trusted accountant.

The accountant is Opacus's (``opacus.accountants``): its RDP accountant with a fine grid of orders must give the
tight zCDP conversion within 1%, and its PRV accountant (numerical, close to the exact privacy curve of the Gaussian
mechanism) must state an epsilon at most ours, on the settings of the Private-GSD chapter.
"""
import math
import warnings

import numpy as np
import pytest

from optlab import privacy as P
from optlab.testing import check_bad_inputs

N_DATA = 5000                      # the chapter's data size; delta = 1/n^2
DELTA = 1.0 / N_DATA ** 2
EPSILONS = (0.1, 0.3, 1.0, 3.0)    # the chapter's grid
N_HISTOGRAMS = 39                  # its workload: 15 categorical marginals and 24 range histograms


def brute_force_epsilon(rho, delta):
    """The tight conversion by a dense grid over the Renyi order (no optimizer)."""
    alpha = 1.0 + np.geomspace(1e-4, 1e5, 400_001)
    return float(np.min(alpha * rho + (np.log(1 / delta) + (alpha - 1) * np.log1p(-1 / alpha) - np.log(alpha))
                        / (alpha - 1)))


# --- identities ----------------------------------------------------------------------------------

def test_sigma_and_rho_are_inverse():
    for sens, rho in ((1.0, 0.5), (0.02, 0.0189), (3.0, 1e-4)):
        sigma = P.gaussian_sigma(sens, rho)
        assert P.gaussian_zcdp(sens, sigma) == pytest.approx(rho, rel=1e-12)
        assert sigma == pytest.approx(sens / math.sqrt(2 * rho))


def test_composition_adds():
    assert P.compose([0.1, 0.2, 0.3]) == pytest.approx(0.6)
    # H histograms each with sensitivity sqrt(2)/n and noise sigma compose to one release of sensitivity sqrt(2H)/n
    sigma, n = 0.01, 5000
    per = P.gaussian_zcdp(math.sqrt(2) / n, sigma)
    assert P.compose([per] * N_HISTOGRAMS) == pytest.approx(P.gaussian_zcdp(math.sqrt(2 * N_HISTOGRAMS) / n, sigma))


@pytest.mark.parametrize("rho", [1e-4, 0.01, 0.0189, 0.3, 2.0])
@pytest.mark.parametrize("delta", [1e-3, 1e-6, DELTA])
def test_tight_conversion_matches_a_brute_force_grid_and_beats_the_loose_one(rho, delta):
    tight, loose = P.zcdp_epsilon(rho, delta), P.zcdp_epsilon(rho, delta, "loose")
    assert tight == pytest.approx(brute_force_epsilon(rho, delta), rel=1e-6)
    assert tight < loose == pytest.approx(rho + 2 * math.sqrt(rho * math.log(1 / delta)))


def test_delta_and_epsilon_are_inverse():
    for rho, eps in ((0.01, 0.5), (0.0189, 1.0), (0.2, 3.0)):
        assert P.zcdp_epsilon(rho, P.zcdp_delta(rho, eps)) == pytest.approx(eps, rel=1e-6)


@pytest.mark.parametrize("epsilon", EPSILONS)
def test_rho_is_the_largest_budget_within_the_target(epsilon):
    rho = P.zcdp_rho(epsilon, DELTA)
    assert P.zcdp_epsilon(rho, DELTA) <= epsilon < P.zcdp_epsilon(rho * (1 + 1e-6), DELTA)
    loose = P.zcdp_rho(epsilon, DELTA, "loose")
    assert P.zcdp_epsilon(loose, DELTA, "loose") == pytest.approx(epsilon, rel=1e-12)
    assert loose < rho                                   # the loose conversion wastes budget


def test_the_loose_conversion_overstates_epsilon_by_about_a_sixth():
    """At n = 5000 and delta = 1/n^2: noise calibrated to epsilon = 1 by the loose bound is in fact 0.86-DP."""
    rho = P.zcdp_rho(1.0, DELTA, "loose")
    assert P.zcdp_epsilon(rho, DELTA) == pytest.approx(0.862, abs=0.002)


def test_the_exact_gaussian_curve_is_below_every_zcdp_conversion():
    for sigma in (0.5, 1.0, 5.0):
        rho = P.gaussian_zcdp(1.0, sigma)
        for eps in (0.1, 1.0, 3.0):
            assert P.gaussian_delta(sigma, eps) <= P.zcdp_delta(rho, eps) + 1e-15
    # the exact curve at epsilon = 0 is the total variation 2 Phi(Delta / (2 sigma)) - 1
    from scipy.stats import norm
    assert P.gaussian_delta(2.0, 0.0) == pytest.approx(2 * norm.cdf(0.25) - 1)


def test_the_gaussian_mechanism_adds_noise_of_the_stated_scale():
    noisy, sigma = P.gaussian_mechanism(np.zeros(200_000), 0.1, 0.02, rng=3)
    assert sigma == pytest.approx(0.5)
    assert np.std(noisy) == pytest.approx(sigma, rel=0.01) and abs(np.mean(noisy)) < 0.01


# --- a trusted accountant: Opacus -------------------------------------------------------------------

@pytest.mark.parametrize("epsilon", EPSILONS)
def test_opacus_rdp_accountant_agrees_with_the_tight_conversion(epsilon):
    """One Gaussian release (sampling rate 1, one step) at the chapter's noise: Opacus's RDP epsilon equals ours."""
    rdp = pytest.importorskip("opacus.accountants.analysis.rdp")
    rho = P.zcdp_rho(epsilon, DELTA)
    sigma = P.gaussian_sigma(math.sqrt(2 * N_HISTOGRAMS) / N_DATA, rho)
    multiplier = sigma / (math.sqrt(2 * N_HISTOGRAMS) / N_DATA)     # Opacus takes noise / sensitivity
    orders = np.linspace(1.01, 1000.0, 200_000)
    eps_opacus, _ = rdp.get_privacy_spent(orders=orders, rdp=rdp.compute_rdp(q=1.0, noise_multiplier=multiplier,
                                                                             steps=1, orders=orders), delta=DELTA)
    ours = P.zcdp_epsilon(rho, DELTA)
    assert eps_opacus == pytest.approx(ours, rel=0.01)
    assert ours <= eps_opacus * (1 + 1e-9) and ours <= epsilon     # a grid of orders can only do worse
    assert P.zcdp_epsilon(rho, DELTA, "loose") > 1.1 * eps_opacus   # the loose bound overstates it


@pytest.mark.parametrize("epsilon", EPSILONS)
def test_opacus_prv_accountant_states_at_most_our_epsilon(epsilon):
    accountants = pytest.importorskip("opacus.accountants")
    rho = P.zcdp_rho(epsilon, DELTA)
    acc = accountants.PRVAccountant()
    acc.history = [(1.0 / math.sqrt(2 * rho), 1.0, 1)]            # (noise multiplier, sampling rate, steps)
    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)     # its RDP domain-size estimate at the largest order
        eps_prv = acc.get_epsilon(delta=DELTA, eps_error=1e-3)
    assert eps_prv <= P.zcdp_epsilon(rho, DELTA) <= epsilon
    # and the PRV accountant agrees with the exact curve of the Gaussian mechanism
    assert P.gaussian_delta(1.0 / math.sqrt(2 * rho), eps_prv + 2e-3) <= DELTA <= \
        P.gaussian_delta(1.0 / math.sqrt(2 * rho), max(eps_prv - 2e-3, 0.0))


# --- bad input -----------------------------------------------------------------------------------

BAD_INPUT = {
    "gaussian_zcdp": (P.gaussian_zcdp, dict(sensitivity=1.0, sigma=1.0),
                      {"sensitivity": [0.0, -1.0, np.nan], "sigma": [0.0, np.inf]}),
    "gaussian_sigma": (P.gaussian_sigma, dict(sensitivity=1.0, rho=0.1), {"sensitivity": [-1.0], "rho": [0.0]}),
    "compose": (P.compose, dict(rhos=[0.1, 0.2]), {"rhos": [[], [0.1, -0.2], [np.nan], 0.1]}),
    "zcdp_epsilon": (P.zcdp_epsilon, dict(rho=0.1, delta=1e-6, conversion="tight"),
                     {"rho": [0.0, -1.0], "delta": [0.0, 1.0, 2.0], "conversion": ["exact", 1]}),
    "zcdp_delta": (P.zcdp_delta, dict(rho=0.1, epsilon=1.0), {"rho": [0.0], "epsilon": [-1.0, np.nan]}),
    "zcdp_rho": (P.zcdp_rho, dict(epsilon=1.0, delta=1e-6, conversion="tight"),
                 {"epsilon": [0.0, -1.0], "delta": [0.0, 1.0], "conversion": ["renyi"]}),
    "gaussian_mechanism": (P.gaussian_mechanism, dict(values=np.zeros(3), sensitivity=1.0, rho=0.1, rng=0),
                           {"values": [[], [np.nan], np.zeros((2, 2, 2))], "sensitivity": [0.0], "rho": [-0.1],
                            "rng": [-1]}),
    "gaussian_delta": (P.gaussian_delta, dict(sigma=1.0, epsilon=1.0, sensitivity=1.0),
                       {"sigma": [0.0], "epsilon": [-0.5], "sensitivity": [-1.0]}),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad) > 0
