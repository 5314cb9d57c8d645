r"""optlab: the methods of *Modern Optimization for Machine Learning*, once and readably.

The core pieces are imported here; each part of the book is a subpackage
(``optlab.foundations``, ...) imported on demand, so ``import optlab`` stays
light (no torch).

Book: chapters/toolkit.ipynb
"""
from . import schedules
from .core import History, Problem, Result, Trace, as_array, as_rng, as_schedule, source

__version__ = "0.1.0"

__all__ = ["Problem", "Result", "History", "Trace", "as_rng", "as_schedule", "as_array", "source",
           "schedules", "__version__"]
