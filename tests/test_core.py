"""Unit tests of optlab.core: rng and schedules, Problem, History, Result extras, Trace, replicas."""
import pickle
import subprocess
import sys

import numpy as np
import pytest

from optlab import History, Problem, Result, Trace, as_array, as_rng, as_schedule, schedules, source
from optlab.core import (
    array_namespace,
    as_batch,
    check_oracle,
    check_rowwise,
    geometric_steps,
    quantile_names,
    replica_stats,
    step_at,
)


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
                                      ("0.1", TypeError), (None, TypeError), (True, TypeError)])
def test_as_schedule_rejects_bad_lr(bad, err):
    with pytest.raises(err, match="lr"):
        as_schedule(bad)


@pytest.mark.parametrize("schedule, err, match", [
    (lambda t: -0.1, ValueError, "finite steps >= 0, got -0.1 at step t=3"),
    (lambda t: np.nan, ValueError, "got nan"),
    (lambda t: "x", TypeError, "must return a number"),
    (lambda t: [1.0, 2.0], TypeError, "must return a number"),
])
def test_step_at_checks_what_a_schedule_returns(schedule, err, match):
    with pytest.raises(err, match=match):
        step_at(schedule, 3)
    assert step_at(lambda t: 0.5, 3) == 0.5


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
    with pytest.raises(TypeError, match="x0"):
        as_array("abc")


# --------------------------------------------------------------------------- Problem

def sphere(**kw):
    args = dict(f=lambda x: float(x @ x), grad=lambda x: 2 * x, x0=np.ones(4), f_star=0.0)
    args.update(kw)
    return Problem("sphere", **args)


def test_problem_gap_dim_constants_and_repr():
    p = sphere(L=2.0, mu=2.0)
    assert p.dim == 4 and p.gap(p.x0) == 4.0 and p.F(p.x0) == 4.0 and (p.L, p.mu, p.G) == (2.0, 2.0, None)
    assert "0x" not in repr(p) and "grad" in repr(p)
    q = Problem("unknown", f=lambda x: 0.0, grad=None, x0=np.zeros(1))
    with pytest.raises(ValueError, match="f_star"):
        q.gap(q.x0)


def test_composite_problem_splits_f_and_h():
    p = Problem("lasso-ish", f=lambda x: 0.5 * np.sum(np.asarray(x) ** 2, axis=-1), grad=lambda x: x,
                h=lambda x: np.abs(x).sum(axis=-1), prox=lambda v, lr: v, x0=np.ones(2), f_star=0.0)
    assert p.f(p.x0) == 1.0 and p.F(p.x0) == 3.0 and p.gap(p.x0) == 3.0
    np.testing.assert_allclose(p.gap(np.ones((3, 2))), [3.0, 3.0, 3.0])


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(f="notcallable"), TypeError, "f must be a callable"),
    (dict(x0="abc"), TypeError, "x0"),
    (dict(x0=[1.0, np.inf]), ValueError, "x0 must be finite"),
    (dict(grad=3), TypeError, "grad"),
    (dict(prox=lambda v, lr: v), ValueError, "h and prox go together"),
    (dict(L=-1.0), ValueError, "L must be"),
    (dict(mu="big"), TypeError, "mu"),
    (dict(x_star=np.zeros(3)), ValueError, "x_star must have shape"),
    (dict(f_star=np.nan), ValueError, "f_star"),
    (dict(bounds=np.zeros((4, 2))), ValueError, "lower < upper"),
    (dict(info=[1]), TypeError, "info"),
])
def test_problem_rejects_bad_fields(kwargs, err, match):
    with pytest.raises(err, match=match):
        sphere(**kwargs)


def test_problem_x0_is_copied():
    x0 = np.ones(4)
    p = sphere(x0=x0)
    x0[0] = 7.0
    assert p.x0[0] == 1.0


# --------------------------------------------------------------------------- History, Result, Trace

def test_history_columns_and_padding():
    h = History()
    h.append(t=0, f=1.0)
    h.append(t=1, f=0.5, extra=3.0)
    h.append(t=2, f=0.25)
    assert h.columns == ["t", "f", "extra"] and h.last("f") == 0.25
    assert np.isnan(h["extra"][0]) and h["extra"][1] == 3.0 and np.isnan(h["extra"][2])
    assert len(h) == 3 and "f" in h and "g" not in h
    with pytest.raises(KeyError, match="no history column 'g'"):
        h["g"]
    assert set(h.as_dict()) == {"t", "f", "extra"}


def make_result(**kw):
    args = dict(x=np.zeros(2), f=0.0, history=History(), method="demo", params={}, n_iters=0, n_evals={},
                converged=False, message="done")
    args.update(kw)
    return Result(**args)


def test_result_extras_read_as_attributes_and_survive_pickling():
    res = make_result(extras={"x_avg": np.ones(2), "duals": np.zeros(3)})
    assert res.x_avg.tolist() == [1.0, 1.0] and "duals" in dir(res)
    with pytest.raises(AttributeError, match="extras: \\['duals', 'x_avg'\\]"):
        _ = res.nothing
    again = pickle.loads(pickle.dumps(res))
    assert again.duals.shape == (3,)
    assert "extras=[x_avg, duals]" in repr(res) and "0x" not in repr(res)


