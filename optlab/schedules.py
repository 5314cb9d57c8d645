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
import numbers
from dataclasses import dataclass
from typing import Callable

__all__ = ["constant", "step", "inverse_sqrt", "inverse_time", "cosine", "linear_decay", "warmup"]


def _positive(name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _steps(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _t(t):
    if t < 0:
        raise ValueError(f"step t must be >= 0, got {t}")
    return t


@dataclass(frozen=True)
class constant:
    """``lr`` at every step."""

    lr: float

    def __post_init__(self):
        _positive("lr", self.lr, allow_zero=True)

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
        _positive("lr", self.lr, allow_zero=True)
        _steps("step_size", self.step_size)
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")

    def __call__(self, t: int) -> float:
        return float(self.lr * self.gamma ** (_t(t) // self.step_size))


@dataclass(frozen=True)
class inverse_sqrt:
    """``lr / sqrt(t + 1)``: the classical rate for convex Lipschitz problems."""

    lr: float

    def __post_init__(self):
        _positive("lr", self.lr, allow_zero=True)

    def __call__(self, t: int) -> float:
        return float(self.lr / math.sqrt(_t(t) + 1))


@dataclass(frozen=True)
class inverse_time:
    """``1 / (mu * (t + 1))``: the rule for ``mu``-strongly convex problems."""

    mu: float

    def __post_init__(self):
        _positive("mu", self.mu)

    def __call__(self, t: int) -> float:
        return float(1.0 / (self.mu * (_t(t) + 1)))


@dataclass(frozen=True)
class cosine:
    """Cosine decay from ``lr`` at ``t = 0`` to ``lr_min`` at ``t = n_iters`` (then flat)."""

    lr: float
    n_iters: int
    lr_min: float = 0.0

    def __post_init__(self):
        _positive("lr", self.lr, allow_zero=True)
        _steps("n_iters", self.n_iters)
        _positive("lr_min", self.lr_min, allow_zero=True)

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
        _positive("lr", self.lr, allow_zero=True)
        _steps("n_iters", self.n_iters)
        _positive("lr_end", self.lr_end, allow_zero=True)

    def __call__(self, t: int) -> float:
        frac = min(_t(t), self.n_iters) / self.n_iters
        return float(self.lr + (self.lr_end - self.lr) * frac)


@dataclass(frozen=True)
class warmup:
    """Linear warm-up over ``n_warmup`` steps, ``(t + 1) / n_warmup`` times ``schedule``, then ``schedule``."""

    schedule: Callable[[int], float]
    n_warmup: int

    def __post_init__(self):
        if not callable(self.schedule):
            raise TypeError(f"schedule must be callable t -> float, got {type(self.schedule).__name__}")
        _steps("n_warmup", self.n_warmup)

    def __call__(self, t: int) -> float:
        _t(t)
        scale = min(1.0, (t + 1) / self.n_warmup)
        return float(scale * self.schedule(t))
