r"""Gradient-noise models for stochastic oracles: Gaussian, bounded and heavy-tailed.

A noise model is a small frozen dataclass; calling it with a shape and a
generator draws an array of centred noise, ``noise(shape, rng)``.  Adding it to
an exact (sub)gradient gives an unbiased stochastic oracle whose tails the
reader controls, which is what the last-iterate theory is about:

* :class:`gaussian`: light tails (sub-Gaussian), the textbook case;
* :class:`bounded`: almost surely bounded noise, the assumption of the older
  high-probability analyses (uniform on a box, or random signs);
* :class:`student_t`: heavy tails; with ``df`` degrees of freedom only moments
  of order ``p < df`` are finite, so ``df <= 2`` gives infinite variance.

Examples
--------
>>> noise = get_noise("student_t", df=3.0)
>>> noise
student_t(df=3.0, scale=1.0)
>>> noise((2, 3), rng=np.random.default_rng(0)).shape
(2, 3)

References
----------
Z. Liu and Z. Zhou, Revisiting the last-iterate convergence of stochastic
gradient methods, ICLR 2024, arXiv:2312.08531 (bib key ``liu2024revisiting``):
sub-Gaussian noise without a bounded domain, and heavy-tailed noise with a
finite p-th moment, 1 < p <= 2.

Book: chapters/foundations/last_iterate.ipynb
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .core import as_rng
from .validate import check_int, check_positive

__all__ = ["gaussian", "bounded", "student_t", "get_noise", "NOISES"]


def _shape(shape) -> tuple:
    if isinstance(shape, (bool, np.bool_)):
        raise TypeError("shape must be an int or a tuple of ints >= 0, got a bool")
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    return tuple(check_int(n, "shape", low=0) for n in shape)


@dataclass(frozen=True)
class gaussian:
    """Centred Gaussian noise with standard deviation ``sigma`` per coordinate."""

    sigma: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "sigma", check_positive(self.sigma, "sigma"))

    def __call__(self, shape, rng=None) -> np.ndarray:
        return self.sigma * as_rng(rng).standard_normal(_shape(shape))


@dataclass(frozen=True)
class bounded:
    """Bounded noise, ``|noise| <= scale`` per coordinate, almost surely.

    ``kind="uniform"`` draws uniformly on ``[-scale, scale]`` (variance
    ``scale**2 / 3``); ``kind="rademacher"`` draws ``+-scale`` with equal
    probability (variance ``scale**2``).
    """

    scale: float = 1.0
    kind: str = "uniform"

    def __post_init__(self):
        object.__setattr__(self, "scale", check_positive(self.scale, "scale"))
        if self.kind not in ("uniform", "rademacher"):
            raise ValueError(f"kind must be 'uniform' or 'rademacher', got {self.kind!r}")

    def __call__(self, shape, rng=None) -> np.ndarray:
        rng, shape = as_rng(rng), _shape(shape)
        if self.kind == "uniform":
            return self.scale * rng.uniform(-1.0, 1.0, size=shape)
        return self.scale * (2.0 * rng.integers(0, 2, size=shape) - 1.0)


@dataclass(frozen=True)
class student_t:
    """Heavy-tailed noise: ``scale`` times a Student-t variable with ``df`` degrees of freedom.

    Moments of order ``p < df`` are finite; the variance is
    ``scale**2 * df / (df - 2)`` for ``df > 2`` and infinite for ``df <= 2``.
    """

    df: float = 1.5
    scale: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "df", check_positive(self.df, "df"))
        object.__setattr__(self, "scale", check_positive(self.scale, "scale"))

    def __call__(self, shape, rng=None) -> np.ndarray:
        return self.scale * as_rng(rng).standard_t(self.df, size=_shape(shape))


#: Noise models by name, for :func:`get_noise`.
NOISES = {"gaussian": gaussian, "bounded": bounded, "student_t": student_t}


def get_noise(name, **kwargs):
    """A noise model by name (``"gaussian"``, ``"bounded"``, ``"student_t"``), or an instance unchanged."""
    if isinstance(name, tuple(NOISES.values())):
        return name
    if not isinstance(name, str) or name not in NOISES:
        raise ValueError(f"noise must be one of {sorted(NOISES)} or a noise instance, got {name!r}")
    return NOISES[name](**kwargs)
