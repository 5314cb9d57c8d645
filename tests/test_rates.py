"""optlab.rates: fitted slopes and affine fits, and their errors."""
import numpy as np
import pytest

from optlab.rates import affine_fit, loglog_fit, loglog_slope


def test_exact_power_laws_and_lines():
    t = np.array([10.0, 100.0, 1000.0])
    assert loglog_slope(t, 3 * t ** -0.5) == pytest.approx(-0.5)
    fit = loglog_fit(t, 2 * t ** 1.5)
    assert fit.slope == pytest.approx(1.5) and np.exp(fit.intercept) == pytest.approx(2.0)
    assert fit.r2 == pytest.approx(1)
    line = affine_fit([1, 2, 3, 4], [1673 + 43 * k for k in (1, 2, 3, 4)])
    assert (line.slope, line.intercept, line.r2) == (pytest.approx(43), pytest.approx(1673), pytest.approx(1.0))


def test_r2_drops_for_a_curve():
    x = np.arange(1.0, 11.0)
    assert affine_fit(x, x ** 3).r2 < 0.99
    np.testing.assert_allclose(affine_fit(x, x ** 3).slope, np.polyfit(x, x ** 3, 1)[0])


@pytest.mark.parametrize("t, y, match", [
    ([10.0, 100.0], [1.0, 0.0], "> 0"),
    ([10.0, 100.0], [1.0, np.nan], "y must be finite"),
    ([10.0], [1.0], "t must have at least 2"),
    ([10.0, 100.0, 1000.0], [1.0, 2.0], "same length"),
    ([5.0, 5.0], [1.0, 2.0], "two different values"),
])
def test_bad_input(t, y, match):
    with pytest.raises(ValueError, match=match):
        loglog_slope(t, y)
