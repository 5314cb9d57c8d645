r"""The test problems of the Lion-K chapter and their exact constrained optima.

:func:`box_least_squares` builds a least-squares problem whose unconstrained optimum lies far
outside the unit box; :func:`box_solution` (scipy's L-BFGS-B with bounds) and :func:`ball_solution`
(the secular equation) give the minimizers over the box and the ball that
:func:`optlab.stochastic.lion.lion_k` should reach.  None of this is the method; it is what the
chapter and the tests compare the method with.

Book: chapters/stochastic/lion.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Problem, as_rng
from ..validate import check_int, check_positive, check_real

__all__ = ["box_least_squares", "box_solution", "ball_solution"]


def box_least_squares(n_samples: int = 200, dim: int = 20, scale: float = 3.0, noise: float = 0.1,
                      rng=0) -> Problem:
    r"""Least squares :math:`f(x) = \|Ax - b\|^2/(2n)` whose unconstrained optimum lies outside the unit box.

    :math:`A` has standard normal entries, :math:`b = A x_{\rm true} + \text{noise}` with
    :math:`x_{\rm true} \sim N(0, \text{scale}^2 I)`; ``x0`` :math:`\sim N(0, 25 I)` (far outside);
    ``x_star`` is the unconstrained least-squares solution, ``L`` the largest eigenvalue of :math:`A^\top A/n`.
    """
    n, d = check_int(n_samples, "n_samples", low=1), check_int(dim, "dim", low=1)
    scale, noise, gen = check_positive(scale, "scale"), check_real(noise, "noise", low=0.0), as_rng(rng)
    A = gen.standard_normal((n, d))
    b = A @ (scale * gen.standard_normal(d)) + noise * gen.standard_normal(n)
    x0 = 5.0 * gen.standard_normal(d)

    def f(x):
        return 0.5 * float(np.sum((A @ np.asarray(x, dtype=float) - b) ** 2)) / n

    def grad(x):
        return A.T @ (A @ np.asarray(x, dtype=float) - b) / n

    x_star = np.linalg.lstsq(A, b, rcond=None)[0]
    return Problem(f"box_least_squares(n={n}, d={d})", f=f, grad=grad, x0=x0, x_star=x_star, f_star=f(x_star),
                   L=float(np.linalg.eigvalsh(A.T @ A / n).max()), info={"A": A, "b": b})


def box_solution(problem: Problem, radius: float) -> np.ndarray:
    r"""The minimizer of f over :math:`\|x\|_\infty \le r`, by scipy's L-BFGS-B with bounds (tight tolerances)."""
    from scipy.optimize import minimize

    r = check_positive(radius, "radius")
    start = np.clip(problem.x0, -r, r)
    out = minimize(problem.f, start, jac=problem.grad, method="L-BFGS-B", bounds=[(-r, r)] * problem.dim,
                   options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 20_000})
    return np.clip(out.x, -r, r)


def ball_solution(problem: Problem, radius: float) -> np.ndarray:
    r"""The minimizer of a least-squares f (:func:`box_least_squares`) over :math:`\|x\|_2 \le r`, exactly.

    With :math:`A^\top A/n = Q\,\mathrm{diag}(h)\,Q^\top`, :math:`q = Q^\top A^\top b/n`: the unconstrained solution
    if it is in the ball, else :math:`Q\,q/(h + \mu)` with :math:`\mu > 0` solving the secular equation
    :math:`\|q/(h + \mu)\|_2 = r` (scipy's ``brentq``).
    """
    from scipy.optimize import brentq

    r = check_positive(radius, "radius")
    if not {"A", "b"} <= set(getattr(problem, "info", {})):
        raise ValueError("problem must be a least-squares problem with info['A'] and info['b'] (box_least_squares)")
    A, b = problem.info["A"], problem.info["b"]
    h, Q = np.linalg.eigh(A.T @ A / len(b))
    q = Q.T @ (A.T @ b) / len(b)
    if h.min() > 0 and np.linalg.norm(q / h) <= r:
        return Q @ (q / h)
    mu = brentq(lambda u: np.linalg.norm(q / (h + u)) - r, max(-h.min(), 0.0) + 1e-15, np.linalg.norm(q) / r + 1.0,
                xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    return Q @ (q / (h + mu))
