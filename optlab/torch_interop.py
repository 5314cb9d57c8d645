r"""Torch interop for the chapters that train networks: generators, logging and optimizer adapters.

``import optlab`` never imports torch; this module does, so only chapters that
train networks import it.  Three pieces:

* :func:`torch_generator` turns the library's one ``rng`` argument into a seeded
  :class:`torch.Generator` (drawn from it, so the numpy and torch streams of a
  run are both reproducible from one seed);
* :func:`item` logs a tensor (or array) as a Python float;
* :func:`make_optimizer` builds a :class:`torch.optim.Optimizer` around a *pure
  step function*, the one place where a method's update is written.

The adapter pattern
-------------------
A method that trains networks writes its update once, as a function of arrays::

    def adam_step(x, g, state, *, lr, beta1, beta2, eps):
        xp = array_namespace(x)          # numpy or torch, whichever x is
        ...                              # the update, as in the chapter's equations
        return x_new, new_state

Its numpy loop (``adam(grad, x0, ...)``) calls it with arrays; its torch optimizer
is ``make_optimizer(adam_step, init_state, defaults)``, which calls it with each
parameter tensor and its gradient.  One test then checks the two step for step
(and, where one exists, against the torch or third-party optimizer), so the book's
numpy chapter and a reader's torch training loop run the same mathematics.

Examples
--------
>>> import torch
>>> from optlab.baselines import heavy_ball_step, heavy_ball_state
>>> HeavyBall = make_optimizer(heavy_ball_step, heavy_ball_state, {"lr": 0.1, "beta": 0.9}, "HeavyBall")
>>> w = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
>>> opt = HeavyBall([w], lr=0.5)
>>> (w ** 2).sum().backward(); _ = opt.step()
>>> w.detach().tolist()
[0.0, 0.0]

Book: chapters/toolkit.ipynb

References
----------
A. Paszke et al., PyTorch: an imperative style, high-performance deep learning library,
NeurIPS 2019 (``paszke2019pytorch``): the ``torch.optim.Optimizer`` interface.
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

from .core import as_rng
from .validate import check_callable, describe

__all__ = ["torch_generator", "item", "make_optimizer"]


def torch_generator(rng=None) -> torch.Generator:
    r"""A :class:`torch.Generator` seeded from ``rng`` (None, an int seed, a numpy Generator, or a torch Generator).

    >>> a, b = torch_generator(3), torch_generator(3)
    >>> bool(torch.equal(torch.rand(2, generator=a), torch.rand(2, generator=b)))
    True
    """
    if isinstance(rng, torch.Generator):
        return rng
    seed = int(as_rng(rng).integers(2**63 - 1))
    return torch.Generator().manual_seed(seed)


def item(x) -> float:
    r"""A tensor, array or number as a Python float (for logging in a :class:`~optlab.core.Trace`).

    >>> item(torch.tensor(2.5)), item(np.float32(1.5))
    (2.5, 1.5)
    """
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(f"x must hold a single number to be logged, got a tensor of shape {tuple(x.shape)}")
        return float(x.detach().item())
    if isinstance(x, numbers.Real) or (isinstance(x, np.ndarray) and x.size == 1):
        return float(x)
    raise TypeError(f"x must be a number, a 1-element array or tensor, got {describe(x)}")


def make_optimizer(step, init_state, defaults: dict, name: str = "OptlabOptimizer"):
    r"""A :class:`torch.optim.Optimizer` class that applies a pure step function to every parameter.

    Parameters
    ----------
    step : callable
        ``step(x, g, state, **hyperparameters) -> (x_new, state_new)``: the update of one
        parameter tensor ``x`` with gradient ``g``; ``state`` is a dict of tensors.  It
        must not modify its inputs.
    init_state : callable
        ``init_state(x) -> dict``: the state before the first step (zeros of ``x``'s shape, a counter).
    defaults : dict
        The hyperparameters and their default values (the keyword arguments of ``step``).
    name : str
        The class name (shown in reprs).

    Returns
    -------
    type
        An optimizer class: ``cls(params, **hyperparameters)``; unknown hyperparameters
        raise a :class:`TypeError`.  Parameters without a gradient are skipped, as in torch.
    """
    check_callable(step, "step", signature="(x, g, state, **hp) -> (x, state)")
    check_callable(init_state, "init_state", signature="x -> dict")
    if not isinstance(defaults, dict):
        raise TypeError(f"defaults must be a dict of hyperparameters, got {describe(defaults)}")

    def __init__(self, params, **hyperparameters):
        unknown = set(hyperparameters) - set(defaults)
        if unknown:
            raise TypeError(f"{name} got unknown hyperparameters {sorted(unknown)}; accepted: {sorted(defaults)}")
        torch.optim.Optimizer.__init__(self, params, {**defaults, **hyperparameters})

    @torch.no_grad()
    def step_method(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            hp = {k: group[k] for k in defaults}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(init_state(p.detach()))
                new_x, new_state = step(p.detach(), p.grad.detach(), dict(state), **hp)
                p.copy_(new_x)
                state.update(new_state)
        return loss

    return type(name, (torch.optim.Optimizer,), {"__init__": __init__, "step": step_method,
                                                 "__doc__": f"torch adapter of :func:`{step.__name__}`."})
