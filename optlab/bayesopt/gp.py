r"""Exact Gaussian-process regression: kernels, the posterior, the marginal likelihood and its fit.

The one Gaussian process (GP) of the book, shared by both chapters of the Bayesian-optimization part.
A prior :math:`f \sim \mathcal{GP}(m, s^2 c_\ell)` with a constant mean and a stationary kernel, and
observations :math:`y_i = f(x_i) + \varepsilon_i`, :math:`\varepsilon_i \sim N(0, \lambda^2)`, give a
Gaussian posterior computed from one Cholesky factor :math:`LL^\top = K + \lambda^2 I`:

.. math::
    \mu_n(x) = m + k(x, X)\,\alpha, \quad \alpha = (K + \lambda^2 I)^{-1}(y - m), \qquad
    \Sigma_n(x, x') = k(x, x') - v(x)^\top v(x'), \quad v(x) = L^{-1} k(X, x).

* :func:`kernel_matrix`: the ARD kernels ``"matern52"`` and ``"se"`` (squared exponential);
* :class:`GP`: the posterior at fixed hyperparameters (``predict``, ``sample``, ``fantasy_means``);
* :func:`log_marginal_likelihood`: :math:`\log p(y \mid X, \theta)` and its analytic gradient in the
  log-parameters :math:`\theta = (\log\ell_1, \dots, \log\ell_d, \log s^2, \log\lambda^2)`;
* :func:`fit_gp`: maximum marginal likelihood (ML-II) by L-BFGS-B with random restarts;
* :class:`GPSurrogate`: the surrogate object the Bayesian-optimization loop takes
  (:mod:`optlab.bayesopt.loop` documents that interface).

A kernel may also be any callable ``kernel(X1, X2) -> (n1, n2)`` of fixed shape (for example the
infinite-width network kernel of the next chapter): it is then scaled by :math:`s^2` and only
:math:`s^2` and :math:`\lambda^2` are fitted.  Outputs are standardized (sample mean and standard
deviation) before fitting: the constant mean :math:`m` is the sample mean, not a fitted parameter.

References
----------
P. I. Frazier, A tutorial on Bayesian optimization, arXiv:1807.02811, 2018 (``frazier2018tutorial``),
section 3; C. E. Rasmussen and C. K. I. Williams, Gaussian Processes for Machine Learning, MIT Press,
2006 (``rasmussen2006gaussian``), Algorithm 2.1 and section 5.4.1.

Book: chapters/bayesopt/gp_bo.ipynb
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import cho_solve, solve_triangular
from scipy.optimize import minimize

from ..core import as_rng
from ..validate import check_array, check_choice, check_int, check_positive, check_real, describe

__all__ = ["KERNELS", "kernel_matrix", "log_marginal_likelihood", "GP", "fit_gp", "GPSurrogate"]

#: The built-in kernels: Matérn with smoothness 5/2 and the squared exponential, both with ARD lengthscales.
KERNELS = ("matern52", "se")
_SQRT5 = np.sqrt(5.0)


def _scaled_sq_dists(X1, X2, lengthscales):
    """Per-dimension squared differences over squared lengthscales, shape (d, n1, n2)."""
    return ((X1.T[:, :, None] - X2.T[:, None, :]) / np.asarray(lengthscales)[:, None, None]) ** 2


def _correlation(D, kernel):
    """The correlation c and its radial factor g = -(1/r) dc/dr from the scaled squared distances D (d, n1, n2)."""
    r2 = D.sum(axis=0)
    if kernel == "se":
        c = np.exp(-0.5 * r2)
        return c, c
    r = np.sqrt(r2)
    e = np.exp(-_SQRT5 * r)
    return (1.0 + _SQRT5 * r + 5.0 / 3.0 * r2) * e, 5.0 / 3.0 * (1.0 + _SQRT5 * r) * e


def kernel_matrix(X1, X2, lengthscales=None, signal_var=1.0, kernel="matern52"):
    r"""The prior covariance :math:`s^2 c_\ell(x, x')` between the rows of ``X1`` and ``X2``.

    With :math:`r^2 = \sum_i (x_i - x'_i)^2/\ell_i^2`: ``"matern52"`` is
    :math:`(1 + \sqrt5 r + \tfrac53 r^2)e^{-\sqrt5 r}` and ``"se"`` is :math:`e^{-r^2/2}`; a callable
    kernel is evaluated as it is (``lengthscales`` unused).

    >>> K = kernel_matrix(np.zeros((1, 2)), np.array([[0.0, 0.0], [1.0, 0.0]]), [1.0, 1.0], kernel="se")
    >>> np.round(K, 4).tolist()
    [[1.0, 0.6065]]
    """
    if callable(kernel):
        return signal_var * np.asarray(kernel(X1, X2), dtype=float)
    return signal_var * _correlation(_scaled_sq_dists(X1, X2, lengthscales), kernel)[0]


def _cholesky(K, jitter):
    """Cholesky factor of K, adding jitter * mean(diag K) (times 10 per retry) until it succeeds."""
    scale = float(np.mean(np.diag(K)))
    for _ in range(8):
        try:
            return np.linalg.cholesky(K + jitter * scale * np.eye(len(K)))
        except np.linalg.LinAlgError:
            jitter *= 10.0
    raise np.linalg.LinAlgError("the kernel matrix is not positive definite, even with jitter")


def _unpack(theta, d, fixed_kernel):
    """(lengthscales, signal_var, noise_var) from the log-parameters theta."""
    theta = np.asarray(theta, dtype=float)
    ell = None if fixed_kernel else np.exp(theta[:d])
    return ell, float(np.exp(theta[-2])), float(np.exp(theta[-1]))


def log_marginal_likelihood(theta, X, y, kernel="matern52", jitter=1e-10):
    r"""The log marginal likelihood :math:`\log p(y \mid X, \theta)` of a zero-mean GP and its gradient.

    :math:`-\tfrac12 y^\top K_y^{-1} y - \sum_i \log L_{ii} - \tfrac n2 \log 2\pi` with
    :math:`K_y = s^2 C + \lambda^2 I`, and
    :math:`\partial/\partial\theta_j =
    \tfrac12 \mathrm{tr}\big((\alpha\alpha^\top - K_y^{-1})\,\partial K_y/\partial\theta_j\big)`.

    Parameters
    ----------
    theta : array_like
        Log-parameters :math:`(\log\ell_1, \dots, \log\ell_d, \log s^2, \log\lambda^2)`, or
        :math:`(\log s^2, \log\lambda^2)` for a callable kernel.
    X, y : ndarray
        Inputs ``(n, d)`` and outputs ``(n,)`` (subtract the mean first).
    kernel : str or callable
    jitter : float
        Added to the diagonal, relative to its mean, for a stable Cholesky factor.

    Returns
    -------
    (float, ndarray)
        The value and its gradient in ``theta``.

    >>> X, y = np.array([[0.0], [1.0]]), np.array([1.0, -1.0])
    >>> value, grad = log_marginal_likelihood(np.log([1.0, 1.0, 0.1]), X, y)
    >>> round(value, 4), grad.shape
    (-3.5406, (3,))
    """
    n, d = X.shape
    fixed = callable(kernel)
    if not fixed:
        check_choice(kernel, "kernel", KERNELS)
    ell, s2, lam2 = _unpack(theta, d, fixed)
    if fixed:
        C = np.asarray(kernel(X, X), dtype=float)
    else:
        D = _scaled_sq_dists(X, X, ell)                 # (d, n, n): (x_i - x'_i)^2 / ell_i^2
        C, g = _correlation(D, kernel)                  # d c / d log ell_i = g * D_i
    L = _cholesky(s2 * C + lam2 * np.eye(n), jitter)    # Ky = s^2 C + lambda^2 I = L L^T
    Linv = solve_triangular(L, np.eye(n), lower=True, check_finite=False)
    Kinv = Linv.T @ Linv
    alpha = Kinv @ y
    value = -0.5 * y @ alpha - np.log(np.diag(L)).sum() - 0.5 * n * np.log(2 * np.pi)
    W = np.outer(alpha, alpha) - Kinv                   # alpha alpha^T - Ky^{-1}
    grad = 0.5 * np.array([np.sum(W * C) * s2, np.trace(W) * lam2])  # d log s^2, d log lambda^2
    if not fixed:
        grad = np.concatenate([0.5 * s2 * np.einsum("ab,iab->i", W * g, D), grad])
    return float(value), grad


class GP:
    r"""The GP posterior at fixed hyperparameters (the model a surrogate's ``fit`` returns).

    Parameters
    ----------
    X : array_like, shape (n, d)
        Inputs.
    y : array_like, shape (n,)
        Observed values.
    lengthscales : array_like of d positive floats, or None for a callable kernel
    signal_var, noise_var : float
        :math:`s^2` and :math:`\lambda^2`, in the units of ``y`` (``noise_var`` may be 0: jitter keeps
        the factor stable).
    kernel : str or callable
        ``"matern52"``, ``"se"`` or ``kernel(X1, X2) -> (n1, n2)``.
    mean : float
        The constant prior mean :math:`m`.
    jitter : float

    Examples
    --------
    >>> gp = GP([[0.0], [1.0]], [0.0, 1.0], lengthscales=[0.5], signal_var=1.0, noise_var=1e-6)
    >>> mean, var = gp.predict(np.array([[0.0], [0.5]]))
    >>> np.round(mean, 3).tolist(), bool(var[0] < 1e-5 < var[1])
    ([0.0, 0.46], True)
    """

    def __init__(self, X, y, *, lengthscales=None, signal_var=1.0, noise_var=1e-6, kernel="matern52", mean=0.0,
                 jitter=1e-10):
        self.X = check_array(X, "X", ndim=2)
        self.y = check_array(y, "y", shape=(len(self.X),))
        if not callable(kernel):
            check_choice(kernel, "kernel", KERNELS)
            lengthscales = check_array(lengthscales, "lengthscales", shape=(self.X.shape[1],))
            if np.any(lengthscales <= 0):
                raise ValueError("lengthscales must be > 0")
        self.kernel, self.lengthscales = kernel, lengthscales
        self.signal_var, self.noise_var = check_positive(signal_var, "signal_var"), check_real(noise_var, "noise_var",
                                                                                                low=0.0)
        self.mean, self.jitter = check_real(mean, "mean"), check_real(jitter, "jitter", low=0.0)
        K = kernel_matrix(self.X, self.X, lengthscales, self.signal_var, kernel)
        self.L = _cholesky(K + self.noise_var * np.eye(len(K)), jitter)
        self.alpha = cho_solve((self.L, True), self.y - self.mean)

    def _k(self, A, B):
        return kernel_matrix(A, B, self.lengthscales, self.signal_var, self.kernel)

    def predict(self, Xs, full_cov=False):
        r"""Posterior mean :math:`\mu_n` and variance (or covariance) of the latent :math:`f` at ``Xs`` ``(m, d)``."""
        Xs = check_array(Xs, "Xs", shape=(None, self.X.shape[1]))
        Ks = self._k(Xs, self.X)
        mean = self.mean + Ks @ self.alpha
        V = solve_triangular(self.L, Ks.T, lower=True)
        if full_cov:
            return mean, self._k(Xs, Xs) - V.T @ V
        if callable(self.kernel):  # k(x, x) of a fixed-shape kernel: its own diag() if it has one
            diag = getattr(self.kernel, "diag", lambda Z: np.diag(self.kernel(Z, Z)))
            prior_var = self.signal_var * np.asarray(diag(Xs), dtype=float)
        else:                      # stationary: k(x, x) = s^2
            prior_var = np.full(len(Xs), self.signal_var)
        return mean, np.maximum(prior_var - np.sum(V**2, axis=0), 0.0)

    def sample(self, Xs, n_samples, rng=None):
        """``n_samples`` joint draws of :math:`f` from the posterior at ``Xs``, shape ``(n_samples, m)``."""
        mean, cov = self.predict(Xs, full_cov=True)
        L = _cholesky(cov, max(self.jitter, 1e-10))
        Z = as_rng(rng).standard_normal((check_int(n_samples, "n_samples", low=1), len(mean)))
        return mean + Z @ L.T

    def fantasy_means(self, X, Y, A):
        r"""Posterior means at ``A`` after one more observation, ``Y[i, j]`` at ``X[i]``: ``(m, J, len(A))``.

        Refits the posterior on :math:`(x_1, \dots, x_n, X_i)` with one Cholesky factor per row of
        ``X`` (``(m, d)``, batched) and the ``J`` values of ``Y`` (``(m, J)``) as right-hand sides: the
        simulation of Algorithm 2 of the tutorial, an independent check of the rank-one update that
        :func:`optlab.bayesopt.acquisition.knowledge_gradient` uses.
        """
        X = check_array(X, "X", shape=(None, self.X.shape[1]))
        Y = check_array(Y, "Y", shape=(len(X), None))
        A = check_array(A, "A", shape=(None, self.X.shape[1]))
        m, n = len(X), len(self.X)
        Kp = np.empty((m, n + 1, n + 1))
        Kp[:, :n, :n] = self._k(self.X, self.X)
        Kp[:, :n, n] = Kp[:, n, :n] = self._k(X, self.X)
        Kp[:, n, n] = np.diag(self._k(X, X))
        Kp += self.noise_var * np.eye(n + 1)
        scale = np.mean(np.diagonal(Kp, axis1=1, axis2=2), axis=1)[:, None, None]
        Lp = np.linalg.cholesky(Kp + self.jitter * scale * np.eye(n + 1))
        R = np.concatenate([np.broadcast_to(self.y[None, :, None], (m, n, Y.shape[1])), Y[:, None, :]],
                           axis=1) - self.mean                          # (m, n + 1, J)
        alpha = np.linalg.solve(np.swapaxes(Lp, 1, 2), np.linalg.solve(Lp, R))
        KA = np.concatenate([np.broadcast_to(self._k(A, self.X), (m, len(A), n)),
                             self._k(A, X).T[:, :, None]], axis=2)      # (m, |A|, n + 1)
        return self.mean + np.swapaxes(KA @ alpha, 1, 2)


def fit_gp(X, y, *, kernel="matern52", noise_var=None, n_restarts=2, rng=None, lengthscale_bounds=(1e-2, 1e1),
           signal_bounds=(1e-2, 1e2), noise_bounds=(1e-6, 1e1), jitter=1e-10) -> GP:
    r"""Fit the hyperparameters by maximum marginal likelihood (ML-II) and return the posterior.

    The outputs are standardized; :math:`\theta` (log-parameters, in standardized units) maximizes
    :func:`log_marginal_likelihood` by L-BFGS-B with its analytic gradient, from a fixed start
    (lengthscales 0.3, :math:`s^2 = 1`, :math:`\lambda^2 = 10^{-3}`) and ``n_restarts`` starts drawn
    uniformly in the (log) bounds; the best wins.  ``noise_var`` (in the units of ``y``) fixes
    :math:`\lambda^2` instead of fitting it.

    Returns
    -------
    GP
        In the units of ``y``; its ``log_ml`` attribute is the maximized value (standardized units).

    >>> X = np.linspace(0, 1, 8)[:, None]
    >>> gp = fit_gp(X, np.sin(6 * X[:, 0]), rng=0)
    >>> bool(gp.noise_var < 1e-3), bool(0.1 < gp.lengthscales[0] < 1.0)
    (True, True)
    """
    X = check_array(X, "X", ndim=2)
    y = check_array(y, "y", shape=(len(X),))
    if not callable(kernel):
        check_choice(kernel, "kernel", KERNELS)
    n_restarts, rng = check_int(n_restarts, "n_restarts", low=0), as_rng(rng)
    if noise_var is not None:
        noise_var = check_real(noise_var, "noise_var", low=0.0)
    for name, (lo, hi) in (("lengthscale_bounds", lengthscale_bounds), ("signal_bounds", signal_bounds),
                           ("noise_bounds", noise_bounds)):
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
            raise ValueError(f"{name} must be (low, high) with 0 < low < high, got {describe((lo, hi))}")
    y_mean, y_std = float(np.mean(y)), float(np.std(y)) or 1.0
    ys = (y - y_mean) / y_std
    d = 0 if callable(kernel) else X.shape[1]
    bounds = np.log([lengthscale_bounds] * d + [signal_bounds, noise_bounds])
    start = np.log([0.3] * d + [1.0, 1e-3])
    if noise_var is not None:                       # a fixed noise: a zero-width bound
        bounds[-1] = start[-1] = np.log(max(noise_var / y_std**2, 1e-12))
    starts = [np.clip(start, bounds[:, 0], bounds[:, 1])]
    starts += list(rng.uniform(bounds[:, 0], bounds[:, 1], size=(n_restarts, len(start))))

    def negative(theta):
        value, grad = log_marginal_likelihood(theta, X, ys, kernel, jitter)
        return -value, -grad

    best = None
    for theta0 in starts:
        opt = minimize(negative, theta0, jac=True, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-7})
        if best is None or opt.fun < best.fun:
            best = opt
    ell, s2, lam2 = _unpack(best.x, d, callable(kernel))
    gp = GP(X, y, lengthscales=ell, signal_var=s2 * y_std**2, noise_var=lam2 * y_std**2, kernel=kernel,
            mean=y_mean, jitter=jitter)
    gp.log_ml, gp.theta = -float(best.fun), best.x
    return gp


class GPSurrogate:
    r"""The GP as a surrogate for :func:`optlab.bayesopt.loop.bayes_opt`: ``fit(X, y, rng)`` returns a :class:`GP`.

    Keeps only settings (``kernel``, ``noise_var``, ``n_restarts`` and any other keyword of
    :func:`fit_gp`), so one surrogate serves many runs and ``fit`` never changes it.

    >>> model = GPSurrogate(noise_var=1e-6).fit(np.array([[0.2], [0.8]]), np.array([1.0, 0.0]), rng=0)
    >>> [round(float(m), 3) for m in model.predict(np.array([[0.2]]))[0]]
    [1.0]
    """

    def __init__(self, kernel="matern52", noise_var=None, n_restarts=2, **options):
        if not callable(kernel):
            check_choice(kernel, "kernel", KERNELS)
        self.kernel, self.noise_var, self.n_restarts = kernel, noise_var, check_int(n_restarts, "n_restarts", low=0)
        self.options = options

    def fit(self, X, y, rng=None) -> GP:
        """Fit the hyperparameters to ``(X, y)`` and return the posterior (a new :class:`GP`)."""
        return fit_gp(X, y, kernel=self.kernel, noise_var=self.noise_var, n_restarts=self.n_restarts, rng=rng,
                      **self.options)

    def __repr__(self) -> str:
        return f"GPSurrogate(kernel={describe(self.kernel)}, noise_var={self.noise_var}, n_restarts={self.n_restarts})"
