r"""A small digits CNN for pruning, and the FLOPs of each layer: where FLOPs and weight sparsity part.

In an MLP every weight is used once per example, so removing a share :math:`s` of the weights
removes the share :math:`s` of the multiply-adds.  In a convolution a weight is used at every
output position: layer :math:`l` with :math:`N_l` kernel weights and :math:`P_l = H_{out}
W_{out}` output positions costs :math:`N_l P_l` multiply-adds per example (a dense layer has
:math:`P_l = 1`), and a pruned network keeping :math:`k_l` weights in layer :math:`l` has the
**FLOPs sparsity** (the paper's measure)

.. math:: s_{\mathrm{FLOPs}} = 1 - \frac{\sum_l k_l P_l}{\sum_l N_l P_l},

computed by :func:`optlab.networks.magnitude_pruning.flops_sparsity`.  :func:`layer_costs`
counts :math:`N_l` and :math:`P_l` of any torch module by running it once;
:func:`digits_cnn` is the chapter's CNN as a :class:`~optlab.core.Problem` over one flat
float64 vector, so the pruning rules, masked fine-tuning and gradual pruning of
:mod:`optlab.networks.magnitude_pruning` apply to it unchanged (torch computes only the
forward and backward passes); ``info["module"](x)`` rebuilds it as a ``torch.nn.Sequential``
(for ``torch.nn.utils.prune``).  This module imports torch: only the pruning chapter imports it.

References
----------
M. Gupta et al., Is complexity required for neural network pruning? A case study on global
magnitude pruning, arXiv:2209.14624 (``gupta2022globalmp``): FLOPs sparsity.

Book: chapters/networks/magnitude_pruning.ipynb
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core import Problem, as_rng
from ..validate import check_choice, check_int, describe

__all__ = ["layer_costs", "digits_cnn"]


def layer_costs(module, input_shape) -> dict:
    r"""Kernel weights :math:`N_l`, output positions :math:`P_l` and multiply-adds of each prunable layer.

    Runs ``module`` once on zeros of shape ``(1, *input_shape)`` and records every
    ``Conv2d`` (:math:`P_l = H_{out} W_{out}`) and ``Linear`` (:math:`P_l = 1`) in call order.

    Returns
    -------
    dict
        ``names`` (module names), ``weights`` :math:`N_l`, ``positions`` :math:`P_l` and
        ``flops`` :math:`N_l P_l` (multiply-adds per example), the last three int arrays.

    >>> conv = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)
    >>> c = layer_costs(torch.nn.Sequential(conv), (16, 8, 8))
    >>> c["weights"].tolist(), c["positions"].tolist(), c["flops"].tolist()
    ([4608], [16], [73728])
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {describe(module)}")
    if not isinstance(input_shape, (tuple, list)) or not input_shape:
        raise ValueError(f"input_shape must be a tuple of positive ints (no batch axis), got {describe(input_shape)}")
    shape = tuple(check_int(n, "input_shape", low=1) for n in input_shape)
    names = {m: n for n, m in module.named_modules()}
    rows, hooks = [], []

    def hook(m, inputs, out):
        pos = int(np.prod(out.shape[2:])) if isinstance(m, torch.nn.Conv2d) else 1
        rows.append((names[m], int(m.weight.numel()), pos))

    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            p = next(module.parameters(), None)
            module(torch.zeros((1, *shape), dtype=torch.float64 if p is None else p.dtype))
    finally:
        for h in hooks:
            h.remove()
    if not rows:
        raise ValueError("module has no Conv2d or Linear layer to count")
    N, P = (np.array([r[i] for r in rows]) for i in (1, 2))
    return {"names": [r[0] for r in rows], "weights": N, "positions": P, "flops": N * P}


