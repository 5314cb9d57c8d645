"""Unit tests of optlab.schedules."""
import math

import numpy as np
import pytest

from optlab import schedules as S


def test_values():
    assert S.constant(0.3)(1000) == 0.3
    assert [S.step(1.0, 2, 0.5)(t) for t in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert S.inverse_sqrt(2.0)(3) == pytest.approx(1.0)
    assert S.inverse_time(mu=0.5)(0) == pytest.approx(2.0)
    assert S.inverse_time(mu=0.5)(9) == pytest.approx(0.2)
    c = S.cosine(1.0, n_iters=10, lr_min=0.1)
    assert c(0) == pytest.approx(1.0) and c(10) == pytest.approx(0.1) and c(5) == pytest.approx(0.55)
    assert c(50) == pytest.approx(0.1)
    lin = S.linear_decay(1.0, n_iters=4)
    assert [lin(t) for t in range(6)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0, 0.0])


def test_warmup_ramps_then_follows():
    w = S.warmup(S.constant(2.0), n_warmup=4)
    assert [w(t) for t in range(6)] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 2.0])


def test_monotone_decay():
    for s in (S.inverse_sqrt(1.0), S.inverse_time(1.0), S.cosine(1.0, 50), S.linear_decay(1.0, 50),
              S.step(1.0, 7)):
        v = np.array([s(t) for t in range(60)])
        assert np.all(np.diff(v) <= 1e-15), s


def test_reprs_are_readable_and_equal_by_value():
    assert repr(S.cosine(0.1, 100)) == "cosine(lr=0.1, n_iters=100, lr_min=0.0)"
    assert S.step(1.0, 3) == S.step(1.0, 3)


@pytest.mark.parametrize("make, match", [
    (lambda: S.constant(-1.0), "lr"),
    (lambda: S.step(1.0, 0), "step_size"),
    (lambda: S.step(1.0, 2, gamma=1.5), "gamma"),
    (lambda: S.inverse_time(0.0), "mu"),
    (lambda: S.cosine(1.0, n_iters=0), "n_iters"),
    (lambda: S.linear_decay(math.nan, 3), "lr"),
    (lambda: S.warmup(3.0, 2), "schedule"),
    (lambda: S.warmup(S.constant(1.0), 0), "n_warmup"),
])
def test_bad_arguments_are_named(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_negative_step_rejected():
    with pytest.raises(ValueError, match="t must be an int >= 0"):
        S.cosine(1.0, 10)(-1)
