"""Tests of optlab.constrained.hard_constraints, cheapest first; the claim on other seeds and wrong variants."""
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize

from optlab.claims import ClaimFailed
from optlab.constrained import hard_constraints as hc
from optlab.testing import check_bad_inputs, check_grad, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "constrained" / "hard_constraints.ipynb"
# Seeds and sizes of the claim re-runs here; the chapter uses seeds 1-3, 200 Adam steps, 16 basis functions.
CLAIM_SEEDS = [7001, 7002, 7003]
FAST = {"N_STEPS": 150}
P = hc.fisher_kpp_problem(n_x=17, n_t=6, n_colloc=40, rng=0)
TH = hc.init_basis(8, rng=0)


# --- the discretization and the oracles --------------------------------------------------------

def test_reference_solves_the_discrete_equations():
    p = hc.fisher_kpp_problem(rng=1)
    assert np.max(np.abs(p.rows(p.u_ref[:, None]))) < 1e-12
    assert p.A.shape == (len(p.s), len(p.u_ref)) and len(p.colloc) == 160 + 33 + 2 * 16
    assert np.all(p.u_ref >= -1e-12) and p.u_ref.max() < 1.0  # Fisher-KPP keeps 0 <= u <= 1


def test_basis_vjp_and_loss_gradient_match_finite_differences():
    gB = np.random.default_rng(1).standard_normal((len(P.x), 8))
    assert check_grad(lambda t: np.sum(gB * hc.basis(t.reshape(3, 8), P)),
                      lambda t: hc.basis_vjp(t.reshape(3, 8), P, gB).ravel(), TH.ravel()) < 1e-7
    u = np.random.default_rng(2).uniform(0, 1, len(P.x))
    assert check_grad(lambda v: hc._loss(P, v)[0], lambda v: hc._loss(P, v)[1], u, n_dirs=20, rng=0) < 1e-7


def test_soft_gradient_matches_finite_differences():
    prm = np.vstack([TH, np.random.default_rng(3).normal(0, 0.3, 8)])
    assert check_grad(lambda t: hc.soft_loss_and_grad(t.reshape(4, 8), P)[0],
                      lambda t: hc.soft_loss_and_grad(t.reshape(4, 8), P)[1].ravel(), prm.ravel()) < 1e-6


@pytest.mark.parametrize("n_experts", [1, 2, 4])
def test_implicit_gradient_matches_finite_differences(n_experts):
    p, th = hc.fisher_kpp_problem(rng=11), hc.init_basis(16, rng=11)
    assert hc.gradient_check(th, p, n_experts) < 1e-5


def test_exact_hessian_is_the_jacobian_of_the_optimality_condition():
    """d/dw (J^T F + eps^2 w) by finite differences equals the exact Hessian, not J^T J."""
    B = hc.basis(TH, P)
    _, masks = hc.expert_masks(P, 1)
    W = np.random.default_rng(4).normal(0, 0.5, (8, 1))

    def grad(w):
        U = B @ w[:, None]
        Pr = masks * P.rows(U, P.colloc).T
        J = hc._jac(P, P.A[P.colloc] @ B, B, U, masks)
        return (J[0].T @ Pr[0]) + hc.EPS ** 2 * w

    e, w0 = 1e-6, W[:, 0]
    fd = np.stack([(grad(w0 + e * v) - grad(w0 - e * v)) / (2 * e) for v in np.eye(8)], axis=1)
    U = B @ W
    Pr = masks * P.rows(U, P.colloc).T
    J = hc._jac(P, P.A[P.colloc] @ B, B, U, masks)
    H = hc.optimality_hessian(J, B, Pr, U, P)[0]
    assert np.allclose(H, fd, rtol=1e-6, atol=1e-9 * np.abs(H).max())
    assert not np.allclose(J[0].T @ J[0], fd, rtol=1e-3, atol=1e-6 * np.abs(H).max())


