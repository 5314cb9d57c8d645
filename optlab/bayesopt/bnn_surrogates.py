r"""Bayesian-neural-network surrogates for the Bayesian-optimization loop.

Three surrogates that plug into :func:`optlab.bayesopt.loop.bayes_opt` next to the GP of the previous
chapter (each ``fit(X, y, rng)`` returns a model with ``predict``, ``noise_var`` and ``sample``):

* the **infinite-width BNN** (I-BNN): the GP whose kernel :class:`IBNNKernel` is the covariance of a
  deep ReLU network with Gaussian weights as its width goes to infinity (the NNGP / arc-cosine
  recursion), used through :class:`optlab.bayesopt.gp.GPSurrogate` with fixed kernel hyperparameters;
* a **deep ensemble** (:class:`EnsembleSurrogate`): a few tanh MLPs trained in torch at once, with
  batched weights, each on a random 80% of the data;
* a small **BNN sampled by Hamiltonian Monte Carlo** (:func:`hmc`, :func:`bnn_potential`,
  :class:`HMCSurrogate`), in numpy with analytic gradients, several chains vectorized.

Also the two objectives of the chapter, :func:`hartmann6` and :func:`nn_draw` (a function drawn
from a neural-network prior), and :func:`compare_bo`, the benchmark of its claim.

References
----------
Y. L. Li, T. G. J. Rudner and A. G. Wilson, A study of Bayesian neural network surrogates for Bayesian
optimization, ICLR 2024, arXiv:2305.20028 (``li2024study``); official code ``yucenli/bnn-bo``.
Y. Cho and L. Saul, Kernel methods for deep learning, NeurIPS 2009 (``cho2009kernel``), the arc-cosine
kernel; J. Lee et al., Deep neural networks as Gaussian processes, ICLR 2018, arXiv:1711.00165
(``lee2018deep``); R. M. Neal, MCMC using Hamiltonian dynamics, arXiv:1206.1901 (``neal2011mcmc``).

Book: chapters/bayesopt/bnn_surrogates.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Trace, as_rng, check_oracle
from ..validate import check_array, check_callable, check_choice, check_int, check_positive, check_real
from .gp import GPSurrogate
from .loop import bayes_opt, random_search

__all__ = ["relu_expectation", "IBNNKernel", "ibnn_monte_carlo", "hmc", "bnn_potential", "HMCSurrogate",
           "EnsembleSurrogate", "SampleModel", "hartmann6", "nn_draw", "compare_bo"]


def relu_expectation(k11, k22, k12):
    r""":math:`E[\mathrm{relu}(u)\,\mathrm{relu}(v)]`, :math:`(u, v)` Gaussian, covariance ``[[k11, k12], [k12, k22]]``.

    :math:`\frac{1}{2\pi}\sqrt{k_{11}k_{22}}\,(\sin\theta + (\pi - \theta)\cos\theta)`,
    :math:`\cos\theta = k_{12}/\sqrt{k_{11}k_{22}}` (Cho and Saul's arc-cosine kernel of degree 1).

    >>> round(float(relu_expectation(2.0, 2.0, 2.0)), 6)    # E[relu(u)^2] = var / 2
    1.0
    """
    norm = np.sqrt(k11 * k22)
    cos = np.clip(k12 / norm, -1.0, 1.0)
    theta = np.arccos(cos)
    return norm * (np.sin(theta) + (np.pi - theta) * cos) / (2.0 * np.pi)


class IBNNKernel:
    r"""The infinite-width ReLU-network kernel (NNGP) of ``depth`` hidden layers, a fixed-shape GP kernel.

    :math:`K^0(x, x') = \sigma_b^2 + \sigma_w^2\,x^\top x'/d`, then ``depth`` times
    :math:`K^{l+1}(x, x') = \sigma_b^2 + \sigma_w^2\,E[\mathrm{relu}(u)\mathrm{relu}(v)]`,
    :math:`(u, v) \sim N(0, K^l \text{ at } x, x')`.  The defaults are the official code's (depth 3,
    :math:`\sigma_w^2 = 10`, :math:`\sigma_b^2 = 1.6` for high dimensions): they are fixed, not fitted.
    ``diag`` runs the same recursion on :math:`K(x, x)` alone (:math:`O(md)`).

    >>> k = IBNNKernel()
    >>> X = np.array([[0.0, 1.0], [1.0, 1.0]])
    >>> bool(np.allclose(np.diag(k(X, X)), k.diag(X)))
    True
    """

    def __init__(self, depth=3, sigma_w2=10.0, sigma_b2=1.6):
        self.depth = check_int(depth, "depth", low=0)
        self.sigma_w2 = check_positive(sigma_w2, "sigma_w2")
        self.sigma_b2 = check_real(sigma_b2, "sigma_b2", low=0.0)

    def _recursion(self, K, k1, k2):
        w, b = self.sigma_w2, self.sigma_b2
        for _ in range(self.depth):
            K = b + w * relu_expectation(k1, k2, K)
            k1 = b + w * relu_expectation(k1, k1, k1)        # the diagonals: k / 2
            k2 = b + w * relu_expectation(k2, k2, k2)
        return K

    def __call__(self, X1, X2):
        X1, X2 = check_array(X1, "X1", ndim=2), check_array(X2, "X2", ndim=2)
        w, b, d = self.sigma_w2, self.sigma_b2, X1.shape[1]
        k1 = b + w * np.sum(X1**2, axis=1)[:, None] / d
        k2 = b + w * np.sum(X2**2, axis=1)[None, :] / d
        return self._recursion(b + w * X1 @ X2.T / d, k1, k2)

    def diag(self, X):
        X = check_array(X, "X", ndim=2)
        k = self.sigma_b2 + self.sigma_w2 * np.sum(X**2, axis=1) / X.shape[1]
        return self._recursion(k, k, k)

    def __repr__(self):
        return (f"IBNNKernel(depth={self.depth}, sigma_w2={self.sigma_w2:g}, "
                f"sigma_b2={self.sigma_b2:g})")


def ibnn_monte_carlo(X, *, depth=3, sigma_w2=10.0, sigma_b2=1.6, width=100_000, rng=None):
    r"""The kernel of :class:`IBNNKernel` estimated from one random ReLU network of ``width`` units per layer.

    Layer 1 has explicit weights :math:`N(0, \sigma_w^2/d)` and biases :math:`N(0, \sigma_b^2)`.  Given
    layer :math:`l`, the pre-activations of the units of layer :math:`l + 1` at the ``n`` inputs are
    i.i.d. Gaussian with covariance :math:`\hat K^{l+1} = \sigma_b^2 + \sigma_w^2\,
    \overline{\mathrm{relu}(h(x))\mathrm{relu}(h(x'))}` (average over the units), so they are drawn
    from it directly (the same law as explicit weights, at :math:`O(n^2)` per unit).  Returns
    :math:`\hat K` after ``depth`` hidden layers, ``(n, n)``.
    """
    X = check_array(X, "X", ndim=2)
    width, rng = check_int(width, "width", low=1), as_rng(rng)
    n, d = X.shape
    H = X @ rng.standard_normal((d, width)) * np.sqrt(sigma_w2 / d) \
        + np.sqrt(sigma_b2) * rng.standard_normal(width)                 # (n, width) pre-activations
    for layer in range(depth):
        A = np.maximum(H, 0.0)
        K = sigma_b2 + sigma_w2 * A @ A.T / width                         # covariance of the next layer
        if layer < depth - 1:
            H = np.linalg.cholesky(K + 1e-12 * np.eye(n)) @ rng.standard_normal((n, width))
    return K


def hmc(f, grad, x0, *, lr=0.05, n_leapfrog=10, n_burn=200, n_iters=300,
        target_accept=0.8, rng=None, callback=None):
    r"""Hamiltonian Monte Carlo on the potential ``f`` (minus the log density), ``C`` chains at once.

    ``x0`` is ``(C, P)``: one row per chain; ``f(X) -> (C,)`` and ``grad(X) -> (C, P)`` act row-wise.
    Each step draws a momentum :math:`p \sim N(0, I)`, runs ``n_leapfrog`` leapfrog steps of size
    :math:`\epsilon` (per chain), and accepts with probability :math:`\min(1, e^{H_0 - H_1})`,
    :math:`H = f(x) + \|p\|^2/2`.  During the ``n_burn`` first steps
    :math:`\log\epsilon \mathrel{+}= 0.1\,(a - a^*)` moves each chain's acceptance rate towards
    ``target_accept``; the ``n_iters`` steps after it are kept.

    Returns
    -------
    Result
        ``x``: the last state ``(C, P)``; ``f``: its mean potential.  Extras: ``samples``
        ``(n_iters, C, P)``, ``accept_rate`` (after burn-in, per chain), ``step_size`` ``(C,)``.
        History, one row per step: ``t``, ``n_evals``, ``f`` (mean potential), ``accept``, ``lr``.

    Notes
    -----
    Cost per step: ``n_leapfrog + 1`` gradient and 2 potential evaluations per chain.  The leapfrog
    integrator is reversible and volume preserving, so the Metropolis correction makes the chain
    exact for :math:`e^{-f}` at any :math:`\epsilon`; adapting :math:`\epsilon` is only allowed during
    burn-in.  The paper adapts the step size by dual averaging (one chain); this is a simpler
    Robbins-Monro rule.

    >>> res = hmc(lambda X: 0.5 * np.sum(X**2, 1), lambda X: X, np.zeros((4, 2)), n_burn=50, n_iters=200, rng=0)
    >>> res.samples.shape, bool(abs(res.samples.var() - 1.0) < 0.2)
    ((200, 4, 2), True)
    """
    check_callable(f, "f", signature="X (C, P) -> (C,)")
    check_callable(grad, "grad", signature="X (C, P) -> (C, P)")
    x = check_array(x0, "x0", ndim=2).copy()
    C = len(x)
    lr = check_positive(lr, "lr")
    L = check_int(n_leapfrog, "n_leapfrog", low=1)
    n_burn = check_int(n_burn, "n_burn", low=0)
    n_iters = check_int(n_iters, "n_iters", low=1)
    target = check_real(target_accept, "target_accept", low=0.0, high=1.0,
                        low_open=True, high_open=True)
    rng = as_rng(rng)
    params = {"lr": lr, "n_leapfrog": L, "n_burn": n_burn, "target_accept": target}
    trace = Trace("hmc", params, callback)
    f_c, grad_c = trace.counted("f", f), trace.counted("grad", grad)
    eps = np.full(C, lr)
    U = check_oracle(f_c, "f", x, shape=(C,))
    g = check_oracle(grad_c, "grad", x)
    samples, accepted = np.empty((n_iters, C, x.shape[1])), np.zeros(C)
    for t in range(n_burn + n_iters):
        p = rng.standard_normal(x.shape)
        H0 = U + 0.5 * np.sum(p**2, axis=1)
        xn, gn = x.copy(), g
        p = p - 0.5 * eps[:, None] * gn                      # half step in momentum
        for k in range(L):
            xn = xn + eps[:, None] * p                       # full step in position
            gn = grad_c(xn)
            p = p - (eps[:, None] if k < L - 1 else 0.5 * eps[:, None]) * gn
        Un = f_c(xn)
        with np.errstate(over="ignore", invalid="ignore"):
            log_ratio = H0 - Un - 0.5 * np.sum(p**2, axis=1)
        accept_prob = np.exp(np.minimum(np.nan_to_num(log_ratio, nan=-np.inf), 0.0))
        accept = rng.uniform(size=C) < accept_prob
        x[accept], U[accept] = xn[accept], Un[accept]
        g = np.where(accept[:, None], gn, g)
        if t < n_burn:
            eps = eps * np.exp(0.1 * (accept_prob - target))
        else:
            samples[t - n_burn], accepted = x, accepted + accept
        row = {"f": np.mean(U), "accept": np.mean(accept_prob), "lr": np.mean(eps)}
        if trace.diverged(x, t) or trace.log(t + 1, **row):
            break
    kept = max(t + 1 - n_burn, 0)
    return trace.result(x, float(np.mean(U)), n_iters=t + 1, samples=samples[:kept],
                        accept_rate=accepted / max(kept, 1), step_size=eps)


def bnn_potential(X, y, *, width=50, noise_var=0.1, prior_var=1.0):
    r"""Minus the log posterior of a one-hidden-layer tanh BNN and its analytic gradient, row-wise in the weights.

    :math:`g(x; \theta) = v^\top\tanh(W^\top x + b)/\sqrt{H} + c`, priors :math:`N(0, \text{prior\_var})`
    on every weight (the :math:`1/\sqrt H` keeps the output variance finite as ``width`` grows),
    likelihood :math:`N(g(x_i), \lambda^2)`:
    :math:`f(\theta) = \sum_i (y_i - g(x_i))^2/(2\lambda^2) + \|\theta\|^2/(2\,\text{prior\_var})`.

    Returns
    -------
    (f, grad, predict, n_params)
        ``f(T) -> (C,)``, ``grad(T) -> (C, P)`` for weights ``T`` ``(C, P)``, and ``predict(T, Xs)``
        ``(C, m)`` the network outputs.
    """
    X = check_array(X, "X", ndim=2)
    y = check_array(y, "y", shape=(len(X),))
    n, d = X.shape
    H = check_int(width, "width", low=1)
    lam2, tau2 = check_positive(noise_var, "noise_var"), check_positive(prior_var, "prior_var")

    def split(T):
        W = T[:, :d * H].reshape(-1, d, H)
        return W, T[:, d * H:d * H + H], T[:, d * H + H:d * H + 2 * H], T[:, -1]

    def predict(T, Xs):
        W, b, v, c = split(T)
        return np.einsum("cmh,ch->cm", np.tanh(Xs @ W + b[:, None, :]), v) / np.sqrt(H) + c[:, None]

    def f(T):
        return np.sum((y - predict(T, X)) ** 2, axis=1) / (2 * lam2) + np.sum(T**2, axis=1) / (2 * tau2)

    def grad(T):
        W, b, v, c = split(T)
        A = np.tanh(X @ W + b[:, None, :])                                 # (C, n, H)
        r = -(y - np.einsum("cnh,ch->cn", A, v) / np.sqrt(H) - c[:, None]) / lam2   # d f / d g
        back = r[:, :, None] * v[:, None, :] * (1 - A**2) / np.sqrt(H)     # d f / d pre-activation
        gW = np.einsum("nd,cnh->cdh", X, back).reshape(len(T), -1)
        gv = np.einsum("cn,cnh->ch", r, A) / np.sqrt(H)
        return np.hstack([gW, back.sum(axis=1), gv, r.sum(axis=1)[:, None]]) + T / tau2

    return f, grad, predict, d * H + 2 * H + 1


class SampleModel:
    r"""A posterior represented by function draws: ``predict`` gives their mean and (co)variance.

    ``draw(Xs) -> (S, m)`` evaluates every posterior sample (network) at ``Xs``; the variance is that of
    the latent function (``noise_var`` is kept apart, as the loop expects).
    """

    def __init__(self, draw, noise_var, y_mean=0.0, y_std=1.0):
        self.draw, self.noise_var = draw, float(noise_var) * y_std**2
        self.y_mean, self.y_std = y_mean, y_std

    def predict(self, Xs, full_cov=False):
        F = self.y_mean + self.y_std * self.draw(check_array(Xs, "Xs", ndim=2))
        mean = F.mean(axis=0)
        if full_cov:
            R = F - mean
            return mean, R.T @ R / len(F)
        return mean, F.var(axis=0)

    def sample(self, Xs, n_samples, rng=None):
        F = self.y_mean + self.y_std * self.draw(check_array(Xs, "Xs", ndim=2))
        return F[as_rng(rng).integers(len(F), size=check_int(n_samples, "n_samples", low=1))]


def _standardize(y):
    y = np.asarray(y, dtype=float)
    return (y - y.mean()) / (y.std() or 1.0), float(y.mean()), float(y.std() or 1.0)


class HMCSurrogate:
    r"""The HMC BNN as a surrogate: ``fit`` samples :func:`bnn_potential` by :func:`hmc` on standardized ``y``.

    ``n_chains`` chains start from small random weights; every ``thin``-th kept state of each chain
    is a posterior sample (a network), and the predictive is their mixture.
    """

    def __init__(self, width=50, noise_var=0.01, prior_var=10.0, n_chains=4, n_burn=200, n_samples=300,
                 n_leapfrog=10, lr=0.02, thin=5):
        self.width, self.n_chains = check_int(width, "width", low=1), check_int(n_chains, "n_chains", low=1)
        self.noise_var, self.prior_var = check_positive(noise_var, "noise_var"), check_positive(prior_var, "prior_var")
        self.n_burn, self.n_samples = check_int(n_burn, "n_burn", low=0), check_int(n_samples, "n_samples", low=1)
        self.n_leapfrog, self.lr, self.thin = n_leapfrog, lr, check_int(thin, "thin", low=1)

    def fit(self, X, y, rng=None):
        rng = as_rng(rng)
        ys, m, s = _standardize(check_array(y, "y", ndim=1))
        f, grad, predict, P = bnn_potential(X, ys, width=self.width, noise_var=self.noise_var,
                                            prior_var=self.prior_var)
        res = hmc(f, grad, 0.1 * rng.standard_normal((self.n_chains, P)), lr=self.lr, n_leapfrog=self.n_leapfrog,
                  n_burn=self.n_burn, n_iters=self.n_samples, rng=rng)
        T = res.samples[::self.thin].reshape(-1, P)
        model = SampleModel(lambda Xs: predict(T, Xs), self.noise_var, m, s)
        model.accept_rate = float(np.mean(res.accept_rate))
        return model

    def __repr__(self):
        return f"HMCSurrogate(width={self.width}, n_chains={self.n_chains}, n_samples={self.n_samples})"


class EnsembleSurrogate:
    r"""A deep ensemble of ``n_members`` tanh MLPs (two hidden layers), trained together in torch.

    The weights carry a leading member axis (``torch.baddbmm``), so one Adam step trains every member;
    member :math:`j` fits a random 80% of the data by the mean squared error on standardized ``y`` plus
    ``weight_decay`` times its squared weights (a MAP estimate).  The predictive is the members' mean
    and variance (the function-space spread) with the fixed ``noise_var`` apart.
    """

    def __init__(self, n_members=5, width=50, n_steps=300, lr=0.01, weight_decay=1e-3, noise_var=0.01,
                 subsample=0.8, init_scale=3.0):
        self.n_members, self.width = check_int(n_members, "n_members", low=2), check_int(width, "width", low=1)
        self.n_steps, self.lr = check_int(n_steps, "n_steps", low=1), check_positive(lr, "lr")
        self.weight_decay = check_real(weight_decay, "weight_decay", low=0.0)
        self.noise_var = check_positive(noise_var, "noise_var")
        self.subsample = check_real(subsample, "subsample", low=0.0, high=1.0, low_open=True)
        self.init_scale = check_positive(init_scale, "init_scale")

    def fit(self, X, y, rng=None):
        import torch

        from ..torch_interop import torch_generator
        rng = as_rng(rng)
        X = check_array(X, "X", ndim=2)
        ys, m, s = _standardize(check_array(y, "y", shape=(len(X),)))
        gen = torch_generator(rng)
        M, H, (n, d) = self.n_members, self.width, X.shape
        shapes = [(M, d, H), (M, 1, H), (M, H, H), (M, 1, H), (M, H, 1), (M, 1, 1)]
        scales = [self.init_scale, 1.0, 1 / np.sqrt(H), 1.0, 1 / np.sqrt(H), 0.0]   # standard deviations
        params = [(c * torch.randn(sh, generator=gen, dtype=torch.float64)).requires_grad_()
                  for sh, c in zip(shapes, scales)]
        mask = torch.as_tensor(rng.uniform(size=(M, n)) < self.subsample, dtype=torch.float64)
        Xt = torch.as_tensor(X).expand(M, n, d)
        yt = torch.as_tensor(ys)

        def net(Z):
            W1, b1, W2, b2, W3, b3 = params
            h = torch.tanh(torch.baddbmm(b1, Z, W1))
            h = torch.tanh(torch.baddbmm(b2, h, W2))
            return torch.baddbmm(b3, h, W3)[..., 0]

        opt = torch.optim.Adam(params, lr=self.lr)
        for _ in range(self.n_steps):
            opt.zero_grad()
            loss = (mask * (net(Xt) - yt) ** 2).sum() / mask.sum() \
                + self.weight_decay * sum((p**2).sum() for p in params) / M
            loss.backward()
            opt.step()

        def draw(Xs):
            with torch.no_grad():
                return net(torch.as_tensor(Xs).expand(M, *Xs.shape)).numpy()
        return SampleModel(draw, self.noise_var, m, s)

    def __repr__(self):
        return f"EnsembleSurrogate(n_members={self.n_members}, width={self.width}, n_steps={self.n_steps})"


_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(X):
    r"""The Hartmann-6 function on :math:`[0, 1]^6`, row-wise; minimum :math:`-3.32237`.

    >>> round(float(hartmann6(np.array([[0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]]))[0]), 4)
    -3.3224
    """
    X = check_array(X, "X", shape=(None, 6))
    return -np.exp(-np.einsum("ij,nij->ni", _H6_A, (X[:, None, :] - _H6_P) ** 2)) @ _H6_ALPHA


def nn_draw(d=20, width=64, rng=None):
    r"""A function drawn from a neural-network prior on :math:`[0, 1]^d`: a random tanh net with two hidden layers.

    First-layer weights :math:`N(0, 1)`, biases :math:`N(0, 1)`, later weights :math:`N(0, 1/\text{width})`.

    >>> g = nn_draw(3, 8, rng=0)
    >>> g(np.zeros((2, 3))).shape
    (2,)
    """
    d, H, rng = check_int(d, "d", low=1), check_int(width, "width", low=1), as_rng(rng)
    W1, b1 = rng.standard_normal((d, H)), rng.standard_normal(H)
    W2, b2 = rng.standard_normal((H, H)) / np.sqrt(H), rng.standard_normal(H)
    w3 = rng.standard_normal(H) / np.sqrt(H)

    def g(X):
        X = check_array(X, "X", shape=(None, d))
        return np.tanh(np.tanh(X @ W1 + b1) @ W2 + b2) @ w3
    return g


def compare_bo(problem, seeds, *, n_init=10, n_iters=20, d=20, n_candidates=512, n_random=256, noise_var=1e-4):
    r"""BO with the GP and the I-BNN against random search: normalized best-so-far curves, one row per seed.

    ``problem`` is ``"hartmann6"`` (I-BNN :math:`\sigma_b^2 = 1.3`, as the official code) or
    ``"nn_draw"`` (a new ``d``-dimensional draw per seed, :math:`\sigma_b^2 = 1.6`).  A curve is the
    best value after each evaluation (initial design included), normalized to
    :math:`(\bar f - \text{best})/s_f` with :math:`\bar f, s_f` the mean and standard deviation of the
    objective on 1024 Sobol points (not counted), so values are comparable across drawn objectives;
    larger is better.  Both surrogates fix the noise variance at ``noise_var`` (the objectives are
    deterministic) and fit the rest by ML-II.  The random-search curve is the average of ``n_random``
    independent runs of :func:`optlab.bayesopt.loop.random_search` with the same budget (one batch).

    Returns
    -------
    dict
        ``{"GP", "I-BNN", "random"}`` to ``(len(seeds), n_init + n_iters)`` arrays.
    """
    from .acquisition import sobol_design
    check_choice(problem, "problem", ("hartmann6", "nn_draw"))
    seeds = [check_int(s, "seeds", low=0) for s in np.atleast_1d(seeds).tolist()]
    n_init, n_iters = check_int(n_init, "n_init", low=1), check_int(n_iters, "n_iters", low=0)
    n_random, noise_var = check_int(n_random, "n_random", low=1), check_positive(noise_var, "noise_var")
    out = {"GP": [], "I-BNN": [], "random": []}
    n = n_init + n_iters
    sigma_b2 = 1.3 if problem == "hartmann6" else 1.6
    surrogates = {"GP": GPSurrogate(noise_var=noise_var, n_restarts=1),
                  "I-BNN": GPSurrogate(kernel=IBNNKernel(sigma_b2=sigma_b2), noise_var=noise_var,
                                       n_restarts=1, signal_bounds=(1e-6, 1e2))}
    for seed in seeds:
        obj = hartmann6 if problem == "hartmann6" else nn_draw(d, rng=np.random.default_rng((seed, 1)))
        dim = 6 if problem == "hartmann6" else d
        ref = obj(sobol_design(1024, dim, rng=np.random.default_rng((seed, 2))))
        bounds = np.tile([0.0, 1.0], (dim, 1))
        for name, sur in surrogates.items():
            res = bayes_opt(obj, bounds, surrogate=sur, n_init=n_init, n_iters=n_iters,
                            n_candidates=n_candidates, rng=seed)
            out[name].append(np.minimum.accumulate(res.y))
        rs = random_search(obj, bounds, n_evals=n_random * n, rng=seed).history["y"]
        out["random"].append(np.minimum.accumulate(rs.reshape(n_random, n), axis=1).mean(axis=0))
        for name in out:
            out[name][-1] = (ref.mean() - np.asarray(out[name][-1])) / ref.std()
    return {k: np.array(v) for k, v in out.items()}
