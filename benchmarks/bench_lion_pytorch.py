"""Lion: optlab's torch adapter (one pure step, ``lion_k_step``) against the ``lion-pytorch`` optimizer.

Same network, same initial weights, same full-batch gradients, same hyperparameters (lr 1e-3, betas
(0.9, 0.99), weight decay 0.1, decay multiplied by the learning rate in both): a tanh MLP trained on
scikit-learn's bundled digits (1797 images, 10 classes).  Quality: the training loss after the same number
of steps (lower is better); in float64 the two optimizers compute the same iterates (to rounding, checked
here and in the quick mode); in float32 they agree up to rare sign flips of a momentum entry that rounds
near zero, each moving one weight by 2 lr.  Time: one optimizer step on given gradients (the median over
repeats, the two optimizers alternating), and, for scale, one forward and backward pass of the same
network.  Two sizes: a small net (the step is Python overhead) and a wide one (the step is memory traffic).
"""
from __future__ import annotations

import statistics
import time

import numpy as np
from common import Row

COMPARISON = "Lion optimizer"
PEER = "lion-pytorch Lion"
REQUIRES = ("torch", "lion_pytorch", "sklearn")
SUMMARY = """
In float64 optlab's `torch_optimizer` (the pure step `lion_k_step` behind `make_optimizer`) and `lion_pytorch.Lion`
compute the same weights: about 1e-15 apart after 200 full-batch steps (the quick mode asserts 1e-12). In float32
they round differently (`x - lr (sign(c) + wd x)` against lion-pytorch's `x (1 - lr wd)` followed by `- lr
sign(c)`), so the weights drift apart at the level of float32 rounding, and one weight can differ by 2 lr wherever a
momentum entry rounds to either side of zero; the training losses agree to five digits. **optlab is slower per
step** (on the wide network, 85 002 float32 weights, two to two and a half times the time): its pure step builds
about ten new tensors the size of each parameter (the interpolation, its sign, the decay, the new weights, the new
momentum) and then copies the weights back, where lion-pytorch updates in place with two temporaries, and at this
size a step is memory traffic. On the small network (2 410 weights) both steps are mostly Python overhead, and the
ratio ranged from 0.8 to 2.3 over our runs on this shared, loaded machine. The trade-off is the book's: one update,
written once as the chapter's equations, drives both the numpy loop and the torch optimizer and is tested against
both. In training the gap is small: one forward and backward pass of the wide network costs thirty to forty of lion-
pytorch's steps, so optlab's slower step adds a few percent to a training step. A reader training large models
should use lion-pytorch (or a fused implementation).
"""
HP = {"lr": 1e-3, "weight_decay": 0.1}
BETAS = (0.9, 0.99)


def _data(dtype, n=None):
    import torch
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return torch.tensor(X[:n] / 16.0, dtype=dtype), torch.tensor(y[:n])


def _net(widths, dtype, seed=0):
    """A tanh MLP with the given layer widths, initialized from ``seed`` (the same weights for both sides)."""
    import torch

    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers[:-1]).to(dtype)


def _optimizers():
    """``{side: params -> optimizer}`` for optlab and the peer, with the same hyperparameters."""
    from lion_pytorch import Lion

    from optlab.stochastic import lion

    return {"optlab": lambda ps: lion.torch_optimizer(ps, beta1=BETAS[0], beta2=BETAS[1], **HP),
            "peer": lambda ps: Lion(ps, betas=BETAS, **HP)}


def _loss(model, X, y):
    import torch

    return torch.nn.functional.cross_entropy(model(X), y)


def train(make_opt, widths, X, y, n_steps):
    """Full-batch training for ``n_steps``: ``(final loss, flat weights)``."""
    import torch

    model = _net(widths, X.dtype)
    opt = make_opt(model.parameters())
    for _ in range(n_steps):
        opt.zero_grad()
        _loss(model, X, y).backward()
        opt.step()
    with torch.no_grad():
        return float(_loss(model, X, y)), torch.cat([p.reshape(-1) for p in model.parameters()]).numpy()


def step_times(widths, X, y, n_steps=50, repeats=9):
    """Median seconds of one optimizer step on fixed gradients, per side, and of one forward-backward pass."""
    models, opts = {}, {}
    for side, make in _optimizers().items():
        models[side] = _net(widths, X.dtype)
        _loss(models[side], X, y).backward()            # gradients stay fixed: the step alone is timed
        opts[side] = make(models[side].parameters())
    times = {"optlab": [], "peer": [], "backward": []}
    for _ in range(repeats):                            # alternate, so that load bursts hit both sides
        for side, opt in opts.items():
            start = time.perf_counter()
            for _ in range(n_steps):
                opt.step()
            times[side].append((time.perf_counter() - start) / n_steps)
        start = time.perf_counter()
        for _ in range(3):
            _loss(models["peer"], X, y).backward()
        times["backward"].append((time.perf_counter() - start) / 3)
    return {k: statistics.median(v) for k, v in times.items()}


def run(quick: bool = False) -> list:
    import torch

    torch.set_num_threads(1)
    opts = _optimizers()
    if quick:
        # identical iterates: a small net, float64, 30 steps on 200 images
        X, y = _data(torch.float64, n=200)
        (l1, w1), (l2, w2) = (train(make, (64, 16, 10), X, y, 30) for make in opts.values())
        diff = float(np.abs(w1 - w2).max())
        assert diff < 1e-12 and abs(l1 - l2) < 1e-12, (diff, l1, l2)
        return [Row(COMPARISON, "MLP 64-16-10 on 200 digits, float64", "max |w_optlab - w_peer|", diff, 1.0)]

    rows = []
    for widths, dtype, n_steps in (((64, 32, 10), torch.float64, 200), ((64, 256, 256, 10), torch.float32, 30)):
        X, y = _data(dtype)
        (l1, w1), (l2, w2) = (train(make, widths, X, y, n_steps) for make in opts.values())
        diff = float(np.abs(w1 - w2).max())
        if dtype == torch.float64:
            assert diff < 1e-10, diff
        t = step_times(widths, X, y)
        n_params = w1.size
        name = "-".join(map(str, widths))
        rows.append(Row(COMPARISON, f"MLP {name} ({n_params} weights) on digits, {str(dtype)[6:]}, {n_steps} steps",
                        "training loss (time: one optimizer step)", l1, l2, t["optlab"], t["peer"],
                        note=f"max weight difference {diff:.1e}; step {t['optlab'] * 1e3:.2f} ms against "
                             f"{t['peer'] * 1e3:.2f} ms, one forward-backward pass {t['backward'] * 1e3:.1f} ms",
                        extra={"max_weight_difference": diff, "backward_seconds": t["backward"],
                               "n_params": n_params}))
    return rows