def test_lm_matches_scipy_least_squares():
    B = hc.basis(TH, P)
    _, masks = hc.expert_masks(P, 1)
    W, gnorm = hc.lm_solve(B, P, masks, np.zeros((8, 1)), n_iters=60)

    def resid(w):
        return np.r_[P.rows(B @ w[:, None], P.colloc)[:, 0], hc.EPS * w]

    ref = scipy.optimize.least_squares(resid, W[:, 0] + 0.01, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert gnorm[0] < 1e-10
    np.testing.assert_allclose(0.5 * np.sum(resid(W[:, 0]) ** 2), ref.cost, rtol=1e-8)
    np.testing.assert_allclose(W[:, 0], ref.x, rtol=1e-5, atol=1e-6)


def test_experts_partition_the_rows_and_the_grid():
    owner, masks = hc.expert_masks(P, 4)
    assert masks.shape == (4, len(P.colloc)) and np.all(masks.sum(0) == 1)
    assert set(owner) == {0, 1, 2, 3} and np.all(np.diff(owner.reshape(7, 17), axis=1) >= 0)


def test_moe_experts_are_independent():
    """Each expert's coefficients equal a single-expert solve restricted to its rows."""
    B = hc.basis(TH, P)
    _, masks = hc.expert_masks(P, 2)
    W, _ = hc.lm_solve(B, P, masks, np.zeros((8, 2)), n_iters=60)
    for k in range(2):
        Wk, _ = hc.lm_solve(B, P, masks[k:k + 1], np.zeros((8, 1)), n_iters=60)
        np.testing.assert_allclose(W[:, k], Wk[:, 0], rtol=1e-8, atol=1e-10)


# --- bad input and the API contract -----------------------------------------------------------

BAD_INPUT = {
    "train": (hc.train, dict(p=P, x0=TH, n_iters=2),
              {"x0": [np.ones((2, 8)), np.ones(8), [[np.nan] * 8] * 3], "kind": ["penalty"],
               "n_experts": [0, 1.5], "lr": [0.0, -1.0], "n_iters": [0], "lm_iters": [0], "n_log": [0],
               "rng": ["seed"], "callback": [3], "p": [3]}, ()),
    "train/soft": (hc.train, dict(p=P, x0=TH, n_iters=2, kind="soft"),
                   {"n_experts": [(2, "n_experts must be 1")]}, ("p", "x0", "kind", "n_iters")),
    "fisher_kpp_problem": (hc.fisher_kpp_problem, dict(n_x=9, n_t=3, n_colloc=5),
                           {"n_x": [3, 2.5], "n_t": [0], "nu": [0.0, -1.0], "rho": [-1.0, np.nan],
                            "t_end": [0.0], "n_colloc": [0, 100], "rng": [-1]}, ()),
    "hard_loss_and_grad": (hc.hard_loss_and_grad, dict(theta=TH, p=P),
                           {"theta": [np.ones((2, 8)), [[np.inf] * 8] * 3], "p": [None], "n_experts": [0],
                            "lm_iters": [0, 2.5]}, ()),
    "soft_loss_and_grad": (hc.soft_loss_and_grad, dict(params=np.ones((4, 8)), p=P),
                           {"params": [np.ones((3, 8)), np.ones(4)], "p": [P.A]}, ()),
    "relative_l2": (hc.relative_l2, dict(u=np.ones(3), u_ref=np.ones(3)),
                    {"u": [(np.ones(4), "same shape"), np.ones((3, 1))],
                     "u_ref": [(np.zeros(3), "nonzero"), [1.0, np.nan, 1.0]]}, ()),
    "init_basis": (hc.init_basis, dict(n_basis=4), {"n_basis": [0, 2.5], "rng": ["seed"]}, ()),
    "gradient_check": (hc.gradient_check, dict(theta=TH, p=P), {"theta": [np.ones((2, 8)), np.ones(3)],
                                                                 "n_experts": [0], "step": [0.0],
                                                                 "lm_iters": [0], "p": ["kpp"]}, ()),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


def run(rng=0, x0=TH, callback=None, **kw):
    return hc.train(P, x0, kind="soft", n_iters=20, n_log=5, rng=rng, callback=callback, **kw)


def test_core_contract():
    check_method_contract(run)
    check_method_contract(lambda rng=0, x0=TH, callback=None: hc.train(P, x0, n_iters=6, n_log=3, rng=rng,
                                                                       callback=callback), stochastic=False)


def test_result_fields_and_history():
    res = hc.train(P, TH, n_experts=2, n_iters=10, n_log=5, lm_iters=3)
    assert res.method == "pinn_moe2" and res.n_iters == 10 and res.message == "reached n_iters=10"
    assert res.x.shape == (3, 8) and res.W.shape == (8, 2) and res.u.shape == P.u_ref.shape
    assert res.n_evals == {"lm_iter": 30, "loss_grad": 10}
    assert res.history["t"].tolist() == [0, 2, 4, 6, 8, 10] and res.rel_l2 == res.history["rel_l2"][-1]
    soft = hc.train(P, TH, kind="soft", n_iters=4, rng=0)
    assert soft.x.shape == (4, 8) and soft.W is None and soft.method == "pinn_soft"


def test_training_lowers_the_loss():
    for kw in (dict(kind="soft"), dict(kind="hard"), dict(kind="hard", n_experts=2)):
        res = hc.train(P, TH, n_iters=60, lr=2e-2, rng=0, **kw)
        assert res.history["f"][-1] < 0.5 * res.history["f"][0], kw


def test_non_finite_iterates_stop_the_run():
    with np.errstate(all="ignore"):
        res = hc.train(P, TH, kind="soft", n_iters=5, lr=1e308, rng=0)
    assert "non-finite" in res.message and res.n_iters < 5


# --- the chapter's claim: other seeds and sizes, and wrong variants that must fail it ------------

def gauss_newton_hessian(J, B, P, U, p):
    """The Gauss-Newton matrix J^T J + lambda I (exact only for a linear PDE)."""
    return J.transpose(0, 2, 1) @ J + 1e-3 * np.eye(B.shape[1])


def no_implicit_term(J, B, P, U, p):
    """w treated as a constant in the backward pass (an infinite matrix: a = 0)."""
    return np.broadcast_to(1e30 * np.eye(B.shape[1]), (J.shape[0],) + (B.shape[1],) * 2).copy()


def masks_without_data_rows(p, n_experts):
    """The hard layer drops the initial and boundary rows: only the PDE rows are imposed."""
    owner, masks = MASKS(p, n_experts)
    return owner, masks * (p.gamma[p.colloc] > 0)


MASKS, MODULE = hc.expert_masks, "optlab.constrained.hard_constraints"
WRONG_VARIANTS = {
    "a Gauss-Newton backward (J'J + lambda I instead of the exact Hessian)":
        {f"{MODULE}.optimality_hessian": gauss_newton_hessian},
    "no implicit term (the coefficients treated as constants)": {f"{MODULE}.optimality_hessian": no_implicit_term},
    "a hard layer without the initial and boundary rows": {f"{MODULE}.expert_masks": masks_without_data_rows},
}


@pytest.mark.parametrize("variant", ["a Gauss-Newton backward (J'J + lambda I instead of the exact Hessian)",
                                     "no implicit term (the coefficients treated as constants)"])
def test_wrong_backward_passes_fail_the_gradient_check(variant, monkeypatch):
    (target, fn), = WRONG_VARIANTS[variant].items()
    monkeypatch.setattr(hc, target.rsplit(".", 1)[1], fn)
    assert hc.gradient_check(hc.init_basis(16, rng=12), hc.fisher_kpp_problem(rng=12), 4) > 1e-3


@pytest.mark.slow
def test_the_claim_holds_on_seeds_and_sizes_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS, sizes=FAST)
    assert verdict.passed
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.slow
@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=CLAIM_SEEDS[:2], sizes=FAST, patches=WRONG_VARIANTS[variant])
