"""Tests of optlab.bilevel.core, the part's shared module: oracles, closed forms, trusted solvers, contract."""
import numpy as np
import pytest

from optlab.bilevel import core as bc
from optlab.testing import check_bad_inputs, check_grad, check_hvp, check_method_contract

PROBLEMS = {"quadratic": lambda: bc.quadratic_problem(dim_x=3, dim_y=4, cond=20.0, rng=1),
            "ridge": lambda: bc.ridge_problem(n_train=200, rng=2)}


# --- oracle checks ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PROBLEMS)
def test_oracles_match_finite_differences(name):
    p = PROBLEMS[name]()
    rng = np.random.default_rng(0)
    x, y, v = rng.uniform(-1, 1, p.x0.shape), rng.standard_normal(p.y0.shape), rng.standard_normal(p.y0.shape)
    assert check_grad(lambda x_: p.F(x_, y), lambda x_: p.grad_Fx(x_, y), x) < 1e-6
    assert check_grad(lambda y_: p.F(x, y_), lambda y_: p.grad_Fy(x, y_), y) < 1e-6
    assert check_grad(lambda x_: p.g(x_, y), lambda x_: p.grad_gx(x_, y), x) < 1e-6
    assert check_grad(lambda y_: p.g(x, y_), lambda y_: p.grad_gy(x, y_), y) < 1e-6
    assert check_hvp(lambda y_: p.grad_gy(x, y_), lambda y_, v_: p.hvp_yy(x, y_, v_), y, v) < 1e-6
    # the cross derivative: grad_x <grad_y g(x, y), v> = jvp_xy(x, y, v)
    assert check_grad(lambda x_: p.grad_gy(x_, y) @ v, lambda x_: p.jvp_xy(x_, y, v), x) < 1e-6
    assert check_grad(p.hyper, p.hypergrad, x) < 1e-5
    np.testing.assert_allclose(p.grad_gy(x, p.y_star(x)), 0.0, atol=1e-10)


@pytest.mark.parametrize("name", PROBLEMS)
def test_oracles_are_rowwise(name):
    p = PROBLEMS[name]()
    X, Y = np.tile(p.x0 + 0.3, (3, 1)), np.random.default_rng(1).standard_normal((3, p.y0.size))
    for fn in (p.F, p.g):
        np.testing.assert_allclose(fn(X, Y), [fn(a, b) for a, b in zip(X, Y)])
    for fn in (p.grad_Fx, p.grad_Fy, p.grad_gx, p.grad_gy):
        np.testing.assert_allclose(fn(X, Y), np.stack([fn(a, b) for a, b in zip(X, Y)]))


# --- closed forms -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PROBLEMS)
@pytest.mark.parametrize("solver", ["cg", "neumann", "pinv"])
def test_implicit_hypergradient_matches_the_closed_form(name, solver):
    p = PROBLEMS[name]()
    x = np.linspace(-0.8, 0.6, p.x0.size)
    g, n = bc.implicit_hypergrad(p, x, p.y_star(x), solver=solver, n_steps=20000 if solver == "neumann" else 100)
    np.testing.assert_allclose(g, p.hypergrad(x), rtol=1e-6, atol=1e-10)
    assert n == (p.y0.size if solver == "pinv" else n) and n >= 1


def test_cg_is_exact_in_dim_steps_and_neumann_is_geometric():
    p = PROBLEMS["quadratic"]()
    A, b = p.info["A"], np.arange(1.0, 5.0)
    v, n = bc.conjugate_gradient(lambda v: A @ v, b, n_steps=50)
    assert n <= 4 + 1 and np.allclose(v, np.linalg.solve(A, b), rtol=1e-9)
    errs = [np.linalg.norm(bc.neumann_series(lambda v: A @ v, b, n_steps=k, lr=1 / 20)[0] - np.linalg.solve(A, b))
            for k in (50, 100)]
    ratio = 1 - 1 / 20  # max |1 - lr * eigenvalue| with eigenvalues in [1, 20]
    assert errs[1] / errs[0] == pytest.approx(ratio**50, rel=0.05)


