r"""Step-size schedules: each is a small callable ``t -> float`` for ``t = 0, 1, ...``.

Pass one as ``lr`` to any method.  They are frozen dataclasses, so they print
readably (``cosine(lr=0.1, n_iters=100, lr_min=0.0)``) and compare by value.

Examples
--------
>>> s = warmup(cosine(1.0, n_iters=10), n_warmup=2)
>>> [round(s(t), 3) for t in (0, 1, 2, 9)]
[0.5, 0.976, 0.905, 0.024]

Book: chapters/toolkit.ipynb

References
----------
Loshchilov & Hutter, SGDR: stochastic gradient descent with warm restarts, ICLR 2017 (cosine).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .validate import check_callable, check_int, check_real

__all__ = ["constant", "step", "inverse_sqrt", "inverse_time", "cosine", "linear_decay", "warmup", "capped"]


def _rate(name, value):
    return check_real(value, name, low=0.0)


def _steps(name, value):
    return check_int(value, name, low=1)


def _t(t):
    return check_int(t, "t", low=0)


@dataclass(frozen=True)
class constant:
    """``lr`` at every step."""

    lr: float

    def __post_init__(self):
        _rate("lr", self.lr)

    def __call__(self, t: int) -> float:
        _t(t)
        return float(self.lr)


@dataclass(frozen=True)
class step:
    """``lr * gamma ** (t // step_size)``: multiply by ``gamma`` every ``step_size`` steps."""

    lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self):
        _rate("lr", self.lr)
        _steps("step_size", self.step_size)
        check_real(self.gamma, "gamma", low=0.0, high=1.0, low_open=True)

    def __call__(self, t: int) -> float:
        return float(self.lr * self.gamma ** (_t(t) // self.step_size))


@dataclass(frozen=True)
class inverse_sqrt:
    """``lr / sqrt(t + 1)``: the classical rate for convex Lipschitz problems."""

    lr: float

    def __post_init__(self):
        _rate("lr", self.lr)

    def __call__(self, t: int) -> float:
        return float(self.lr / math.sqrt(_t(t) + 1))


@dataclass(frozen=True)
class inverse_time:
    """``1 / (mu * (t + 1))``: the rule for ``mu``-strongly convex problems."""

    mu: float

    def __post_init__(self):
        check_real(self.mu, "mu", low=0.0, low_open=True)

    def __call__(self, t: int) -> float:
        return float(1.0 / (self.mu * (_t(t) + 1)))


@dataclass(frozen=True)
class cosine:
    """Cosine decay from ``lr`` at ``t = 0`` to ``lr_min`` at ``t = n_iters`` (then flat)."""

    lr: float
    n_iters: int
    lr_min: float = 0.0

    def __post_init__(self):
        _rate("lr", self.lr)
        _steps("n_iters", self.n_iters)
        _rate("lr_min", self.lr_min)

    def __call__(self, t: int) -> float:
        frac = min(_t(t), self.n_iters) / self.n_iters
        return float(self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * frac)))


@dataclass(frozen=True)
class linear_decay:
    """Linear decay from ``lr`` at ``t = 0`` to ``lr_end`` at ``t = n_iters`` (then flat)."""

    lr: float
    n_iters: int
    lr_end: float = 0.0

    def __post_init__(self):
        _rate("lr", self.lr)
        _steps("n_iters", self.n_iters)
        _rate("lr_end", self.lr_end)

    def __call__(self, t: int) -> float:
        frac = min(_t(t), self.n_iters) / self.n_iters
        return float(self.lr + (self.lr_end - self.lr) * frac)


@dataclass(frozen=True)
class warmup:
    """Linear warm-up over ``n_warmup`` steps, ``(t + 1) / n_warmup`` times ``schedule``, then ``schedule``."""

    schedule: Callable[[int], float]
    n_warmup: int

    def __post_init__(self):
        check_callable(self.schedule, "schedule", signature="t -> float")
        _steps("n_warmup", self.n_warmup)

    def __call__(self, t: int) -> float:
        _t(t)
        scale = min(1.0, (t + 1) / self.n_warmup)
        return float(scale * self.schedule(t))


@dataclass(frozen=True)
class capped:
    """``min(cap, schedule(t))``: a schedule that never exceeds ``cap`` (e.g. ``1/(2L)`` on an L-smooth problem)."""

    schedule: Callable[[int], float]
    cap: float

    def __post_init__(self):
        check_callable(self.schedule, "schedule", signature="t -> float")
        check_real(self.cap, "cap", low=0.0, low_open=True)

    def __call__(self, t: int) -> float:
        return float(min(self.cap, self.schedule(_t(t))))
