"""Tests of optlab.zeroth_order.rank_sgd, cheapest first; the chapter's claim on other seeds and wrong variants."""
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from optlab.claims import ClaimFailed
from optlab.problems import quadratic, rosenbrock
from optlab.testing import check_bad_inputs, check_method_contract
from optlab.zeroth_order import estimators
from optlab.zeroth_order import rank_sgd as rs

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "zeroth_order" / "rank_sgd.ipynb"
# Seeds and sizes of the claim re-runs here; the chapter uses seeds 1-3, 4 replicas, d = 50.
CLAIM_SEEDS = [7001, 7002, 7003]
FAST = {"N_REPLICAS": 2}

SQUARES = lambda X: np.sum(np.asarray(X) ** 2, axis=-1)  # noqa: E731


def explicit_direction(xi, order):
    """g = (1/|E|) sum over the DAG's pairs (i better than j) of (xi_j - xi_i), pair by pair."""
    m, order = len(xi), [int(i) for i in order]
    pairs = [(i, j) for r, i in enumerate(order) for j in order[r + 1:]]
    pairs += [(i, j) for i in order for j in range(m) if j not in order]
    return sum(xi[j] - xi[i] for i, j in pairs) / len(pairs)


# --- exact identities: the DAG, its size, the coefficient form --------------------------------

def test_number_of_pairs_is_the_size_of_the_dag():
    for m in range(2, 9):
        for k in range(1, m + 1):
            order = np.random.default_rng(m * 10 + k).permutation(m)[:k]
            pairs = rs.dag_pairs(order, m)
            assert len(pairs) == len(set(pairs)) == rs.n_pairs(m, k) == k * (k - 1) // 2 + k * (m - k)
            assert all(i != j for i, j in pairs)


def test_dag_is_the_transitive_closure_of_what_the_oracle_says():
    """networkx: the observed relations (consecutive ranks, k-th best over each unranked) close to our pairs."""
    nx = pytest.importorskip("networkx")
    rng = np.random.default_rng(0)
    for m, k in [(2, 1), (5, 2), (6, 6), (10, 1), (10, 4)]:
        order = rng.permutation(m)[:k].tolist()
        hasse = nx.DiGraph()
        hasse.add_nodes_from(range(m))
        hasse.add_edges_from(zip(order[:-1], order[1:]))
        hasse.add_edges_from((order[-1], j) for j in range(m) if j not in order)
        closure = set(nx.transitive_closure_dag(hasse).edges())
        assert closure == set(rs.dag_pairs(order, m))


def test_coefficient_form_equals_the_sum_over_the_pairs():
    rng = np.random.default_rng(1)
    for m, k in [(2, 1), (3, 2), (5, 5), (10, 1), (10, 3), (10, 10), (7, 4)]:
        for _ in range(5):
            xi = rng.standard_normal((m, 6))
            order = rng.permutation(m)[:k]
            np.testing.assert_allclose(rs.rank_direction(xi, order), explicit_direction(xi, order), atol=1e-12)
            c = rs.rank_coefficients(order, m)
            assert abs(c.sum()) < 1e-12, "differences of probes: the weights sum to zero"
            assert c[order[0]] == -(m - 1) and (k == m or np.all(np.delete(c, order) == k))


def test_batched_direction_equals_one_by_one():
    rng = np.random.default_rng(2)
    xi = rng.standard_normal((3, 4, 8, 5))
    order = np.argsort(rng.standard_normal((3, 4, 8)), axis=-1)[..., :3]
    g = rs.rank_direction(xi, order)
    assert g.shape == (3, 4, 5)
    for a, b in itertools.product(range(3), range(4)):
        np.testing.assert_allclose(g[a, b], explicit_direction(xi[a, b], order[a, b]), atol=1e-12)


def test_ranking_oracle_against_scipy_ranks_ties_and_batches():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    rank = rs.ranking_oracle(SQUARES)
    Y = rng.standard_normal((9, 4))
    ranks = stats.rankdata(SQUARES(Y), method="ordinal")  # 1 = smallest
    assert rank(Y, 4).tolist() == [int(np.flatnonzero(ranks == r)[0]) for r in range(1, 5)]
    tied = np.array([[1.0], [-1.0], [0.5], [1.0]])
    assert rank(tied, 4).tolist() == [2, 0, 1, 3], "ties go to the lower index"
    Y3 = rng.standard_normal((3, 7, 4))
    np.testing.assert_array_equal(rank(Y3, 2), np.stack([rank(y, 2) for y in Y3]))
    monotone = rs.ranking_oracle(lambda Z: np.exp(SQUARES(Z)) - 3.0)
    np.testing.assert_array_equal(monotone(Y3, 7), rank(Y3, 7))