def test_result_holds_blocks_and_vector_objectives():
    res = make_result(x={"x": np.ones(2), "y": np.zeros(3)}, f=np.array([1.0, 2.0]))
    assert set(res.x) == {"x", "y"} and res.f.shape == (2,)
    assert "f=[1. 2.]" in repr(res)


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
    res = tr.result(np.zeros(2), 0.0, n_iters=stopped_at, x_avg=np.ones(2))
    assert stopped_at == 2 and len(seen) == 3
    assert res.n_evals == {"grad": 6} and res.history["n_evals"].tolist() == [2, 4, 6]
    assert res.message == "stopped by callback" and not res.converged and res.x_avg.tolist() == [1.0, 1.0]
    assert np.stack(res.history["x"])[:, 0].tolist() == [0, 1, 2]


def test_trace_counted_counts_rows_of_batches():
    tr = Trace("zo", {})
    f = tr.counted("f", lambda X: np.sum(X ** 2, axis=-1), per_row=True)
    f(np.ones((20, 3)))
    f(np.ones(3))
    g = tr.counted("grad", lambda x: 2 * x)
    g(np.ones((5, 3)))
    assert tr.n_evals == {"f": 21, "grad": 1}


def test_trace_diverged_sets_the_message():
    tr = Trace("demo", {})
    assert not tr.diverged(np.ones(2), 1)
    assert tr.diverged({"x": np.ones(2), "y": np.array([np.nan])}, 7)
    res = tr.result(np.ones(2), np.inf, n_iters=7)
    assert "non-finite" in res.message and "step 7" in res.message


def test_trace_rejects_non_callable_callback():
    with pytest.raises(TypeError, match="callback"):
        Trace("demo", {}, callback=3)


# --------------------------------------------------------------------------- replicas

def test_as_batch_and_rowwise_checks():
    X, single = as_batch([1.0, 2.0])
    assert X.shape == (1, 2) and single
    X, single = as_batch(np.ones((3, 2)))
    assert X.shape == (3, 2) and not single
    with pytest.raises(ValueError, match="x0 must be a 1-D or 2-D array"):
        as_batch(np.ones((2, 2, 2)))
    rowwise = lambda Z: np.sum(Z ** 2, axis=-1)  # noqa: E731
    np.testing.assert_allclose(check_rowwise(rowwise, np.arange(9.0).reshape(3, 3)), [5.0, 50.0, 149.0])
    # R == d: the shape alone cannot tell, the first-row probe can
    with pytest.raises(ValueError, match="row-wise"):
        check_rowwise(lambda Z: np.sum(Z ** 2, axis=0), np.arange(9.0).reshape(3, 3))
    with pytest.raises(ValueError, match="row-wise"):
        check_rowwise(lambda Z: float(np.sum(Z ** 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="first row alone"):
        check_rowwise(lambda Z: np.sum(Z, axis=-1) + len(Z), np.ones((3, 2)))


def test_replica_stats_and_quantile_names():
    row = replica_stats(np.arange(11.0), quantiles=(0.1, 0.5))
    assert row == {"f": 5.0, "f_q10": 1.0, "f_q50": 5.0}
    assert quantile_names([0.975], "f_avg") == {0.975: "f_avg_q97_5"}
    with pytest.raises(ValueError, match="distinct"):
        quantile_names([0.95, 0.9500001])
    with pytest.raises(ValueError, match="quantiles"):
        quantile_names([0.5, 1.5])
    with pytest.raises(TypeError, match="quantiles"):
        quantile_names("0.5")


def test_geometric_steps():
    steps = geometric_steps(10_000, 30)
    assert min(steps) == 0 and max(steps) == 10_000 and len(steps) <= 31
    with pytest.raises(ValueError, match="n_log"):
        geometric_steps(10, 1)


def test_check_oracle_shapes():
    assert check_oracle(lambda x: 2 * x, "grad", np.ones(3)).shape == (3,)
    with pytest.raises(ValueError, match="prox returned shape \\(\\), expected \\(4, 3\\)"):
        check_oracle(lambda v, lr: 1.0, "prox", np.ones((4, 3)), 0.1)
    with pytest.raises(TypeError, match="project must return an array of numbers"):
        check_oracle(lambda x: "x", "project", np.ones(2))


def test_array_namespace_without_importing_torch():
    assert array_namespace(np.ones(2)) is np
    torch = pytest.importorskip("torch")
    assert array_namespace(torch.ones(2)) is torch


def test_source_drops_docstring():
    text = source(as_array)
    assert text.startswith("def as_array") and "Copy a starting point" not in text
    assert "Copy a starting point" in source(as_array, docstring=True)


def test_import_is_light():
    """`import optlab` and its numpy modules must not pull in torch (Colab users pay for every import)."""
    code = ("import sys, optlab, optlab.problems, optlab.baselines, optlab.prox, optlab.rates, optlab.noise, "
            "optlab.claims, optlab.foundations.last_iterate; print('torch' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout
