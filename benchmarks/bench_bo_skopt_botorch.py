"""Bayesian optimization with expected improvement: optlab against scikit-optimize's gp_minimize and BoTorch.

Same functions, budget and seeds: Branin (2-D) and Hartmann-6 (6-D, on the unit cube), 30 evaluations of which 5
form the initial design, seeds 0-19.  optlab: ``optlab.bayesopt.loop.bayes_opt`` (a Matern-5/2 GP fitted by
maximum marginal likelihood at every step, expected improvement maximized over 1024 Sobol candidates and local
polishing).  Peers, with their defaults for everything else: ``skopt.gp_minimize(acq_func="EI")`` (a
Matern-5/2 GP from scikit-learn, EI maximized by L-BFGS from sampled points), and a BoTorch loop
(``SingleTaskGP`` with its default priors and input/outcome scaling, ``fit_gpytorch_mll``, ``LogExpectedImprovement``
maximized by ``optimize_acqf`` with 5 restarts from 256 raw samples), the recipe of BoTorch's tutorials.
Quality: the median (over the seeds) of the simple regret min f - f* after 30 evaluations; lower is better.
Time: the median wall time per BO iteration (fit and acquisition; the functions cost nothing), each side timed on
the same seeds in turn.  The quick mode checks agreement where the three must agree: at the same data and
hyperparameters, the posterior means of optlab's GP and BoTorch's agree to 1e-8 and their standard deviations to
1e-6 (GPyTorch's linear-operator algebra computes the predictive variance differently: the two differ in the eighth
digit), and the expected improvement of optlab agrees with scikit-optimize's to 1e-8 and with BoTorch's to 1e-6.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
from common import Row

COMPARISON = "Bayesian optimization with expected improvement"
PEER = "scikit-optimize gp_minimize, BoTorch"
REQUIRES = ("skopt", "botorch")
SUMMARY = """
Given the same data and hyperparameters, the three compute the same GP posterior and the same expected improvement
(to rounding, and to the eighth digit for GPyTorch's variances; the quick mode checks it). As optimizers they differ
in their defaults, and the regret after 30 evaluations scatters over two orders of magnitude from seed to seed, so
the comparison runs twenty seeds (on the first five alone scikit-optimize looked sixteen times better than optlab on
Branin; on twenty it is 1.5 times better at the median, and optlab is lower on 9 of the 20 seeds). On Hartmann-6
optlab's median regret (0.35) is half scikit-optimize's (0.67) and BoTorch's is lower still (0.22; optlab is lower
on 7 of 20 seeds): there optlab is *worse* than BoTorch. We looked for the cause without finding it: the
squared-exponential kernel of BoTorch 0.18's default model (median 0.57 with optlab's loop), wider lengthscale
bounds (0.1 to 30 on the unit cube: 0.37) and eight times more acquisition candidates (0.73) do not close the gap;
what remains are BoTorch's log-normal prior on the lengthscales (a MAP fit where optlab maximizes the likelihood)
and its multi-start gradient ascent of log-EI, which we have not separated. More candidates do help on Branin
(median 3.8e-4 with 8192 instead of 1024, better than scikit-optimize), which is why the default stays at 1024: the
same change doubles the regret on Hartmann-6. Per iteration optlab was the cheapest, seven times faster than
scikit-optimize and seven to thirteen times faster than BoTorch: its fit is a few numpy lines with an analytic
gradient and its acquisition one vectorized pass over candidates, while scikit-optimize pays for scikit-learn's
general kernel machinery and BoTorch for autograd through GPyTorch and multi-start optimization of the acquisition.
BoTorch's machinery pays off beyond the book's scope: batches of points, many objectives, constraints, fantasies and
GPUs.
"""
# Twenty seeds: the regret after 30 evaluations scatters over two orders of magnitude from seed to seed, and on
# the first five seeds alone scikit-optimize looked sixteen times better on Branin than optlab; on twenty, 1.5 times.
N_INIT, N_CALLS, SEEDS = 5, 30, tuple(range(20))


def problems():
    from optlab.bayesopt.bnn_surrogates import hartmann6
    from optlab.problems import branin

    b = branin()
    return {"Branin": (b.f, np.asarray(b.bounds, float), float(b.f_star)),
            "Hartmann-6": (hartmann6, np.tile([0.0, 1.0], (6, 1)), -3.32237)}


def run_optlab(f, bounds, f_star, seed):
    from optlab.bayesopt import loop

    res = loop.bayes_opt(f, bounds, n_init=N_INIT, n_iters=N_CALLS - N_INIT, f_star=f_star, rng=seed)
    return float(np.min(res.extras["y"]) - f_star)


def run_skopt(f, bounds, f_star, seed):
    from skopt import gp_minimize

    with warnings.catch_warnings():  # scikit-learn's kernel bounds and skopt's repeated points
        warnings.simplefilter("ignore")
        res = gp_minimize(lambda x: float(f(np.asarray([x]))[0]), [tuple(b) for b in bounds], n_calls=N_CALLS,
                          n_initial_points=N_INIT, initial_point_generator="sobol", acq_func="EI",
                          random_state=seed)
    return float(np.min(res.func_vals) - f_star)


def run_botorch(f, bounds, f_star, seed):
    import torch
    from botorch.acquisition import LogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from scipy.stats import qmc

    torch.manual_seed(seed)
    d = len(bounds)
    lo, width = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
    U = qmc.Sobol(d, scramble=True, seed=seed).random(8)[:N_INIT]
    y = f(lo + width * U)
    unit = torch.tensor([[0.0] * d, [1.0] * d], dtype=torch.float64)
    for _ in range(N_CALLS - N_INIT):
        X, Y = torch.tensor(U), torch.tensor(-y)[:, None]
        gp = SingleTaskGP(X, Y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
            cand, _ = optimize_acqf(LogExpectedImprovement(gp, best_f=Y.max()), bounds=unit, q=1, num_restarts=5,
                                    raw_samples=256)
        u = cand.detach().numpy()
        U, y = np.vstack([U, u]), np.r_[y, f(lo + width * u)]
    return float(np.min(y) - f_star)


def agreement(seed=0):
    """Largest relative difference of posteriors (optlab vs BoTorch) and EI (optlab vs skopt vs BoTorch)."""
    import torch
    from botorch.acquisition import ExpectedImprovement
    from botorch.models import SingleTaskGP
    from gpytorch.kernels import MaternKernel, ScaleKernel
    from skopt.acquisition import gaussian_ei

    from optlab.bayesopt import acquisition, gp

    gen = np.random.default_rng(seed)
    X, Xs = gen.uniform(size=(12, 3)), gen.uniform(size=(200, 3))
    y = np.sin(5 * X[:, 0]) + X[:, 1] * X[:, 2]
    ell, s2, lam2 = np.array([0.3, 0.5, 0.7]), 1.3, 1e-2
    ours = gp.GP(X, y, lengthscales=ell, signal_var=s2, noise_var=lam2, jitter=0.0)
    mean, var = ours.predict(Xs)
    sd, best = np.sqrt(var), float(y.min())
    ei = acquisition.expected_improvement(mean, sd, best)

    class Wrapped:  # skopt's acquisition asks a model for predict(X, return_std=True)
        def predict(self, Z, return_std=False):
            m, v = ours.predict(Z)
            return (m, np.sqrt(v)) if return_std else m

    ei_skopt = gaussian_ei(Xs, Wrapped(), y_opt=best, xi=0.0)
    covar = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=3))
    model = SingleTaskGP(torch.tensor(X), torch.tensor(-y)[:, None], covar_module=covar, outcome_transform=None)
    model.covar_module.base_kernel.lengthscale = torch.tensor(ell)[None, :]
    model.covar_module.outputscale = torch.tensor(s2)
    model.likelihood.noise = torch.tensor([lam2])
    model.mean_module.constant.data.fill_(0.0)
    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BoTorch recommends LogEI for optimizing; here only the value is compared
        post = model.posterior(torch.tensor(Xs))
        b_mean, b_sd = -post.mean.numpy()[:, 0], np.sqrt(post.variance.numpy()[:, 0])
        b_ei = ExpectedImprovement(model, best_f=-best)(torch.tensor(Xs)[:, None, :]).numpy()
    rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))  # noqa: E731
    return {"mean": rel(mean, b_mean), "sd": rel(sd, b_sd), "ei_skopt": rel(ei, ei_skopt), "ei_botorch": rel(ei, b_ei)}


def quartiles(values) -> str:
    return ", ".join(f"{q:.1e}" for q in np.quantile(values, [0.25, 0.5, 0.75]))


def wins(regret, peer) -> int:
    return int(np.sum(np.asarray(regret["optlab"]) < np.asarray(regret[peer])))


def run(quick: bool = False) -> list:
    if quick:
        agree = agreement()
        assert agree["mean"] < 1e-8 and agree["ei_skopt"] < 1e-8, agree
        assert agree["sd"] < 1e-6 and agree["ei_botorch"] < 1e-6, agree  # GPyTorch's variances: 8th digit
        return [Row(COMPARISON, f"{name}, 12 points in 3-D, fixed hyperparameters", f"relative difference, {name}",
                    value, 1.0) for name, value in agree.items()]
    rows = []
    for name, (f, bounds, f_star) in problems().items():
        regret = {k: [] for k in ("optlab", "skopt", "botorch")}
        seconds = {k: [] for k in regret}
        for seed in SEEDS:
            for k, fn in (("optlab", run_optlab), ("skopt", run_skopt), ("botorch", run_botorch)):
                start = time.perf_counter()
                regret[k].append(fn(f, bounds, f_star, seed))
                seconds[k].append((time.perf_counter() - start) / (N_CALLS - N_INIT))
        med = {k: float(np.median(v)) for k, v in regret.items()}
        sec = {k: float(np.median(v)) for k, v in seconds.items()}
        for peer, label in (("skopt", "scikit-optimize"), ("botorch", "BoTorch")):
            rows.append(Row(COMPARISON, f"{name}, {N_CALLS} evaluations, {len(SEEDS)} seeds",
                            f"median simple regret, against {label}", med["optlab"], med[peer], sec["optlab"],
                            sec[peer],
                            note=f"regret quartiles (25%, median, 75%) over the seeds: optlab "
                                 f"{quartiles(regret['optlab'])}; {label} {quartiles(regret[peer])}; optlab "
                                 f"lower on {wins(regret, peer)} of {len(SEEDS)} seeds",
                            extra={"regret": regret, "seconds_per_iteration": sec}))
    return rows
