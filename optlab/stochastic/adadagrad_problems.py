r"""The test problems of the AdAdaGrad chapter: softmax regression and a small network on digits.

:func:`digits_softmax` is softmax regression on scikit-learn's handwritten digits with closed-form
per-sample gradients; :func:`digits_mlp` is a small tanh network on the same data whose per-sample
gradients come from ``torch.func``.  Both return a :class:`optlab.core.Problem` whose ``info`` holds
the per-sample gradient oracle that :func:`optlab.stochastic.adadagrad.adadagrad` needs.  None of this
is the method; it is what the chapter and the tests run the method on.

References
----------
T. T.-K. Lau, H. Liu and M. Kolar, AdAdaGrad: adaptive batch size schemes for adaptive gradient methods,
arXiv:2402.11215 (``lau2024adadagrad``); the data are scikit-learn's bundled digits
(``sklearn.datasets.load_digits``).

Book: chapters/stochastic/adadagrad.ipynb
"""
from __future__ import annotations

import math

import numpy as np

from ..core import Problem, as_rng
from ..validate import check_choice, check_int, check_real

__all__ = ["digits_softmax", "digits_mlp"]


def _digits(test_size, rng):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    seed = int(as_rng(rng).integers(2**31 - 1))
    return train_test_split(X / 16.0, y, test_size=check_int(test_size, "test_size", low=10, high=1000),
                            stratify=y, random_state=seed)


def digits_softmax(l2: float = 1e-3, test_size: int = 360, rng=0) -> Problem:
    r"""Softmax regression on digits: :math:`F(x) = \frac1n\sum_i -\log p_{y_i}(z_i) + \frac{\lambda}{2}\|x\|^2`.

    :math:`z_i` is the image (pixels scaled to [0, 1]) with a 1 appended, :math:`x` the (65, 10) weights
    flattened (d = 650), :math:`p = \mathrm{softmax}(W^\top z)`. Per-sample gradients in closed form,
    :math:`\nabla f_i = \mathrm{vec}(z_i (p_i - e_{y_i})^\top) + \lambda x`; ``info``: ``per_sample_grad``,
    ``n``, ``accuracy(x, split)``. ``L`` is the bound :math:`\lambda_{\max}(Z^\top Z)/(2n) + \lambda`.
    """
    lam = check_real(l2, "l2", low=0.0)
    Xtr, Xte, ytr, yte = _digits(test_size, rng)
    data = {"train": (np.hstack([Xtr, np.ones((len(Xtr), 1))]), ytr),
            "test": (np.hstack([Xte, np.ones((len(Xte), 1))]), yte)}
    Z, y = data["train"]
    n, p, K = Z.shape[0], Z.shape[1], 10
    Y = np.eye(K)[y]

    def probs(x, Zs):
        s = Zs @ x.reshape(p, K)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def f(x):
        P = probs(x, Z)
        return float(-np.mean(np.log(P[np.arange(n), y])) + lam / 2 * x @ x)

    def grad(x):
        return (Z.T @ (probs(x, Z) - Y)).ravel() / n + lam * x

    def per_sample_grad(x, idx):
        R = probs(x, Z[idx]) - Y[idx]
        return (Z[idx][:, :, None] * R[:, None, :]).reshape(len(idx), p * K) + lam * x

    def sample_loss(x, i):
        P = probs(x, Z[i:i + 1])
        return float(-np.log(P[0, y[i]]) + lam / 2 * x @ x)

    def accuracy(x, split="test"):
        Zs, ys = data[check_choice(split, "split", ["train", "test"])]
        return float(np.mean(np.argmax(Zs @ x.reshape(p, K), axis=1) == ys))

    L = float(np.linalg.eigvalsh(Z.T @ Z).max() / (2 * n) + lam)
    return Problem("digits_softmax", f=f, grad=grad, x0=np.zeros(p * K), L=L, mu=lam,
                   info={"per_sample_grad": per_sample_grad, "n": n, "accuracy": accuracy, "l2": lam,
                         "train": data["train"], "sample_loss": sample_loss})


def digits_mlp(hidden: int = 32, l2: float = 1e-4, test_size: int = 360, rng=0) -> Problem:
    r"""A 64-``hidden``-10 tanh network on digits, cross-entropy plus :math:`\frac{\lambda}{2}\|x\|^2`, float64 torch.

    ``x`` is the flat vector of the weights and biases; ``x0`` is drawn with variance 1/fan-in from ``rng``.
    Per-sample gradients with ``torch.func`` (``vmap`` of ``grad`` of the one-sample loss); ``info``:
    ``per_sample_grad``, ``n``, ``accuracy(x, split)``, ``unflatten``. Needs torch.
    """
    import torch
    from torch.func import functional_call, vmap
    from torch.func import grad as fgrad

    hidden, lam = check_int(hidden, "hidden", low=1), check_real(l2, "l2", low=0.0)
    Xtr, Xte, ytr, yte = _digits(test_size, rng)
    net = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 10)).double()
    shapes = {k: v.shape for k, v in net.named_parameters()}
    sizes = [math.prod(s) for s in shapes.values()]
    data = {s: (torch.tensor(X), torch.tensor(y)) for s, X, y in (("train", Xtr, ytr), ("test", Xte, yte))}
    Z, y = data["train"]

    def unflatten(x):
        x = torch.as_tensor(x, dtype=torch.float64)
        return {k: c.view(s) for (k, s), c in zip(shapes.items(), torch.split(x, sizes))}

    def loss(params, z, t):
        out = functional_call(net, params, (z,))
        reg = sum((w * w).sum() for w in params.values())
        return torch.nn.functional.cross_entropy(out, t) + lam / 2 * reg

    def one(params, z, t):
        return loss(params, z[None], t[None])

    per_sample = vmap(fgrad(one), in_dims=(None, 0, 0))

    def f(x):
        with torch.no_grad():
            return float(loss(unflatten(x), Z, y))

    def grad(x):
        gs = fgrad(loss)(unflatten(x), Z, y)
        return torch.cat([v.reshape(-1) for v in gs.values()]).numpy()

    def per_sample_grad(x, idx):
        idx = torch.as_tensor(idx)
        gs = per_sample(unflatten(x), Z[idx], y[idx])
        return torch.cat([v.reshape(len(idx), -1) for v in gs.values()], dim=1).numpy()

    def accuracy(x, split="test"):
        Zs, ys = data[check_choice(split, "split", ["train", "test"])]
        with torch.no_grad():
            return float((functional_call(net, unflatten(x), (Zs,)).argmax(1) == ys).double().mean())

    gen = as_rng(rng)
    fan_in = {"0.weight": 64, "0.bias": 64, "2.weight": hidden, "2.bias": hidden}
    x0 = np.concatenate([gen.standard_normal(math.prod(s)) / math.sqrt(fan_in[k]) for k, s in shapes.items()])
    return Problem(f"digits_mlp(hidden={hidden})", f=f, grad=grad, x0=x0,
                   info={"per_sample_grad": per_sample_grad, "n": len(y), "accuracy": accuracy, "l2": lam,
                         "train": (Xtr, ytr), "unflatten": unflatten,
                         "sample_loss": lambda params, i: one(params, Z[i], y[i])})