def test_cg_agrees_with_scipy():
    from scipy.sparse.linalg import cg

    A = PROBLEMS["quadratic"]().info["A"]
    b = np.array([1.0, -2.0, 0.5, 3.0])
    ours, _ = bc.conjugate_gradient(lambda v: A @ v, b)
    import inspect

    tol = "rtol" if "rtol" in inspect.signature(cg).parameters else "tol"  # SciPy < 1.12 calls it tol
    theirs, info = cg(A, b, atol=0.0, **{tol: 1e-12})
    assert info == 0 and np.allclose(ours, theirs, atol=1e-9)


def test_unrolled_hypergradient_matches_its_closed_form_and_tends_to_the_implicit_one():
    p = bc.quadratic_problem(dim_x=2, dim_y=3, cond=10.0, rng=0)
    A, B, c, lam = (p.info[k] for k in ("A", "B", "c", "lam"))
    x, lr = np.array([0.4, -0.7]), 0.05
    for T in (0, 1, 5, 40):
        # y_T = (I - (I - lr A)^T) A^{-1} B x = M x from y_0 = 0, so grad = M^T (M x - c) + lam x
        M = (np.eye(3) - np.linalg.matrix_power(np.eye(3) - lr * A, T)) @ np.linalg.solve(A, B)
        g, yT = bc.unrolled_hypergrad(p, x, np.zeros(3), lr=lr, n_steps=T)
        np.testing.assert_allclose(yT, M @ x, atol=1e-12)
        np.testing.assert_allclose(g, M.T @ (M @ x - c) + lam * x, atol=1e-12)
    g, _ = bc.unrolled_hypergrad(p, x, np.zeros(3), lr=lr, n_steps=1000)
    np.testing.assert_allclose(g, p.hypergrad(x), atol=1e-9)


def test_lower_solve_reaches_the_tolerance_on_ill_conditioned_rows():
    scales = np.array([1.0, 1e3])
    Y0 = np.zeros((2, 2))
    y, n = bc.lower_solve(lambda y: scales * (y - 1), Y0, lr=np.array([1e-3, 1e-3]), tol=1e-10)
    np.testing.assert_allclose(y, 1.0, atol=1e-9)
    assert n < 2000, "accelerated: about sqrt(kappa) log(1/tol) steps, not kappa log(1/tol)"
    _, capped = bc.lower_solve(lambda y: scales * (y - 1), Y0, lr=1e-3, tol=1e-10, max_iters=10)
    assert capped == 10 and np.array_equal(Y0, np.zeros((2, 2)))


def test_ridge_lower_level_agrees_with_scikit_learn():
    from sklearn.linear_model import Ridge

    p = PROBLEMS["ridge"]()
    A, b = p.info["A"], p.info["b"]
    x = np.full(10, -1.5)  # one shared penalty: (1/2n)||Ay - b||^2 + (e^x/2)||y||^2 is sklearn's alpha = n e^x
    ours = p.y_star(x)
    theirs = Ridge(alpha=len(A) * np.exp(-1.5), fit_intercept=False).fit(A, b).coef_
    np.testing.assert_allclose(ours, theirs, rtol=1e-8)
    assert p.project(np.array([-9.0] + [0.0] * 8 + [9.0]))[[0, -1]].tolist() == [-4.0, 2.0]


# --- the AID baseline ---------------------------------------------------------------------------

def test_implicit_gd_converges_to_the_minimizer_of_the_hyper_objective():
    p = bc.quadratic_problem(dim_x=2, dim_y=3, cond=5.0, lam=0.5, rng=3)
    A, B, c, lam = (p.info[k] for k in ("A", "B", "c", "lam"))
    M = np.linalg.solve(A, B)
    x_star = np.linalg.solve(M.T @ M + lam * np.eye(2), M.T @ c)
    L = np.linalg.eigvalsh(M.T @ M + lam * np.eye(2)).max()
    res = bc.implicit_gd(p, p.x0, lr=1 / L, n_iters=300)
    np.testing.assert_allclose(res.x, x_star, atol=1e-7)
    assert res.f == pytest.approx(p.F(res.x, p.y_star(res.x)))
    np.testing.assert_allclose(res.y, p.y_star(res.x), atol=1e-8)
    assert set(res.n_evals) == {"grad_gy", "hvp_yy", "jvp_xy", "grad_Fx", "grad_Fy"}
    assert res.n_evals["jvp_xy"] == 300 and len(res.history["t"]) == 301


