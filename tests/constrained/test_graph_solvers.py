"""Tests of optlab.constrained.graph_solvers, cheapest first; the chapter's claim on other seeds and wrong variants."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from optlab.claims import ClaimFailed
from optlab.constrained import graph_solvers as gs
from optlab.testing import check_bad_inputs, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "constrained" / "graph_solvers.ipynb"
# Seeds and sizes of the claim re-runs here; the chapter uses seeds 1-3, 20 graphs of 30 nodes.
CLAIM_SEEDS = [8101, 8102, 8103]
SIZES = {"N_GRAPHS": 8, "N_NODES": 50}


# --- graphs and the construction ---------------------------------------------------------------

def test_graphs():
    adj = gs.random_graph(12, in_degree=4, rng=3)
    assert adj.shape == (12, 12) and set(np.unique(adj)) == {0.0, 1.0}
    assert np.all(adj.sum(axis=1) == 4) and np.all(np.diag(adj) == 0)
    star = gs.star_graph(16)
    assert star.sum() == 16 and np.all(star[0, 1:] == 1)
    np.testing.assert_array_equal(gs.star_graph(16, inward=False), star.T)


def test_normalization_bounds_column_sums_not_row_sums():
    rng = np.random.default_rng(0)
    for adj in (gs.random_graph(25, rng=rng), gs.star_graph(16), gs.star_graph(16, inward=False)):
        A = gs.normalize(rng.uniform(-1, 3, adj.shape), adj)
        assert A.sum(axis=0).max() <= 1 + 1e-15 and np.all(A >= 0) and np.all(A[adj == 0] == 0)
        assert np.linalg.norm(A, 1) <= 1 + 1e-15
    A = gs.normalize(np.ones((17, 17)), gs.star_graph(16))
    assert np.linalg.norm(A, np.inf) == 16.0 and np.linalg.norm(A, 2) == pytest.approx(4.0)


def test_normalization_is_the_same_on_numpy_and_torch():
    rng = np.random.default_rng(1)
    adj, w = gs.random_graph(10, rng=rng), rng.uniform(-1, 2, (3, 10, 10))
    np.testing.assert_allclose(gs.normalize(torch.as_tensor(w), torch.as_tensor(adj)).numpy(), gs.normalize(w, adj))


# --- the fixed point -----------------------------------------------------------------------------

def test_iteration_reaches_the_direct_solve_and_scipy():
    from scipy.sparse import csr_matrix, identity
    from scipy.sparse.linalg import spsolve

    rng = np.random.default_rng(2)
    adj = gs.random_graph(40, rng=rng)
    A, b = gs.normalize(rng.random(adj.shape), adj), rng.standard_normal(40)
    res = gs.fixed_point(A, b, gamma=0.5, n_iters=200, tol=1e-13)
    ref = spsolve((identity(40) - 0.5 * csr_matrix(A)).tocsc(), b)
    assert res.converged and res.message == "step below tol"
    np.testing.assert_allclose(res.x, ref, atol=1e-12) and np.testing.assert_allclose(res.h_direct, ref)
    assert res.n_evals == {"matvec": res.n_iters} and res.f < 1e-12


def test_banach_bound_in_l1_and_its_failure_in_linf_on_the_star():
    rng = np.random.default_rng(4)
    adj = gs.random_graph(30, rng=rng)
    h = gs.fixed_point(gs.normalize(rng.uniform(0, 2, adj.shape), adj), rng.standard_normal(30), gamma=0.7,
                       n_iters=40, tol=1e-15).history
    assert np.all(h["err_l1"] <= h["bound_l1"])
    assert np.allclose(h["bound_l1"][1:] / h["bound_l1"][:-1], 0.7)
    star = gs.fixed_point(gs.normalize(np.ones((17, 17)), gs.star_graph(16)), np.ones(17), gamma=0.5,
                          n_iters=5, tol=1e-15)
    h = star.history
    assert h["err_linf"][1] == pytest.approx(8.0) and h["bound_linf"][1] == pytest.approx(1.0)
    assert h["err_l1"][1] <= h["bound_l1"][1]
    assert star.norm_A == pytest.approx({"l1": 1.0, "linf": 16.0, "l2": 4.0})
    np.testing.assert_allclose(star.h_direct, np.r_[9.0, np.ones(16)])  # the centre collects 0.5 * 16


# --- the implicit gradient -----------------------------------------------------------------------

def _grads(solve, adj, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn((2,) + adj.shape, dtype=torch.float64, generator=gen).requires_grad_()
    b = torch.randn(2, len(adj), dtype=torch.float64, generator=gen).requires_grad_()
    A = gs.normalize(torch.sigmoid(logits), torch.as_tensor(adj))
    h = solve(A, b)
    (h.sin().sum()).backward()
    return logits.grad, b.grad


def test_implicit_gradient_equals_autograd_through_a_direct_solve():
    adj = gs.random_graph(15, rng=5)
    eye = torch.eye(15, dtype=torch.float64)
    got = _grads(lambda A, b: gs.implicit_fixed_point(A, b, 0.8), adj, 0)
    ref = _grads(lambda A, b: torch.linalg.solve(eye - 0.8 * A, b[..., None])[..., 0], adj, 0)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_implicit_gradient_passes_gradcheck_and_matches_finite_differences():
    A = torch.rand(6, 6, dtype=torch.float64) * 0.15
    b = torch.randn(6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda A, b: gs.implicit_fixed_point(A, b, 0.9),
                                    (A.requires_grad_(), b.requires_grad_()))


def test_the_adjoint_solves_the_transposed_system():
    rng = np.random.default_rng(6)
    adj = gs.random_graph(20, rng=rng)
    A, g = gs.normalize(rng.random(adj.shape), adj), rng.standard_normal(20)
    a = gs.adjoint_solve(torch.as_tensor(A), torch.as_tensor(g), 0.5).numpy()
    np.testing.assert_allclose(a, np.linalg.solve(np.eye(20) - 0.5 * A.T, g), atol=1e-11)


# --- the models ----------------------------------------------------------------------------------

def test_data_and_models():
    data = gs.make_graphs(4, 10, rng=0)
    W = gs.normalize(data["cond"], data["adj"])
    np.testing.assert_allclose(data["y"] - 0.8 * np.einsum("gij,gj->gi", W, data["y"]), data["x"][..., 0], atol=1e-12)
    torch.manual_seed(0)
    for model in (gs.CGS(), gs.MPNN()):
        pred = gs.predict(model, data)
        assert pred.shape == (4, 10) and np.all(np.isfinite(pred))
        bigger = gs.make_graphs(2, 25, rng=1)
        assert gs.predict(model, bigger).shape == (2, 25), "the same model runs on larger graphs"
    assert gs.r2_score([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0 and gs.r2_score([1.0, 3.0], [2.0, 2.0]) == 0.0


def test_training_lowers_the_loss_and_is_reproducible():
    data = gs.make_graphs(16, 12, rng=2)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = gs.CGS(n_heads=2, hidden=8)
        runs.append(gs.train(model, data, n_steps=40, lr=1e-2, batch_size=8, rng=3))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0][-5:].mean() < 0.5 * runs[0][:5].mean()


# --- the API contract and bad input --------------------------------------------------------------

ADJ = gs.random_graph(8, rng=0)
START = np.zeros(8)


def run(rng=0, x0=START, callback=None):
    rng = gs.as_rng(rng)
    A = gs.normalize(rng.uniform(0, 1, ADJ.shape), ADJ)
    return gs.fixed_point(A, rng.standard_normal(8), x0, gamma=0.5, n_iters=20, callback=callback)


def test_core_contract():
    res = check_method_contract(run)
    assert res.method == "fixed_point" and set(res.extras) == {"h_direct", "norm_A"}
    for col in ("t", "err_l1", "err_linf", "err_l2", "bound_l1", "bound_linf", "bound_l2", "step_l1"):
        assert col in res.history.columns


def test_non_finite_iterates_stop_the_run():
    with np.errstate(over="ignore", invalid="ignore"):
        res = gs.fixed_point(np.full((2, 2), 1e308), np.ones(2), np.full(2, 1e308), gamma=0.9, n_iters=10)
    assert "non-finite" in res.message and not res.converged


A2 = gs.normalize(np.ones((8, 8)), ADJ)
BAD_INPUT = {
    "fixed_point": (gs.fixed_point, dict(A=A2, b=np.ones(8), h0=np.zeros(8), gamma=0.5, n_iters=5, tol=1e-6),
                    {"A": [np.ones((2, 3)), np.ones(3), [[np.nan, 0.0], [0.0, 0.0]]], "b": [np.ones(3)],
                     "h0": [np.ones(7)], "gamma": [0.0, 1.0, -0.5], "n_iters": [0, 2.5], "tol": [0.0, -1.0],
                     "callback": [3]}, ()),
    "random_graph": (gs.random_graph, dict(n_nodes=6, in_degree=2, rng=0),
                     {"n_nodes": [1, 2.5], "in_degree": [0, 6], "rng": ["seed"]}, ()),
    "star_graph": (gs.star_graph, dict(n_leaves=4), {"n_leaves": [0, 1.5]}, ()),
    "make_graphs": (gs.make_graphs, dict(n_graphs=2, n_nodes=6, rng=0),
                    {"n_graphs": [0], "n_nodes": [1], "alpha": [1.0, 0.0], "p_source": [1.5], "rng": ["x"]}, ()),
    "implicit_fixed_point": (lambda **kw: gs.implicit_fixed_point(torch.zeros(2, 2), torch.ones(2), **kw),
                             dict(gamma=0.5, adjoint_tol=1e-12), {"gamma": [1.0, 0.0], "adjoint_tol": [0.0]}, ()),
    "CGS": (gs.CGS, dict(n_features=2, gamma=0.9), {"gamma": [1.0, -0.1]}, ("n_features",)),
    "MPNN": (gs.MPNN, dict(n_features=2, depth=3), {"depth": [0, 1.5]}, ("n_features",)),
    "train": (lambda **kw: gs.train(gs.MPNN(depth=1, hidden=4), gs.make_graphs(4, 5, rng=0), **kw),
              dict(n_steps=1, lr=1e-3, batch_size=2, rng=0),
              {"n_steps": [0], "lr": [-1.0], "batch_size": [0, 5], "rng": ["x"]}, ()),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


# --- the chapter's claim: other seeds and sizes, and wrong variants that must fail it ------------

def normalize_by_in_degree(weights, adj):
    """Rows instead of columns: divides by the target's in-degree, which bounds the l-inf norm instead."""
    return weights.clip(0.0, 1.0) * adj / adj.sum(-1)[..., :, None].clip(min=1.0)


def normalize_without_clipping(weights, adj):
    """The out-degree normalization with the raw weights: nothing keeps them in [0, 1]."""
    return weights * adj / adj.sum(-2)[..., None, :].clip(min=1.0)


def adjoint_with_A(A, g, gamma, tol=1e-12, max_iter=1000):
    """The adjoint iteration with A where A^T belongs: the transpose is forgotten."""
    return ADJOINT(A.transpose(-1, -2), g, gamma, tol, max_iter)


ADJOINT = gs.adjoint_solve
MODULE = "optlab.constrained.graph_solvers"
WRONG_VARIANTS = {
    "normalizing by the target's in-degree instead of the source's out-degree":
        {f"{MODULE}.normalize": normalize_by_in_degree},
    "edge weights not clipped to [0, 1]": {f"{MODULE}.normalize": normalize_without_clipping},
    "the adjoint solved with A instead of its transpose": {f"{MODULE}.adjoint_solve": adjoint_with_A},
}


@pytest.mark.slow
def test_the_claim_holds_on_seeds_and_sizes_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS, sizes=SIZES)
    assert verdict.passed and verdict.status == "holds"
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.slow
@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=CLAIM_SEEDS[:1], sizes=SIZES, patches=WRONG_VARIANTS[variant])