# --- the expectation: parallel to the gradient, with the constant c_{m,k} ------------------------

def test_mean_coefficient_closed_forms_and_order_statistics():
    assert rs.mean_coefficient(2, 1) == pytest.approx(2 / math.sqrt(math.pi), abs=1e-10)
    for m in (3, 6, 10):  # the full ranking: the mean of E|z_i - z_j| over all pairs
        assert rs.mean_coefficient(m, m) == pytest.approx(2 / math.sqrt(math.pi), abs=1e-9)
        assert rs.effective_directions(m, m) == pytest.approx(3 / math.pi * m * (m - 1) / (m + 1), rel=1e-9)
    z = np.sort(np.random.default_rng(4).standard_normal((400_000, 10)), axis=1)  # order statistics
    for k in (1, 3, 5):
        c = (2 * np.arange(k) - 9 - k) @ z[:, :k].mean(axis=0) / rs.n_pairs(10, k)
        assert rs.mean_coefficient(10, k) == pytest.approx(c, abs=3e-3)


def test_monte_carlo_expectation_is_parallel_to_the_gradient():
    p = quadratic(dim=20, cond=10.0, rng=5)
    x = p.x0 + 0.3
    u = p.grad(x) / np.linalg.norm(p.grad(x))
    rng = np.random.default_rng(6)
    for m, k in [(2, 1), (10, 1), (10, 4), (10, 10)]:
        xi = rng.standard_normal((20_000, m, 20))
        order = rs.ranking_oracle(p.f)(x + 1e-5 * xi, k)
        g = rs.rank_direction(xi, order)
        mean, se = g.mean(axis=0), g.std(axis=0) / np.sqrt(len(g))
        assert mean @ u / np.linalg.norm(mean) > 0.99, (m, k)
        assert abs(mean @ u - rs.mean_coefficient(m, k)) < 4 * np.linalg.norm(se), (m, k)
        perp = mean - (mean @ u) * u
        assert np.linalg.norm(perp) < 4 * np.linalg.norm(se), "no bias across the gradient"


def test_perpendicular_variance_matches_the_coefficients():
    """E||g_perp||^2 = (d - 1) sum_a c_a^2 / |E|^2: the part of g that does not point along the gradient."""
    rng = np.random.default_rng(7)
    d, m, k = 30, 10, 3
    u = np.eye(d)[0]
    xi = rng.standard_normal((40_000, m, d))
    g = rs.rank_direction(xi, np.argsort(xi @ u, axis=-1)[..., :k])
    c = rs.rank_coefficients(np.arange(k), m)
    expected = (d - 1) * np.sum(c ** 2) / rs.n_pairs(m, k) ** 2
    assert np.mean(np.sum(g[:, 1:] ** 2, axis=1)) == pytest.approx(expected, rel=0.02)


# --- the methods ---------------------------------------------------------------------------------

def test_iterates_depend_on_ranks_only():
    p = quadratic(dim=10, cond=5.0, rng=8)
    for line_search in (False, True):
        runs = [rs.zo_rank_sgd(rs.ranking_oracle(g), p.x0, m=6, k=k, lr=0.05, n_iters=150, line_search=line_search,
                               f=p.f, rng=9) for g in (p.f, lambda X: np.exp(p.f(X)), lambda X: p.f(X) ** 3)
                for k in (2,)]
        for other in runs[1:]:
            np.testing.assert_array_equal(other.x, runs[0].x)
            np.testing.assert_array_equal(other.history["f"], runs[0].history["f"])
    zo = [rs.zo_sgd(g, p.x0, n_dirs=5, lr=0.01, n_iters=50, f_log=p.f, rng=9) for g in (p.f, lambda X: np.exp(p.f(X)))]
    assert np.abs(zo[0].x - zo[1].x).max() > 1e-3, "value-based ZO-SGD is not invariant"


