"""Tests of optlab.networks.attention_svm, cheapest first; the chapter's claim on other seeds and wrong variants."""
import sys
from pathlib import Path

import numpy as np
import pytest

from optlab.claims import ClaimFailed
from optlab.networks import attention_svm as asvm
from optlab.testing import check_bad_inputs, check_grad, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "networks" / "attention_svm.ipynb"
# Seeds and sizes of the claim re-run here; the chapter uses seeds 0-9 with d = 10, T = 8.
CLAIM_SEEDS = list(range(500, 510))
SIZES = {"D_CLAIM": 12, "T_CLAIM": 6}

cp = pytest.importorskip("cvxpy")


def data(seed=0, n=6, T=8, d=10):
    return asvm.token_data(n, T, d, rng=seed)


# --- oracles and exact identities --------------------------------------------------------------

def test_gradient_against_finite_differences():
    D = data(3)
    d = D["X"].shape[2]
    W0 = np.random.default_rng(1).standard_normal((d, d))
    err = check_grad(lambda w: asvm.loss(w.reshape(d, d), D), lambda w: asvm.grad(w.reshape(d, d), D).ravel(),
                     W0.ravel())
    assert err < 1e-7


def test_gradient_against_torch_autograd():
    torch = pytest.importorskip("torch")
    D = data(4, n=5, T=6, d=7)
    W0 = np.random.default_rng(2).standard_normal((7, 7))
    W = torch.tensor(W0, requires_grad=True)
    X, z, v, Y = (torch.tensor(D[k]) for k in ("X", "z", "v", "Y"))
    s = torch.softmax(torch.einsum("itd,de,ie->it", X, W, z), dim=1)
    f = torch.einsum("it,itd,d->i", s, X, v)
    L = torch.nn.functional.softplus(-Y * f).mean()
    L.backward()
    assert asvm.loss(W0, D) == pytest.approx(L.item(), rel=1e-12)
    np.testing.assert_allclose(asvm.grad(W0, D), W.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_softmax_probabilities_and_tokens():
    D = data(5)
    s = asvm.softmax_probs(np.zeros((10, 10)), D)
    np.testing.assert_allclose(s, 1 / 8)
    gamma = D["Y"][:, None] * (D["X"] @ D["v"])
    assert np.array_equal(asvm.optimal_tokens(D), gamma.argmax(axis=1))
    assert asvm.correlation(np.eye(3), 2 * np.eye(3)) == pytest.approx(1.0)


def test_svm_constraints_are_tight_and_kkt_rank_is_at_most_n():
    D = data(6)
    alpha = asvm.optimal_tokens(D)
    W = asvm.att_svm(D)
    n = len(alpha)
    lhs = np.einsum("itd,de,ie->it", D["X"][np.arange(n), alpha][:, None, :] - D["X"], W, D["z"])
    other = np.arange(8)[None, :] != alpha[:, None]
    assert lhs[other].min() > 1 - 1e-6, "feasible"
    assert np.isclose(lhs[other], 1, atol=1e-5).sum() >= 1, "some constraint is active"
    sv = np.linalg.svd(W, compute_uv=False)
    assert np.sum(sv > 1e-6 * sv[0]) <= n
    Wn = asvm.att_svm(D, norm="nuc")
    assert np.linalg.norm(Wn, "nuc") <= np.linalg.norm(W, "nuc") + 1e-6
    assert np.linalg.norm(W) <= np.linalg.norm(Wn) + 1e-6


def test_frobenius_svm_matches_scikit_learn():
    """Att-SVM(F) is a bias-free hard-margin SVM on the flattened outer products (and their negatives)."""
    svm = pytest.importorskip("sklearn.svm")
    D = data(7, n=4, T=5, d=6)
    alpha = asvm.optimal_tokens(D)
    other = np.arange(5)[None, :] != alpha[:, None]
    A = np.einsum("itd,ie->itde", D["X"][np.arange(4), alpha][:, None, :] - D["X"], D["z"])[other].reshape(-1, 36)
    clf = svm.LinearSVC(fit_intercept=False, loss="hinge", C=1e6, max_iter=200000, tol=1e-10)
    clf.fit(np.vstack([A, -A]), np.r_[np.ones(len(A)), -np.ones(len(A))])
    W = asvm.att_svm(D)
    assert asvm.correlation(clf.coef_.reshape(6, 6), W) > 0.999


def test_infeasible_svm_returns_none():
    D = data(8, n=6, T=8, d=1)
    assert asvm.att_svm(D) is None


def test_projections():
    W = np.random.default_rng(0).standard_normal((5, 5))
    P = asvm.project_ball(W, 2.0, "nuc")
    assert np.linalg.norm(P, "nuc") == pytest.approx(2.0)
    Wc = cp.Variable((5, 5))
    cp.Problem(cp.Minimize(cp.sum_squares(Wc - W)), [cp.normNuc(Wc) <= 2.0]).solve(solver="CLARABEL")
    np.testing.assert_allclose(P, Wc.value, atol=1e-5)
    assert np.linalg.norm(asvm.project_ball(W, 1.0)) == pytest.approx(1.0)
    np.testing.assert_array_equal(asvm.project_ball(W, 100.0), W)


# --- convergence ------------------------------------------------------------------------------

def test_normalized_gd_on_w_aligns_with_the_frobenius_svm():
    D = data(11)
    res = asvm.attention_gd(D, np.zeros((10, 10)), lr=0.1, n_iters=2000)
    assert asvm.correlation(res.W, asvm.att_svm(D, res.tokens)) > 0.99
    assert 0.25 * 0.1 * 2000 < res.history["norm"][-1] <= 0.1 * 2000 + 1e-9, "||W_T|| <= lr T, and grows linearly"


def test_kq_gd_saturates_and_prefers_the_nuclear_svm():
    D = data(12)
    rng = np.random.default_rng(3)
    K0, Q0 = (rng.uniform(-1, 1, (10, 10)) / np.sqrt(10) for _ in range(2))
    res = asvm.attention_gd(D, {"K": K0, "Q": Q0}, lr=0.02, n_iters=3000)
    assert "saturated" in res.message and res.n_iters < 3000
    np.testing.assert_allclose(res.W, res.x["K"] @ res.x["Q"].T)
    assert res.history["p_min"][-1] > 1 - 1e-12
    cn = asvm.correlation(res.W, asvm.att_svm(D, res.tokens, norm="nuc"))
    cf = asvm.correlation(res.W, asvm.att_svm(D, res.tokens))
    assert cn > cf


def test_regularization_paths_pick_their_own_svm():
    D = data(13)
    radii = [1.0, 4.0, 16.0, 64.0]
    for norm, other in (("fro", "nuc"), ("nuc", "fro")):
        P = asvm.reg_path(D, radii, norm=norm, n_iters=200)
        tokens = asvm.selected_tokens(P[-1], D)
        own = [asvm.correlation(p, asvm.att_svm(D, tokens, norm=norm)) for p in P]
        assert own[-1] > 0.9 and own[-1] > own[0]
        assert own[-1] > asvm.correlation(P[-1], asvm.att_svm(D, tokens, norm=other))
        assert np.linalg.norm(P[-1], "fro" if norm == "fro" else "nuc") <= 64.0 + 1e-8


# --- the API contract --------------------------------------------------------------------------

START = np.zeros((10, 10))


def run(rng=None, x0=START, callback=None, n_iters=50, **kw):
    return asvm.attention_gd(data(0), x0, n_iters=n_iters, rng=rng, callback=callback, **kw)


def test_core_contract():
    check_method_contract(run, stochastic=False)


def test_result_fields_and_history():
    res = run(n_log=10)
    assert res.method == "attention_gd" and res.n_iters == 50 and res.message == "reached n_iters=50"
    assert set(res.extras) == {"W", "tokens"} and res.n_evals == {"grad": 50}
    for col in ("t", "n_evals", "f", "W", "norm", "p_min"):
        assert col in res.history.columns
    assert res.history["W"].shape[1:] == (10, 10) and res.history["f"][0] == pytest.approx(asvm.loss(START, data(0)))
    assert res.f == pytest.approx(asvm.loss(res.W, data(0)))


def test_factored_start_is_not_mutated():
    K0 = np.ones((10, 3)) * 0.1
    Q0 = K0.copy()
    res = run(x0={"K": K0, "Q": Q0})
    assert np.all(K0 == 0.1) and res.x["K"].shape == (10, 3) and res.params["param"] == "KQ"


def test_non_finite_iterates_stop_the_run(monkeypatch):
    monkeypatch.setattr(asvm, "grad", lambda W, data: np.full_like(W, np.nan))
    res = run(n_iters=20)
    assert "non-finite" in res.message and res.n_iters == 1 and np.isnan(res.f)


# --- bad input ---------------------------------------------------------------------------------

D0 = asvm.token_data(2, 3, 4, rng=0)
W0 = np.zeros((4, 4))
BAD_DATA = {"data": [{"X": np.zeros((2, 3))}, {**D0, "Y": np.array([1.0, 0.5])}, 3.0]}
BAD_INPUT = {
    "token_data": (asvm.token_data, dict(n=2, T=3, d=4), {"n": [0], "T": [1], "d": [-1], "rng": [-3]}, ("rng",)),
    "check_data": (asvm.check_data, dict(data=D0), BAD_DATA, ("data",)),
    "loss": (asvm.loss, dict(W=W0, data=D0), {"W": [np.zeros((3, 4)), [[np.nan] * 4] * 4]} | BAD_DATA, ("data",)),
    "grad": (asvm.grad, dict(W=W0, data=D0), {"W": [np.zeros(4)]} | BAD_DATA, ("data",)),
    "softmax_probs": (asvm.softmax_probs, dict(W=W0, data=D0), {"W": [np.ones((5, 5))]} | BAD_DATA, ("data",)),
    "selected_tokens": (asvm.selected_tokens, dict(W=W0, data=D0), {"W": [np.ones((5, 5))]} | BAD_DATA,
                        ("data",)),
    "optimal_tokens": (asvm.optimal_tokens, dict(data=D0), BAD_DATA, ("data",)),
    "correlation": (asvm.correlation, dict(A=np.eye(2), B=np.eye(2)), {"A": [np.zeros((2, 2))],
                                                                          "B": [np.eye(3)]}, ()),
    "att_svm": (asvm.att_svm, dict(data=D0, tokens=[0, 1], norm="fro"),
                {"tokens": [[0, 3], [0.5, 1.0], [0]], "norm": ["l1"]} | BAD_DATA, ("data", "tokens")),
    "attention_gd": (asvm.attention_gd, dict(data=D0, x0=W0, n_iters=3),
                     {"x0": [np.zeros((3, 3)), {"K": np.ones((4, 2))}, [[np.inf] * 4] * 4], "lr": [0.0, -1.0],
                      "n_iters": [0], "lam": [-1.0], "sat_tol": [2.0]} | BAD_DATA, ("data",)),
    "normalized_step": (asvm.normalized_step, dict(G=np.ones((2, 2)), x=np.zeros((2, 2)), lr=1.0),
                        {"lr": [0.0, -1.0], "lam": [-1.0], "x": [np.zeros((3, 3)), (np.ones((2, 2)),)]}, ("x",)),
    "project_ball": (asvm.project_ball, dict(W=W0, radius=1.0, norm="nuc"),
                     {"radius": [0.0, -1.0], "norm": ["l2"], "W": [np.zeros(3)]}, ()),
    "reg_path": (asvm.reg_path, dict(data=D0, radii=[1.0, 2.0], n_iters=3),
                 {"radii": [[0.0], [-1.0]], "norm": ["spectral"], "lr": [0.0], "n_iters": [0]} | BAD_DATA,
                 ("data", "radii")),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


def test_every_public_function_has_a_bad_input_row():
    assert set(BAD_INPUT) == set(asvm.__all__)


# --- the chapter's claim: other seeds, and wrong variants that must fail it ---------------------

def uncentered_softmax_jacobian(s, g):
    """The softmax derivative without its centering term: s * g instead of s * (g - s^T g)."""
    return s * g


def frobenius_ball(W, radius, norm="fro"):
    """Every regularization path projected onto the Frobenius ball, whatever the norm asked for."""
    return PROJECT(W, radius, "fro")


def frobenius_svm(data, tokens=None, *, norm="fro"):
    """The nuclear-norm SVM replaced by the Frobenius one."""
    return SVM(data, tokens, norm="fro")


PROJECT, SVM = asvm.project_ball, asvm.att_svm
MODULE = "optlab.networks.attention_svm"
WRONG_VARIANTS = {
    "the softmax derivative without its centering term": {f"{MODULE}.softmax_jacobian_vec":
                                                          uncentered_softmax_jacobian},
    "the SVM built on the globally optimal tokens instead of the selected ones": {
        f"{MODULE}.selected_tokens": lambda W, data: asvm.optimal_tokens(data)},
    "the (K, Q) path projected onto the Frobenius ball": {f"{MODULE}.project_ball": frobenius_ball},
    "the Frobenius SVM in place of the nuclear one": {f"{MODULE}.att_svm": frobenius_svm},
}


@pytest.mark.slow
def test_the_claim_holds_on_seeds_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS, sizes=SIZES)
    assert verdict.passed and verdict.status == "holds"
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.slow
@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, patches=WRONG_VARIANTS[variant])