START = np.zeros(3)


def run(rng=0, x0=START, callback=None):
    return bc.implicit_gd(PROBLEMS["quadratic"](), x0, lr=0.05, n_iters=5, rng=rng, callback=callback)


def test_implicit_gd_contract():
    check_method_contract(run, stochastic=False)


def test_non_finite_iterates_stop_implicit_gd():
    with np.errstate(over="ignore", invalid="ignore"):
        res = bc.implicit_gd(PROBLEMS["quadratic"](), np.ones(3), lr=1e305, n_iters=5)
    assert "non-finite" in res.message and np.isnan(res.f)


QP = bc.quadratic_problem(dim_x=2, dim_y=3, rng=0)
BAD_INPUT = {
    "lower_solve": (bc.lower_solve, dict(grad=lambda y: y, y0=np.ones(2), lr=0.5),
                    {"y0": [[np.nan, 1.0], np.ones((2, 2, 2))], "lr": [-1.0, 0.0, [0.1, 0.2], np.nan],
                     "tol": [0.0, -1.0], "max_iters": [0, 1.5],
                     "grad": [(lambda y: y[:1], "grad returned shape")]}, ()),
    "conjugate_gradient": (bc.conjugate_gradient, dict(matvec=lambda v: 2 * v, b=np.ones(2)),
                           {"b": [np.ones((2, 2)), [np.inf, 1.0]], "n_steps": [0], "tol": [-1.0],
                            "matvec": [(lambda v: v[:1], "matvec returned shape")]}, ()),
    "neumann_series": (bc.neumann_series, dict(matvec=lambda v: 2 * v, b=np.ones(2), n_steps=3, lr=0.1),
                       {"b": [[np.nan]], "n_steps": [-1], "lr": [0.0, -0.1]}, ()),
    "implicit_hypergrad": (lambda **kw: bc.implicit_hypergrad(QP, **kw), dict(x=np.zeros(2), y=np.zeros(3)),
                           {"x": [np.zeros((2, 2)), [np.nan, 0.0]], "y": [[np.inf, 0.0, 0.0]],
                            "solver": ["lu"], "n_steps": [0]}, ()),
    "unrolled_hypergrad": (lambda **kw: bc.unrolled_hypergrad(QP, **kw),
                           dict(x=np.zeros(2), y0=np.zeros(3), lr=0.1, n_steps=3),
                           {"x": [[np.nan, 0.0]], "y0": [np.zeros((1, 3))], "lr": [0.0], "n_steps": [-1, 2.5]}, ()),
    "implicit_gd": (lambda **kw: bc.implicit_gd(QP, **kw), dict(x0=np.zeros(2), lr=0.1, n_iters=2),
                    {"x0": [[np.nan, 0.0]], "lr": [-0.1], "n_iters": [0], "inner_tol": [0.0], "max_inner": [0],
                     "solver": ["lu"], "n_solver_steps": [0], "rng": [-1], "callback": [3]}, ()),
    "quadratic_problem": (bc.quadratic_problem, dict(dim_x=2, dim_y=3),
                          {"dim_x": [0], "dim_y": [1.5], "cond": [0.5, np.nan], "lam": [-1.0], "rng": [-1]}, ()),
    "ridge_problem": (bc.ridge_problem, dict(n_train=100),
                      {"n_train": [5, 1000], "box": [(1.0, -1.0), (0.0, np.nan)], "rng": ["a"]}, ()),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


def test_missing_second_derivatives_are_a_clear_error():
    p = bc.quadratic_problem(dim_x=2, dim_y=3, rng=0)
    p.hvp_yy = None
    for fn in (lambda: bc.implicit_hypergrad(p, np.zeros(2), np.zeros(3)),
               lambda: bc.unrolled_hypergrad(p, np.zeros(2), np.zeros(3), lr=0.1, n_steps=2)):
        with pytest.raises(ValueError, match="hvp_yy"):
            fn()
