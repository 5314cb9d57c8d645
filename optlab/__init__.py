r"""optlab: the methods of *Modern Optimization for Machine Learning*, once and readably.

The core pieces are imported here; each part of the book is a subpackage
(``optlab.foundations``, ...) imported on demand, so ``import optlab`` stays
light: no torch (the chapters that train networks import
:mod:`optlab.torch_interop` themselves) and no scikit-learn.

Book: chapters/toolkit.ipynb
"""
from . import claims, noise, prox, rates, schedules, validate
from .core import (
                   History,
                   Problem,
                   Result,
                   Trace,
                   array_namespace,
                   as_array,
                   as_batch,
                   as_rng,
                   as_schedule,
                   check_rowwise,
                   geometric_steps,
                   quantile_names,
                   replica_stats,
                   source,
                   step_at,
)

__version__ = "0.1.0"

__all__ = ["Problem", "Result", "History", "Trace", "as_rng", "as_schedule", "step_at", "as_array", "as_batch",
           "check_rowwise", "replica_stats", "quantile_names", "geometric_steps", "array_namespace", "source",
           "claims", "noise", "prox", "rates", "schedules", "validate", "__version__"]
