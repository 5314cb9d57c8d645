"""Bad input, everywhere: every public function of optlab's core layer, given a bad argument, raises a
TypeError or ValueError that names the argument (optlab.testing.check_bad_inputs), never a cryptic numpy
error and never a silent garbage result.  Chapter modules add their own rows in their test files.

Each row: (function, a good call's keyword arguments, {argument: [bad values]}, arguments that accept any
object and so are exempt from the generic garbage values).
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optlab import baselines as B
from optlab import claims, core, noise, plotting, problems, prox, rates, schedules, testing
from optlab.foundations import last_iterate as li
from optlab.testing import check_bad_inputs

NAN, INF = math.nan, math.inf
quad = problems.quadratic(dim=3, rng=0)
F, G, X0 = quad.f, quad.grad, quad.x0
wrong_shape = lambda x: np.ones(7)  # noqa: E731
scalar_out = lambda x, *a: 1.0  # noqa: E731
BAD_FN = [3, "f", (lambda: 1.0, "")]  # non-callables; a callable with the wrong arity fails when called


def method_row(fn, **extra):
    good = dict(f=F, grad=G, x0=X0, lr=0.01, n_iters=5, **extra)
    bad = {"grad": [3, wrong_shape], "x0": [[1.0, NAN], np.ones((2, 3)), [], "abc"],
           "lr": [-0.1, NAN, INF, "0.1", (lambda t: -1.0, "lr schedule"), (lambda t: NAN, "lr schedule")],
           "n_iters": [-1, 2.5, True], "rng": [-1, "seed", 1.5], "callback": [3], "f": [3]}
    if fn is B.nesterov:
        bad["lr"] = [-0.1, NAN, INF, "0.1", 0.0, (lambda t: 0.1, "lr")]
    return (fn, good, bad, ())


ROWS = {
    "gradient_descent": method_row(B.gradient_descent, tol=1e-3),
    "gradient_descent/project": (B.gradient_descent, dict(f=F, grad=G, x0=X0, lr=0.01, n_iters=3, project=lambda x: x),
                                 {"project": [3, (wrong_shape, "project returned shape")], "tol": [-1.0, NAN]}, ()),
    "heavy_ball": method_row(B.heavy_ball),
    "heavy_ball/beta": (B.heavy_ball, dict(f=F, grad=G, x0=X0, lr=0.01, beta=0.5, n_iters=3),
                        {"beta": [-0.1, 1.0, 1.5, NAN]}, ("f", "grad", "x0", "lr", "n_iters")),
    "nesterov": method_row(B.nesterov),
    "nesterov/mu": (B.nesterov, dict(f=F, grad=G, x0=X0, lr=0.1, mu=1.0, n_iters=3), {"mu": [-1.0, 20.0, NAN]},
                    ("f", "grad", "x0", "lr", "n_iters")),
    "adam": method_row(B.adam),
    "adam/betas": (B.adam, dict(f=F, grad=G, x0=X0, lr=0.01, n_iters=3),
                   {"beta1": [1.0, -0.5], "beta2": [1.0, NAN], "eps": [0.0, -1e-8]}, ("f", "grad", "x0", "lr")),
    "sgd": (li.sgd, dict(stoch_grad=lambda x, rng: np.sign(x), x0=np.ones((4, 3)), lr=0.1, n_iters=5,
                         f=lambda x: np.abs(x).sum(axis=-1), prox=lambda v, lr: v, project=lambda x: x),
            {"x0": [np.ones((2, 2, 2)), [[1.0, NAN]], []], "lr": [-0.1, (lambda t: -1.0, "lr schedule")],
             "n_iters": [0, 2.5], "n_log": [1, "30"], "quantiles": [(0.5, 1.5), (0.95, 0.9500001), "0.5"],
             "stoch_grad": [None, (lambda x, rng: np.zeros(7), "stoch_grad returned shape")],
             "prox": ["soft", (scalar_out, "prox returned shape")],
             "project": [(lambda x: x[:2], "project returned shape")],
             "f": [(lambda x: np.abs(x).sum(axis=0)[:4] * 0 + np.abs(x).sum(), "f must be row-wise"),
                   (lambda x: float(np.abs(x).sum()), "f must be row-wise")],
             "rng": ["seed"], "callback": [3]}, ()),
    "step_size": (li.step_size, dict(rule="horizon", eta=1.0, n_iters=10),
                  {"rule": ["adaptive", "constant"], "eta": [-1.0, 0.0, NAN], "n_iters": [0, 2.5],
                   "mu": [(1.0, "does not use mu")], "L": [0.0, -1.0]}, ()),
    "step_size/strongly_convex": (li.step_size, dict(rule="strongly_convex", mu=0.5),
                                  {"mu": [0.0, -1.0], "eta": [(1.0, "does not use eta")],
                                   "n_iters": [(10, "does not use n_iters")], "L": [-1.0]}, ("rule",)),
    "horizon_sweep": (li.horizon_sweep, dict(problem=li.l1_norm_problem(2), horizons=[5, 10],
                                             lr=lambda T: 0.1, n_replicas=3, rng=0),
                      {"horizons": [[0, 10], [2.5]], "n_replicas": [0], "lr": [3]}, ("problem", "horizons")),
    "l1_norm_problem": (li.l1_norm_problem, dict(dim=3), {"dim": [0, 2.5], "noise": ["levy"]}, ()),
    "least_squares_problem": (li.least_squares_problem, dict(n_samples=3, dim=5),
                              {"n_samples": [0, -2], "dim": [0], "rng": [-1]}, ()),
    "composite_problem": (li.composite_problem, dict(dim=3, lam=1.0), {"lam": [-1.0, NAN], "dim": [0]}, ()),
    "quadratic": (problems.quadratic, dict(dim=3, cond=10.0), {"dim": [0, 2.5], "cond": [0.5, INF], "rng": ["x"]},
                  ()),
    "least_squares": (problems.least_squares, dict(n=20, dim=3), {"n": [0], "dim": [0], "noise": [-0.1],
                                                                  "cond": [0.5]}, ()),
    "logistic_regression": (problems.logistic_regression, dict(X=np.ones((4, 2)), y=[0, 1, 0, 1]),
                            {"X": [np.ones(4), [[NAN, 1.0]] * 4], "y": [[0, 1, 2, 0], [0, 1]], "l2": [0.0, -1.0],
                             "fit_intercept": [1]}, ("name",)),
    "rosenbrock": (problems.rosenbrock, dict(dim=3), {"dim": [1, True]}, ()),
    "rastrigin": (problems.rastrigin, dict(dim=2, A=10.0), {"A": [-1.0, 0.0]}, ()),
    "digits_logistic": (problems.digits_logistic, dict(classes=(3, 8)), {"classes": [(3, 3), (3, 10), 3]}, ()),
    "as_rng": (core.as_rng, dict(rng=0), {"rng": [-1, 1.5, True]}, ()),
    "as_schedule": (core.as_schedule, dict(lr=0.1), {"lr": [-0.1, NAN, None, True]}, ()),
    "as_batch": (core.as_batch, dict(x0=np.ones(3)), {"x0": [np.ones((1, 1, 1)), [NAN]]}, ()),
    "geometric_steps": (core.geometric_steps, dict(n_iters=10, n_log=3), {"n_iters": [0], "n_log": [1]}, ()),
    "quantile_names": (core.quantile_names, dict(quantiles=[0.5]), {"quantiles": [[2.0], [0.5, 0.5]]}, ("prefix",)),
    "Problem": (core.Problem, dict(name="p", f=F, grad=G, x0=X0),
                {"f": ["notcallable"], "x0": ["abc", [NAN]], "name": [3], "L": [-1.0]}, ("name",)),
    "Trace": (core.Trace, dict(method="m", params={}, callback=None), {"callback": [3]}, ("method", "params")),
    "constant": (schedules.constant, dict(lr=0.1), {"lr": [-1.0, INF]}, ()),
    "step": (schedules.step, dict(lr=0.1, step_size=5, gamma=0.5), {"step_size": [0], "gamma": [0.0, 1.5]}, ()),
    "inverse_time": (schedules.inverse_time, dict(mu=1.0), {"mu": [0.0, -1.0]}, ()),
    "cosine": (schedules.cosine, dict(lr=1.0, n_iters=10), {"n_iters": [0], "lr_min": [-1.0]}, ()),
    "linear_decay": (schedules.linear_decay, dict(lr=1.0, n_iters=10), {"lr_end": [-1.0]}, ()),
    "warmup": (schedules.warmup, dict(schedule=schedules.constant(1.0), n_warmup=3),
               {"schedule": [3.0], "n_warmup": [0]}, ()),
    "capped": (schedules.capped, dict(schedule=schedules.constant(1.0), cap=0.5), {"cap": [0.0, -1.0]}, ()),
    "check_grad": (testing.check_grad, dict(f=F, grad=G, x=X0), {"eps": [0.0], "n_dirs": [0, 1.5],
                                                                  "grad": [(wrong_shape, "grad")]}, ()),
    "check_hvp": (testing.check_hvp, dict(grad=G, hvp=quad.hvp, x=X0), {"v": [(np.ones(2), "v")], "eps": [-1.0]},
                  ()),
    "fd_grad": (testing.fd_grad, dict(f=F, x=X0), {"eps": [0.0], "x": [[NAN, 1.0]]}, ("f",)),
    "soft_threshold": (prox.soft_threshold, dict(v=np.ones(3), tau=0.1), {"tau": [-0.1, NAN, [0.1, -1.0]]}, ()),
    "l1_prox": (prox.l1_prox, dict(lam=1.0), {"lam": [-1.0]}, ()),
    "project_simplex": (prox.project_simplex, dict(v=np.ones(3), z=1.0), {"z": [0.0, -1.0]}, ()),
    "project_l2_ball": (prox.project_l2_ball, dict(x=np.ones(3), radius=1.0), {"radius": [-1.0]}, ()),
    "project_l1_ball": (prox.project_l1_ball, dict(v=np.ones(3), radius=1.0), {"radius": [0.0]}, ()),
    "loglog_slope": (rates.loglog_slope, dict(t=[1.0, 10.0], y=[1.0, 0.1]), {"y": [[1.0, -1.0], [1.0]]}, ()),
    "affine_fit": (rates.affine_fit, dict(x=[1.0, 2.0], y=[1.0, 3.0]), {"x": [[1.0, 1.0]]}, ()),
    "gaussian": (noise.gaussian, dict(sigma=1.0), {"sigma": [-1.0, 0.0, INF]}, ()),
    "student_t": (noise.student_t, dict(df=1.5, scale=1.0), {"df": [0.0], "scale": [-1.0]}, ()),
    "bounded": (noise.bounded, dict(scale=1.0, kind="uniform"), {"kind": ["box"], "scale": [0.0]}, ()),
    "color_for": (plotting.color_for, dict(method="sgd"), {"method": [3]}, ("method",)),
    "within": (claims.within, dict(name="x", value=1.0, low=0.0, high=2.0),
               {"value": [NAN, "abc"], "low": [(3.0, "low=3")]}, ("name",)),
}


@pytest.mark.parametrize("row", ROWS)
def test_every_bad_argument_is_named(row):
    fn, good, bad, skip = ROWS[row]
    with np.errstate(all="ignore"):
        assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


def test_the_suite_itself_catches_silent_acceptance_and_cryptic_errors():
    def lax(x):
        return np.asarray(x) * 2            # accepts anything numpy accepts

    with pytest.raises(AssertionError, match="accepted silently"):
        check_bad_inputs(lax, {"x": 1.0}, {"x": [-1.0]}, generic={})
    with pytest.raises(AssertionError, match="cryptic IndexError"):
        check_bad_inputs(lambda x: [0][int(x)], {"x": 0}, {"x": [5]}, generic={})


# --------------------------------------------------------------------------- property-based: any out-of-range number

negative = st.floats(max_value=-1e-300, allow_nan=False) | st.just(NAN) | st.just(INF) | st.just(-INF)
outside_unit = st.floats(min_value=1.0, allow_infinity=True) | st.floats(max_value=-1e-300) | st.just(NAN)
not_an_int = st.floats(allow_nan=True).filter(lambda v: not float(v).is_integer()) | st.booleans() | st.text()


@settings(max_examples=40, deadline=None)
@given(lr=negative)
def test_any_negative_or_non_finite_lr_is_rejected(lr):
    for method in (B.gradient_descent, B.heavy_ball, B.adam):
        with pytest.raises(ValueError, match="lr"):
            method(F, G, X0, lr=lr, n_iters=2)
    with pytest.raises(ValueError, match="lr"):
        li.sgd(lambda x, rng: x, X0, lr=lr, n_iters=2)


@settings(max_examples=40, deadline=None)
@given(beta=outside_unit)
def test_any_momentum_outside_unit_interval_is_rejected(beta):
    with pytest.raises(ValueError, match="beta"):
        B.heavy_ball(F, G, X0, lr=0.01, beta=beta, n_iters=2)
    with pytest.raises(ValueError, match="beta1"):
        B.adam(F, G, X0, lr=0.01, beta1=beta, n_iters=2)


@settings(max_examples=40, deadline=None)
@given(n=not_an_int)
def test_any_non_integer_count_is_rejected(n):
    for call in (lambda: B.gradient_descent(F, G, X0, lr=0.01, n_iters=n),
                 lambda: li.sgd(lambda x, rng: x, X0, lr=0.1, n_iters=n),
                 lambda: problems.quadratic(dim=n), lambda: schedules.cosine(1.0, n_iters=n)):
        with pytest.raises(TypeError, match="n_iters|dim"):
            call()


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=3).filter(lambda s: s != [3]))
def test_any_wrong_gradient_shape_is_named(shape):
    with pytest.raises(ValueError, match="grad returned shape"):
        B.gradient_descent(F, lambda x: np.ones(shape), X0, lr=0.01, n_iters=2)
