"""optlab.noise: moments and tails of the gradient-noise models, reproducibility, bad input."""
import numpy as np
import pytest
from scipy import stats

from optlab.noise import bounded, gaussian, get_noise, student_t


def test_noise_moments_and_tails():
    rng = np.random.default_rng(1)
    n = 200_000
    g = gaussian(2.0)(n, rng)
    assert abs(g.mean()) < 0.02 and g.std() == pytest.approx(2.0, rel=0.01)
    u = bounded(0.5)((n,), rng)
    assert np.abs(u).max() <= 0.5 and u.var() == pytest.approx(0.25 / 3, rel=0.02)
    r = bounded(0.5, kind="rademacher")((100, 2), rng)
    assert set(np.unique(r)) == {-0.5, 0.5}
    t5 = student_t(df=5.0, scale=2.0)(n, rng)
    assert abs(t5.mean()) < 0.03 and t5.var() == pytest.approx(4 * 5 / 3, rel=0.05)
    t15 = student_t(df=1.5)(n, rng)  # infinite variance: the tail P(|t| > 10) matches the t law
    assert np.mean(np.abs(t15) > 10) == pytest.approx(2 * stats.t.sf(10, 1.5), rel=0.1)
    assert np.mean(np.abs(t15) > 10) > 0.01  # a Gaussian of unit scale: about 1e-23


def test_noise_is_reproducible_and_named():
    assert np.array_equal(gaussian()(5, 3), gaussian()(5, 3))
    assert get_noise("bounded", scale=2.0) == bounded(2.0)
    assert get_noise(student_t(3.0)) == student_t(3.0)
    assert repr(student_t(3.0)) == "student_t(df=3.0, scale=1.0)"
    from optlab.foundations.noise import gaussian as re_exported

    assert re_exported is gaussian


@pytest.mark.parametrize("make, err, match", [
    (lambda: student_t(df=0.0), ValueError, "df"), (lambda: student_t(df=-1.0), ValueError, "df"),
    (lambda: gaussian(-1.0), ValueError, "sigma"), (lambda: bounded(1.0, kind="box"), ValueError, "kind"),
    (lambda: get_noise("cauchy"), ValueError, "noise must be one of"),
    (lambda: gaussian(1.0)((-1, 2)), ValueError, "shape"), (lambda: gaussian(1.0)(True), TypeError, "shape"),
    (lambda: gaussian("1"), TypeError, "sigma"), (lambda: student_t(True), TypeError, "df"),
    (lambda: gaussian(np.inf), ValueError, "sigma"),
])
def test_noise_errors(make, err, match):
    with pytest.raises(err, match=match):
        make()
