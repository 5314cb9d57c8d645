"""The gradient-noise models, re-exported: they live in :mod:`optlab.noise` (shared by many chapters).

Book: chapters/foundations/last_iterate.ipynb

References
----------
See :mod:`optlab.noise`.
"""
from ..noise import NOISES, bounded, gaussian, get_noise, student_t

__all__ = ["gaussian", "bounded", "student_t", "get_noise", "NOISES"]