def test_convergence_and_query_counts():
    p = quadratic(dim=20, cond=10.0, rng=10)
    rank = rs.ranking_oracle(p.f)
    res = rs.zo_rank_sgd(rank, p.x0, m=10, k=10, lr=0.02, n_iters=800, f=p.f, rng=11)
    assert res.f - p.f_star < 0.01 * p.gap(p.x0)
    assert res.n_evals == {"rank": 8000} and res.history["n_evals"][-1] == 8000 and res.n_moves == 800
    ls = rs.zo_rank_sgd(rank, p.x0, m=10, k=10, lr=0.5, n_iters=300, line_search=True, n_trials=6, f=p.f, rng=11)
    assert ls.n_evals == {"rank": 300 * (10 + 8)}
    assert ls.f - p.f_star < 1e-3 * p.gap(p.x0)
    assert np.all(np.diff(ls.history["f"]) <= 0), "the line search ranks the current point: f never increases"
    assert 0 < ls.n_moves < 300 and set(np.unique(ls.history["moved"][1:])) <= {0.0, 1.0}


def test_line_search_picks_the_best_candidate():
    f = lambda X: np.sum((np.asarray(X) - 1.0) ** 2, axis=-1)  # noqa: E731
    x = np.zeros((2, 3))
    d = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])  # the first row points to the minimum, the second away
    probe = np.array([[0.1, 0.1, 0.1], [0.2, 0.2, 0.2]])
    new, moved = rs.line_search_step(rs.ranking_oracle(f), x, d, probe, 2.0, 4)
    np.testing.assert_allclose(new, [[1.0, 1.0, 1.0], [0.2, 0.2, 0.2]])  # steps 2, 1, 0.5, 0.25: 1 is exact
    assert moved.tolist() == [True, True]
    same, moved = rs.line_search_step(rs.ranking_oracle(f), np.ones((1, 3)), d[:1], np.ones((1, 3)), 1.0, 3)
    assert moved.tolist() == [False] and np.array_equal(same, np.ones((1, 3))), "a tie keeps x"


def test_replicas_are_independent_runs():
    p = rosenbrock(4)
    X0 = np.tile(p.x0, (5, 1))
    res = rs.zo_rank_sgd(rs.ranking_oracle(p.f), X0, m=8, k=3, lr=0.01, n_iters=100, f=p.f, rng=12, log_every=25)
    assert res.x.shape == (5, 4) and res.n_moves.shape == (5,) and res.n_evals == {"rank": 800}
    assert len(np.unique(res.x.round(12), axis=0)) == 5
    assert res.f == pytest.approx(np.mean(p.f(res.x))) and res.history["t"].tolist() == [0, 25, 50, 75, 100]


def test_zo_sgd_is_the_shared_estimator_in_a_loop():
    p = quadratic(dim=8, cond=4.0, rng=13)
    res = rs.zo_sgd(p.f, p.x0, n_dirs=4, mu=1e-3, lr=0.05, n_iters=30, rng=14)
    rng, x = np.random.default_rng(14), p.x0.copy()
    for _ in range(30):
        g, _ = estimators.gaussian_smoothing(p.f, x, mu=1e-3, n_dirs=4, rng=rng)
        x = x - 0.05 * g
    np.testing.assert_array_equal(res.x, x)
    assert res.n_evals == {"f": 150} and res.f == pytest.approx(p.f(x))


def test_schedules_and_divergence():
    p = quadratic(dim=5, cond=2.0, rng=15)
    res = rs.zo_rank_sgd(rs.ranking_oracle(p.f), p.x0, m=4, k=2, lr=lambda t: 0.1 / np.sqrt(t + 1), n_iters=20,
                         f=p.f, rng=0)
    np.testing.assert_allclose(res.history["lr"][1:], 0.1 / np.sqrt(np.arange(1, 21)))
    with np.errstate(all="ignore"):
        bad = [rs.zo_sgd(p.f, p.x0, n_dirs=2, lr=1e308, n_iters=20, rng=0),
               rs.zo_rank_sgd(rs.ranking_oracle(p.f), p.x0, m=3, k=1, lr=1e308, n_iters=20, f=p.f, rng=0)]
    for b in bad:
        assert "non-finite" in b.message and b.n_iters < 20 and np.isnan(b.f)


# --- the API contract and bad input --------------------------------------------------------------

P = quadratic(dim=6, cond=3.0, rng=16)
START = np.full(6, 0.5)


