"""Unit tests of optlab.core: rng and schedule normalization, Problem, History, Trace, Result."""
import numpy as np
import pytest

from optlab import History, Problem, Trace, as_array, as_rng, as_schedule, schedules, source
from optlab.core import Result


def test_as_rng_accepts_seed_generator_none():
    assert as_rng(3).random() == as_rng(3).random()
    g = np.random.default_rng(1)
    assert as_rng(g) is g
    assert isinstance(as_rng(None), np.random.Generator)


@pytest.mark.parametrize("bad, err", [(-1, ValueError), (1.5, TypeError), ("0", TypeError), (True, TypeError)])
def test_as_rng_rejects_bad_input(bad, err):
    with pytest.raises(err, match="rng"):
        as_rng(bad)


def test_as_schedule_constant_and_callable():
    assert as_schedule(0.5)(100) == 0.5
    s = schedules.inverse_sqrt(1.0)
    assert as_schedule(s) is s


@pytest.mark.parametrize("bad, err", [(-0.1, ValueError), (np.nan, ValueError), (np.inf, ValueError),
                                      ("0.1", TypeError), (None, TypeError)])
def test_as_schedule_rejects_bad_lr(bad, err):
    with pytest.raises(err, match="lr"):
        as_schedule(bad)


def test_as_array_copies_and_validates():
    x0 = np.ones(3)
    x = as_array(x0)
    x[0] = 5
    assert x0[0] == 1
    with pytest.raises(ValueError, match="x0 must be finite"):
        as_array([1.0, np.nan])
    with pytest.raises(ValueError, match="1-D"):
        as_array(np.ones((2, 2)))
    with pytest.raises(ValueError, match="empty"):
        as_array([])
    with pytest.raises(TypeError, match="x0"):
        as_array(["a", object()])


def test_problem_gap_dim_and_repr():
    p = Problem("sphere", f=lambda x: float(x @ x), grad=lambda x: 2 * x, x0=np.ones(4), f_star=0.0)
    assert p.dim == 4 and p.gap(p.x0) == 4.0
    assert "0x" not in repr(p)
    q = Problem("unknown", f=lambda x: 0.0, grad=None, x0=np.zeros(1))
    with pytest.raises(ValueError, match="f_star"):
        q.gap(q.x0)


def test_history_columns_and_padding():
    h = History()
    h.append(t=0, f=1.0)
    h.append(t=1, f=0.5, extra=3.0)
    h.append(t=2, f=0.25)
    assert h.columns == ["t", "f", "extra"]
    assert np.isnan(h["extra"][0]) and h["extra"][1] == 3.0 and np.isnan(h["extra"][2])
    assert len(h) == 3 and "f" in h and "g" not in h
    with pytest.raises(KeyError, match="no history column 'g'"):
        h["g"]
    assert set(h.as_dict()) == {"t", "f", "extra"}


def test_trace_counts_logs_and_stops():
    seen = []

    def cb(row):
        seen.append(row)
        return row["t"] >= 2

    tr = Trace("demo", {"lr": 0.1}, callback=cb, keep_x=True)
    stopped_at = None
    for t in range(10):
        tr.count("grad", 2)
        if tr.log(t, x=np.full(2, t), f=1.0 / (t + 1)):
            stopped_at = t
            break
    res = tr.result(np.zeros(2), 0.0, n_iters=stopped_at)
    assert stopped_at == 2 and len(seen) == 3
    assert res.n_evals == {"grad": 6} and res.history["n_evals"].tolist() == [2, 4, 6]
    assert res.message == "stopped by callback" and not res.converged
    assert np.stack(res.history["x"])[:, 0].tolist() == [0, 1, 2]
    assert isinstance(res, Result) and "0x" not in repr(res)


def test_trace_rejects_non_callable_callback():
    with pytest.raises(TypeError, match="callback"):
        Trace("demo", {}, callback=3)


def test_source_drops_docstring():
    text = source(as_array)
    assert text.startswith("def as_array") and "Copy a starting point" not in text
    assert "Copy a starting point" in source(as_array, docstring=True)


def test_import_is_light():
    """`import optlab` and its numpy modules must not pull in torch (Colab users pay for every import)."""
    import subprocess
    import sys

    code = ("import sys, optlab, optlab.problems, optlab.baselines, optlab.foundations.last_iterate; "
            "print('torch' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout
