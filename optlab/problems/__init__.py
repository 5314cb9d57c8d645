r"""The problem zoo: test functions, quadratics and logistic regression.

Every constructor returns an :class:`optlab.core.Problem` with its oracles
(``f``, ``grad``, and where cheap ``hvp`` and ``stoch_grad``), a start ``x0``
and the known solution ``x_star``, ``f_star``.  :data:`ZOO` maps a short name
to a constructor that needs no arguments, for a quick tour::

    for name, make in ZOO.items():
        p = make()

Examples
--------
>>> sorted(ZOO)[:3]
['ackley', 'branin', 'breast_cancer_logistic']
>>> p = ZOO["rosenbrock"]()
>>> p.dim, round(p.gap(p.x0), 4)
(2, 24.2)

Book: chapters/toolkit.ipynb
"""
from .functions import ackley, branin, rastrigin, rosenbrock
from .logistic import breast_cancer_logistic, digits_logistic, logistic_regression, synthetic_logistic
from .quadratics import least_squares, quadratic

__all__ = ["rosenbrock", "rastrigin", "ackley", "branin", "quadratic", "least_squares",
           "logistic_regression", "synthetic_logistic", "breast_cancer_logistic",
           "digits_logistic", "ZOO"]

#: Name -> constructor with default arguments (``ZOO[name]()`` builds the problem).
ZOO = {
    "rosenbrock": rosenbrock,
    "rastrigin": rastrigin,
    "ackley": ackley,
    "branin": branin,
    "quadratic": quadratic,
    "least_squares": least_squares,
    "synthetic_logistic": synthetic_logistic,
    "breast_cancer_logistic": breast_cancer_logistic,
    "digits_logistic": digits_logistic,
}