def run_rank(rng=0, x0=START, callback=None, **kw):
    return rs.zo_rank_sgd(rs.ranking_oracle(P.f), x0, m=5, k=2, lr=0.05, n_iters=30, f=P.f, rng=rng,
                          callback=callback, **kw)


def run_ls(rng=0, x0=START, callback=None):
    return run_rank(rng=rng, x0=x0, callback=callback, line_search=True)


def run_zo(rng=0, x0=START, callback=None):
    return rs.zo_sgd(P.f, x0, n_dirs=3, lr=0.02, n_iters=30, rng=rng, callback=callback)


@pytest.mark.parametrize("run", [run_rank, run_ls, run_zo])
def test_core_contract(run):
    res = check_method_contract(run)
    assert res.n_iters == 30 and res.message == "reached n_iters=30"


def test_result_fields():
    res = run_rank()
    assert res.method == "zo_rank_sgd" and res.params["m"] == 5 and res.params["k"] == 2 and not res.converged
    assert set(res.extras) == {"n_moves"} and res.x.shape == (6,)
    for col in ("t", "n_evals", "lr", "moved", "f"):
        assert col in res.history.columns
    assert np.isnan(res.history["lr"][0]) and "0x" not in repr(res)
    assert np.isnan(rs.zo_rank_sgd(rs.ranking_oracle(P.f), START, m=3, k=1, lr=0.1, n_iters=3, rng=0).f)


def bad_rank(shape_of):
    return lambda Y, k: np.zeros(shape_of(Y, k), int)


