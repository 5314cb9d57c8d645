r"""The network that the DeepZero chapter trains: a ReLU MLP on a flat parameter vector, in torch.

The zeroth-order estimators of :mod:`optlab.zeroth_order.estimators` see a network
only through its loss on a minibatch as a function of *all* its parameters
:math:`\theta \in \mathbb R^d`, evaluated on a batch of parameter vectors at once.
This module provides that oracle for a fully connected ReLU network with the
softmax cross-entropy loss, and what the chapter compares it with:

* :func:`layout` and :func:`init_params`: where each layer's weights and biases sit in
  :math:`\theta` (per layer, the weight matrix row by row, then the bias) and a He-normal start;
* :func:`batch_loss` and :func:`loss_oracle`: the loss at ``n`` parameter vectors in one batched
  tensor computation (the *forward parallelization* of the paper: every perturbed forward
  pass of one gradient estimate is one tensor operation);
* :func:`backprop_grad`: the first-order gradient by ``torch.autograd`` (the reference);
* :func:`accuracy` and :func:`digits_split`: evaluation, and scikit-learn's digits.

Everything is float64 (the chapter compares estimates with backpropagation to 1e-10).
torch is imported here, so ``import optlab`` stays free of it.

References
----------
A. Chen et al., DeepZero, ICLR 2024, arXiv:2310.02025 (``chen2024deepzero``).

Book: chapters/zeroth_order/deepzero.ipynb
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

from ..core import as_rng
from ..validate import check_array, check_choice, check_int, describe

__all__ = ["layout", "n_params", "check_sizes", "init_params", "batch_loss", "loss_oracle", "backprop_grad",
           "accuracy", "cge_flops", "rge_flops", "digits_split", "check_data", "check_coords", "cross_entropy",
           "LOSS_FLOPS"]


def check_sizes(sizes) -> tuple:
    """Layer widths ``(n_0, ..., n_L)``: at least two ints >= 1 (inputs first, classes last)."""
    if isinstance(sizes, (str, bytes)) or not np.iterable(sizes):
        raise TypeError(f"sizes must be a sequence of layer widths (ints >= 1), got {describe(sizes)}")
    sizes = tuple(sizes)
    if len(sizes) < 2 or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
                                 for n in sizes):
        raise ValueError(f"sizes must be at least two layer widths, ints >= 1, got {describe(sizes)}")
    return tuple(int(n) for n in sizes)


def layout(sizes) -> list:
    r"""Per layer ``m``: ``(start, n_out, n_in)``, its weight ``W_m`` at ``theta[start:start + n_out n_in]``
    (row-major) and its bias right after.

    >>> layout((3, 2, 2))
    [(0, 2, 3), (8, 2, 2)]
    """
    sizes, out, start = check_sizes(sizes), [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        out.append((start, n_out, n_in))
        start += n_out * n_in + n_out
    return out


def n_params(sizes) -> int:
    """The number of parameters :math:`d` of the MLP (weights and biases)."""
    return sum(n_out * n_in + n_out for _, n_out, n_in in layout(sizes))


def init_params(sizes, rng=None) -> np.ndarray:
    r"""He-normal weights (standard deviation :math:`\sqrt{2/n_{in}}`) and zero biases, as one vector.

    >>> init_params((3, 2, 2), rng=0).shape
    (14,)
    """
    gen, theta = as_rng(rng), np.zeros(n_params(sizes))
    for start, n_out, n_in in layout(sizes):
        theta[start:start + n_out * n_in] = gen.standard_normal(n_out * n_in) * np.sqrt(2.0 / n_in)
    return theta


def check_data(X, y, sizes, name: str = "X"):
    """``X`` of shape ``(n, n_0)`` and integer labels ``y`` in ``[0, n_L)``, as float64 and int64 tensors."""
    sizes = check_sizes(sizes)
    X = check_array(X, name, shape=(None, sizes[0]))
    label = "y" if name == "X" else name.replace("X", "y")
    y_arr = check_array(y, label, shape=(len(X),))
    if not np.all((y_arr == np.round(y_arr)) & (y_arr >= 0) & (y_arr < sizes[-1])):
        raise ValueError(f"{label} must hold class labels, ints in [0, {sizes[-1]}), got {y_arr[:5].tolist()}...")
    return torch.from_numpy(X), torch.from_numpy(y_arr.astype(np.int64))


def check_coords(coords, d: int) -> np.ndarray:
    """Sorted distinct coordinate indices in ``[0, d)`` (all of them for None)."""
    d = check_int(d, "d", low=1)
    if coords is None:
        return np.arange(d)
    S = np.unique(check_array(coords, "coords", ndim=1, min_size=0).astype(int))
    if S.size and (S.min() < 0 or S.max() >= d):
        raise ValueError(f"coords must be indices in [0, {d}), got {S.min()} to {S.max()}")
    return S


def _unflatten(Theta: torch.Tensor, sizes) -> list:
    """``(n, d)`` parameter vectors as per-layer ``(W (n, out, in), b (n, out))`` views."""
    return [(Theta[:, s:s + o * i].reshape(-1, o, i), Theta[:, s + o * i:s + o * i + o])
            for s, o, i in layout(sizes)]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy over the batch axis (the one before the classes): ``(..., B, C) -> (...)``."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a float torch tensor (..., B, C), got {describe(logits)}")
    if not isinstance(y, torch.Tensor) or y.is_floating_point():
        raise TypeError(f"y must be a torch tensor of integer labels, got {describe(y)}")
    picked = logits.gather(-1, y.expand(logits.shape[:-1])[..., None])[..., 0]
    return (torch.logsumexp(logits, dim=-1) - picked).mean(-1)


def _forward(Theta: torch.Tensor, X: torch.Tensor, sizes) -> torch.Tensor:
    """Logits ``(n, B, C)`` of ``n`` networks on one batch: the first layer as one matrix product."""
    layers = _unflatten(Theta, sizes)
    W, b = layers[0]
    z = (X @ W.reshape(-1, W.shape[-1]).T).reshape(len(X), len(Theta), -1).transpose(0, 1) + b[:, None, :]
    for W, b in layers[1:]:
        z = torch.baddbmm(b[:, None, :], torch.relu(z), W.transpose(1, 2))
    return z


def batch_loss(Theta, X, y, sizes) -> np.ndarray:
    r"""The minibatch loss :math:`\ell(\theta_k) = \frac1B\sum_b \mathrm{CE}(\mathrm{MLP}_{\theta_k}(x_b), y_b)`
    at each row of ``Theta`` ``(n, d)``: ``(n,)`` values from one batched forward pass.

    >>> theta = init_params((4, 3, 2), rng=0)
    >>> batch_loss(np.vstack([theta, theta]), np.ones((5, 4)), np.zeros(5), (4, 3, 2)).shape
    (2,)
    """
    Xt, yt = check_data(X, y, sizes)
    Theta = check_array(Theta, "Theta", shape=(None, n_params(sizes)), finite=False)
    with torch.no_grad():
        return cross_entropy(_forward(torch.from_numpy(Theta), Xt, sizes), yt).numpy()


def loss_oracle(X, y, sizes):
    r"""``f(Theta) -> (n,)``: the loss on one fixed minibatch, the oracle of every zeroth-order estimate.

    Row-wise on ``(n, d)`` batches, as :mod:`optlab.zeroth_order.estimators` requires.
    """
    Xt, yt, sizes = *check_data(X, y, sizes), check_sizes(sizes)

    def f(Theta):
        with torch.no_grad():
            return cross_entropy(_forward(torch.as_tensor(np.asarray(Theta, dtype=float)), Xt, sizes), yt).numpy()

    return f


def backprop_grad(theta, X, y, sizes) -> np.ndarray:
    r"""The exact gradient :math:`\nabla\ell(\theta)` of the minibatch loss, by ``torch.autograd``."""
    Xt, yt = check_data(X, y, sizes)
    th = torch.tensor(check_array(theta, "theta", shape=(n_params(sizes),))[None], requires_grad=True)
    cross_entropy(_forward(th, Xt, sizes), yt)[0].backward()
    return th.grad[0].numpy()


def accuracy(theta, X, y, sizes) -> float:
    """The share of rows of ``X`` whose largest logit is the label."""
    Xt, yt = check_data(X, y, sizes)
    th = torch.from_numpy(check_array(theta, "theta", shape=(n_params(sizes),))[None])
    with torch.no_grad():
        return float((_forward(th, Xt, sizes)[0].argmax(-1) == yt).double().mean())


#: FLOPs per class of the softmax cross-entropy of one sample (max, subtract, exp, sum).
LOSS_FLOPS = 4


def _full_flops(sizes) -> list:
    """Per layer, the FLOPs per sample of the dense layer and its ReLU (none on the output layer)."""
    L = len(sizes) - 1
    return [2 * sizes[m] * sizes[m + 1] + (sizes[m + 1] if m < L - 1 else 0) for m in range(L)]


def rge_flops(sizes, n_dirs: int) -> int:
    r"""Forward FLOPs per sample of one RGE with ``n_dirs`` directions: ``n_dirs + 1`` full passes.

    A random direction moves every weight, so nothing of the unperturbed pass can be reused.
    """
    sizes, q = check_sizes(sizes), check_int(n_dirs, "n_dirs", low=1)
    return (q + 1) * (sum(_full_flops(sizes)) + LOSS_FLOPS * sizes[-1])


def cge_flops(sizes, coords=None, reuse: str = "unit") -> int:
    r"""Forward FLOPs per sample of one CGE on ``coords`` (the unperturbed pass included).

    ``reuse="none"``: every query is a full pass; ``"layer"``: a query starts at the perturbed
    layer's input (the paper's feature reuse); ``"unit"``: what
    :func:`optlab.zeroth_order.deepzero.cge` computes, one unit of the perturbed layer (5 FLOPs,
    2 on the output layer), a rank-one change of the next layer (2 FLOPs per unit) and the full
    layers above.  Dense layers cost :math:`2 n_{in} n_{out}`,
    ReLUs 1 per unit, the loss :data:`LOSS_FLOPS` per class.

    >>> cge_flops((64, 8, 10), reuse="none") == rge_flops((64, 8, 10), n_params((64, 8, 10)))
    True
    """
    sizes = check_sizes(sizes)
    reuse = check_choice(reuse, "reuse", ["none", "layer", "unit"])
    full, loss, L = _full_flops(sizes), LOSS_FLOPS * sizes[-1], len(sizes) - 1
    S, total = check_coords(coords, n_params(sizes)), sum(full) + loss
    for m, (start, n_out, n_in) in enumerate(layout(sizes)):
        K = int(np.sum((S >= start) & (S < start + n_out * n_in + n_out)))
        if reuse == "none":           # every query a full pass
            per = sum(full)
        elif reuse == "layer":        # start at the perturbed layer's input
            per = sum(full[m:])
        elif m == L - 1:              # one logit moves
            per = 2
        else:                         # one unit, a rank-one change, then the layers above
            relu_next = sizes[m + 2] if m + 2 < L else 0
            per = 5 + 2 * sizes[m + 2] + relu_next + sum(full[m + 2:])
        total += K * (per + loss)
    return int(total)


def digits_split(n_train: int = 1400, rng=0):
    r"""scikit-learn's 8x8 digits, pixels scaled to [0, 1], split at random: ``X, y, X_test, y_test``.

    1797 images of 10 classes; ``n_train`` for training, the rest for testing.
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    n_train = check_int(n_train, "n_train", low=1, high=len(y) - 1)
    perm = as_rng(rng).permutation(len(y))
    X = X / 16.0
    return X[perm[:n_train]], y[perm[:n_train]], X[perm[n_train:]], y[perm[n_train:]]