def digits_cnn(channels=(8, 16), n_train: int = 1200, batch_size: int = 64, rng=0) -> Problem:
    r"""A two-convolution ReLU CNN on scikit-learn's 8x8 digits, as a Problem over a flat vector.

    Layers: 3x3 convolution 1 -> ``channels[0]`` (padding 1, 8x8 positions), 3x3 convolution
    ``channels[0]`` -> ``channels[1]`` with stride 2 (4x4 positions), a dense layer
    ``16 channels[1]`` -> 10; ReLU between them; He initialization
    :math:`N(0, 2/\text{fan-in})`, zero biases.  The vector ``x`` holds each layer's weights
    (torch's C order) then its bias; a random train/test split of ``n_train`` /
    ``1797 - n_train`` images drawn from ``rng``.

    Returns
    -------
    Problem
        ``f``, ``grad``: mean training cross-entropy and its gradient (float64 torch autograd);
        ``stoch_grad(x, rng)``: a minibatch of ``batch_size``.  ``info``: ``layers`` (slices of
        the weights, the prunable part), ``fan_out`` (output channels or units), ``fan_in``,
        ``positions`` :math:`P_l`, ``flops`` :math:`N_l P_l`, ``accuracy(x, split="test")``
        ``module(x)``, a ``torch.nn.Sequential`` (float64) holding ``x``, and ``data``
        (``{"train": (X, y), "test": (X, y)}``, tensors).

    >>> p = digits_cnn(n_train=100)
    >>> [sl.stop - sl.start for sl in p.info["layers"]], p.info["positions"].tolist()
    ([72, 1152, 2560], [64, 16, 1])
    """
    from sklearn.datasets import load_digits

    if not isinstance(channels, (tuple, list)) or len(channels) != 2:
        raise ValueError(f"channels must be two positive ints (the two convolutions), got {describe(channels)}")
    c1, c2 = (check_int(c, "channels", low=1) for c in channels)
    n, bs = check_int(n_train, "n_train", low=1, high=1796), check_int(batch_size, "batch_size", low=1)
    gen = as_rng(rng)
    X, y = load_digits(return_X_y=True)
    perm = gen.permutation(len(y))
    X = torch.from_numpy(X.reshape(-1, 1, 8, 8) / 16.0)
    y = torch.from_numpy(y)
    Xtr, ytr, Xte, yte = X[perm[:n]], y[perm[:n]], X[perm[n:]], y[perm[n:]]
    shapes = [(c1, 1, 3, 3), (c2, c1, 3, 3), (10, 16 * c2)]
    layers, start = [], 0
    for s in shapes:
        layers.append(slice(start, start + int(np.prod(s))))
        start += int(np.prod(s)) + s[0]                     # weights, then biases

    def params(t):
        return [(t[sl].view(s), t[sl.stop:sl.stop + s[0]]) for sl, s in zip(layers, shapes)]

    def logits(t, Xb):
        (W1, b1), (W2, b2), (W3, b3) = params(t)
        h = F.relu(F.conv2d(Xb, W1, b1, padding=1))
        h = F.relu(F.conv2d(h, W2, b2, stride=2, padding=1))
        return F.linear(h.flatten(1), W3, b3)

    def loss_grad(x, Xb, yb):
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        loss = F.cross_entropy(logits(t, Xb), yb)
        loss.backward()
        return float(loss.detach()), t.grad.numpy()

    def loss(x):
        with torch.no_grad():
            return float(F.cross_entropy(logits(torch.as_tensor(x, dtype=torch.float64), Xtr), ytr))

    def accuracy(x, split: str = "test"):
        Xb, yb = {"test": (Xte, yte), "train": (Xtr, ytr)}[check_choice(split, "split", ("test", "train"))]
        with torch.no_grad():
            pred = logits(torch.as_tensor(x, dtype=torch.float64), Xb).argmax(dim=1)
        return float((pred == yb).double().mean())

    def stoch_grad(x, rng):
        idx = torch.from_numpy(as_rng(rng).choice(n, size=min(bs, n), replace=False))
        return loss_grad(x, Xtr[idx], ytr[idx])[1]

    def module(x):
        net = torch.nn.Sequential(torch.nn.Conv2d(1, c1, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.Conv2d(c1, c2, 3, stride=2, padding=1), torch.nn.ReLU(),
                                  torch.nn.Flatten(), torch.nn.Linear(16 * c2, 10)).double()
        with torch.no_grad():
            for m, (W, b) in zip((net[0], net[2], net[5]), params(torch.as_tensor(x, dtype=torch.float64))):
                m.weight.copy_(W)
                m.bias.copy_(b)
        return net

    fan_in = np.array([int(np.prod(s[1:])) for s in shapes])
    x0 = np.zeros(start)
    for sl, k in zip(layers, fan_in):
        x0[sl] = gen.standard_normal(sl.stop - sl.start) * np.sqrt(2.0 / k)
    costs = layer_costs(module(x0), (1, 8, 8))
    info = {"layers": layers, "fan_out": [c1, c2, 10], "fan_in": fan_in.tolist(),
            "positions": costs["positions"], "flops": costs["flops"], "accuracy": accuracy,
            "module": module, "data": {"train": (Xtr, ytr), "test": (Xte, yte)}}
    return Problem(f"digits_cnn({c1}-{c2})", f=loss, grad=lambda x: loss_grad(x, Xtr, ytr)[1], x0=x0,
                   stoch_grad=stoch_grad, info=info)