RANK = rs.ranking_oracle(P.f)
BAD_INPUT = {
    "zo_rank_sgd": (rs.zo_rank_sgd, dict(rank=RANK, x0=START, m=5, k=2, mu=1e-3, lr=0.05, n_iters=3, line_search=True,
                                         n_trials=2, f=P.f, log_every=1, rng=0),
                    {"x0": [np.ones((2, 2, 2)), [np.nan] * 6, []], "m": [1, 2.5], "k": [0, 6, True],
                     "mu": [0.0, -1.0, np.inf], "lr": [-0.1, (lambda t: -1.0, "lr schedule")],
                     "n_iters": [0, 1.5], "line_search": ["yes", 1], "n_trials": [0], "log_every": [0],
                     "rank": [None, (bad_rank(lambda Y, k: (len(Y), k + 1)), "rank must return"),
                              (lambda Y, k: np.argsort(-np.ones(Y.shape[:-1]))[..., :k] + 7, "rank must return"),
                              (lambda Y, k: np.zeros((len(Y), k)), "rank must return"),
                              (bad_rank(lambda Y, k: (len(Y), k)), "rank must return")],
                     "f": [3, (lambda X: np.sum(X), "f must be row-wise")], "rng": ["seed"], "callback": [3]}, ()),
    "zo_sgd": (rs.zo_sgd, dict(f=P.f, x0=START, n_dirs=2, mu=1e-3, lr=0.01, n_iters=3, f_log=P.f, log_every=1, rng=0),
               {"x0": [np.ones((2, 6)), [np.inf] * 6], "n_dirs": [0], "mu": [0.0], "lr": [-1.0], "n_iters": [0],
                "f": [None, (lambda X: np.zeros(2), "f must map")], "f_log": [(lambda x: np.ones(3), "f_log")],
                "log_every": [0], "rng": [-1], "callback": [3]}, ()),
    "ranking_oracle": (lambda f, Y, k: rs.ranking_oracle(f)(Y, k), dict(f=SQUARES, Y=np.ones((4, 2)), k=2),
                       {"f": [None, (lambda Y: np.ones(2), "f must map")], "Y": [np.ones(3), [[np.nan, 1.0]]],
                        "k": [0, 5, 1.5]}, ()),
    "n_pairs": (rs.n_pairs, dict(m=5, k=2), {"m": [1, 2.0], "k": [0, 6]}, ()),
    "dag_pairs": (rs.dag_pairs, dict(order=[1, 0], m=3), {"m": [1, "3"]}, ("order",)),
    "rank_coefficients": (rs.rank_coefficients, dict(order=[1, 0], m=3),
                          {"order": [[3], [-1], [0.5], np.zeros((2, 0), int), [0, 1, 2, 0]], "m": [1]}, ("order",)),
    "rank_direction": (rs.rank_direction, dict(xi=np.ones((3, 2)), order=[1]),
                       {"xi": [np.ones(3), (np.ones((2, 3, 2)), "xi must be")], "order": [[5]]}, ("xi", "order")),
    "line_search_step": (rs.line_search_step, dict(rank=RANK, x=np.ones((1, 6)), d=np.ones((1, 6)),
                                                   probe=np.ones((1, 6)), lr=0.1, n_trials=2),
                         {"x": [np.ones(6)], "d": [np.ones((2, 6))], "probe": [np.ones((1, 5))], "lr": [-1.0],
                          "n_trials": [0]}, ("rank",)),
    "mean_coefficient": (rs.mean_coefficient, dict(m=4, k=2), {"m": [1], "k": [5, 0]}, ()),
    "effective_directions": (rs.effective_directions, dict(m=4, k=2), {"m": [1.5], "k": [0]}, ()),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


# --- the chapter's claim: other seeds and sizes, and wrong variants that must fail it ------------

RANK_COEFFICIENTS, RANK_DIRECTION, RANKING_ORACLE = rs.rank_coefficients, rs.rank_direction, rs.ranking_oracle


def worst_first(order, m):
    """The ranks read worst-first inside the top k (the best probe gets the k-th best's weight)."""
    return RANK_COEFFICIENTS(np.asarray(order)[..., ::-1], m)


def ascent(xi, order):
    """The official code's ascent sign (it adds its direction) kept in a descent step."""
    return -RANK_DIRECTION(xi, order)


def oracle_that_keeps_values(f):
    """A ranking oracle that also hands out f, for the value-based line search below."""
    rank = RANKING_ORACLE(f)
    rank.f = f
    return rank


def armijo_line_search(rank, x, d, probe, lr, n_trials, c=0.1):
    """Backtracking on values: the longest trial with f(trial) <= f(x) - c * step * ||d||^2 (not on ranks)."""
    R, dim = x.shape
    steps = lr * 0.5 ** np.arange(n_trials)
    trials = x[:, None] - steps[:, None] * d[:, None]
    f_x, f_t = rank.f(x), rank.f(trials.reshape(-1, dim)).reshape(R, n_trials)
    ok = f_t <= f_x[:, None] - c * steps * np.sum(d ** 2, axis=1)[:, None]
    moved = ok.any(axis=1)
    return np.where(moved[:, None], trials[np.arange(R), np.argmax(ok, axis=1)], x), moved


MODULE = "optlab.zeroth_order.rank_sgd"
WRONG_VARIANTS = {
    "ranks read worst-first inside the top k": {f"{MODULE}.rank_coefficients": worst_first},
    "the official code's ascent sign in a descent step": {f"{MODULE}.rank_direction": ascent},
    "a value-based (Armijo) line search instead of ranking the trials": {
        f"{MODULE}.ranking_oracle": oracle_that_keeps_values, f"{MODULE}.line_search_step": armijo_line_search},
}


def test_wrong_variants_are_wrong_in_the_way_they_say():
    xi = np.random.default_rng(17).standard_normal((10, 4))
    order = np.arange(10)
    np.testing.assert_allclose(worst_first(order, 10), -RANK_COEFFICIENTS(order, 10))
    p = quadratic(dim=4, cond=2.0, rng=18)
    rank = oracle_that_keeps_values(p.f)
    x, d = np.zeros((1, 4)), -p.grad(np.zeros(4))[None]
    new, moved = armijo_line_search(rank, x, -d, x, 0.1, 3)
    assert moved.all() and p.f(new[0]) < p.f(x[0])
    assert np.allclose(ascent(xi[None], order[None, :3]), -rs.rank_direction(xi[None], order[None, :3]))


@pytest.mark.slow
def test_the_claim_holds_on_seeds_and_sizes_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS, sizes=FAST)
    assert verdict.passed and verdict.status == "holds"
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.slow
def test_the_claim_holds_in_another_dimension():
    assert run_claim(CHAPTER, seeds=CLAIM_SEEDS[:2], sizes={"DIM": 30, "N_REPLICAS": 2}).passed


@pytest.mark.slow
@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with np.errstate(all="ignore"), pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=CLAIM_SEEDS[:1], sizes=FAST, patches=WRONG_VARIANTS[variant])
