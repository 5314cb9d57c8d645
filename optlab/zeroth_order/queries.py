r"""The statistical queries of the Private-GSD chapter: 2-way marginals and range queries on a table.

A table has ``n`` rows and ``d`` columns; a column is categorical (codes ``0..k-1``) or numeric
(values in ``[0, 1]``).  A :class:`Workload` lists 2-way histograms: for a pair of categorical
columns the *marginal* (the share of rows in each cell); for a pair with a numeric column, the
numeric values cut into ``b`` equal bins, one histogram per resolution ``b`` (*range queries*: the
share of rows with ``x_c = v`` and ``a <= u < b``).  Each row falls in exactly one cell of each
histogram, which is what makes replacing a row cheap to account for (``Workload._shift``) and
the sensitivity easy to bound.

Examples
--------
>>> w = workload((2, 0), resolutions=(2,))
>>> w.answers(np.array([[0, 0.2], [1, 0.7], [1, 0.9]])).round(3).tolist()
[0.333, 0.0, 0.0, 0.667]

References
----------
T. Liu, J. Tang, G. Vietri and Z. S. Wu, ICML 2023, arXiv:2306.03257 (``liu2023generating``): the
workloads of its experiments (2-way marginals, numeric columns binned at several resolutions).

Book: chapters/zeroth_order/private_gsd.ipynb
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..validate import check_array, check_int, describe

__all__ = ["Workload", "workload"]


@dataclass(frozen=True)
class Workload:
    r"""2-way histograms over the columns of a table: which cell each row falls in, and the answers.

    ``cards[c]`` is the number of categories of column ``c``, or 0 for a numeric column in
    ``[0, 1]``; ``histograms`` lists ``(i, j, b)``: columns ``i < j``, a numeric one cut into ``b``
    equal bins (``b = 0`` when both are categorical).  Histogram ``h`` owns the query indices
    ``offsets[h]`` to ``offsets[h] + sizes[h] - 1``; the cell of codes ``(v_i, v_j)`` is
    ``offsets[h] + v_i * width_j + v_j``.  Use :func:`workload` to build every pair.
    """

    cards: tuple
    histograms: tuple

    def __post_init__(self):
        if not isinstance(self.cards, tuple) or len(self.cards) < 2:
            raise TypeError(f"cards must be a tuple of at least 2 ints, got {describe(self.cards)}")
        cards = tuple(check_int(k, "cards", low=0) for k in self.cards)
        if any(k == 1 for k in cards):
            raise ValueError("cards must be 0 (a numeric column) or >= 2 (categories) for every column")
        if not isinstance(self.histograms, tuple) or not self.histograms:
            raise TypeError(f"histograms must be a non-empty tuple of (i, j, b), got {describe(self.histograms)}")
        for hist in self.histograms:
            if not (isinstance(hist, tuple) and len(hist) == 3):
                raise TypeError(f"histograms must hold (i, j, b) triples, got {describe(hist)}")
            i, j, b = (check_int(v, "histograms", low=0) for v in hist)
            if not i < j < len(cards) or (b >= 2) != (0 in (cards[i], cards[j])):
                raise ValueError(f"histograms: ({i}, {j}, {b}) needs columns i < j < {len(cards)} and b >= 2 "
                                 "bins exactly when a numeric column is involved")
        res = np.array([[0 if cards[c] else b for c in (i, j)] for i, j, b in self.histograms])
        width = np.array([cards[j] or b for _, j, b in self.histograms])
        sizes = np.array([(cards[i] or b) * (cards[j] or b) for i, j, b in self.histograms])
        # per (column, histogram): a value becomes a code min(floor(v * scale), cap), a code moves the cell by mult
        scale, cap, mult = (np.zeros((len(cards), len(sizes))) for _ in range(3))
        for h, (i, j, _) in enumerate(self.histograms):
            for c, r, m in ((i, res[h, 0], width[h]), (j, res[h, 1], 1)):
                scale[c, h], cap[c, h], mult[c, h] = (r, r - 1, m) if r else (1, np.inf, m)
        for name, value in (("_cols", np.array([h[:2] for h in self.histograms])), ("_res", res),
                            ("_width", width), ("sizes", sizes), ("offsets", np.cumsum(sizes) - sizes),
                            ("_scale", scale), ("_cap", cap), ("_mult", mult)):
            object.__setattr__(self, name, value)

    @property
    def n_histograms(self) -> int:
        return len(self.histograms)

    @property
    def n_queries(self) -> int:
        return int(self.sizes.sum())

    def is_range(self) -> np.ndarray:
        """Per query: True for range queries (a numeric column involved), False for categorical marginals."""
        return np.repeat(self._res.max(axis=1) > 0, self.sizes)

    def check(self, X, name: str = "X", ndim: int = 2) -> np.ndarray:
        """``X`` as a float table (or a stack of tables) of this domain: codes in ``0..k-1``, numbers in [0, 1]."""
        X = check_array(X, name, ndim=ndim)
        cards = np.array(self.cards)
        if X.shape[-1] != len(cards):
            raise ValueError(f"{name} must have {len(cards)} columns (the last axis), got shape {X.shape}")
        cat = cards > 0
        if np.any(X < 0) or np.any(X[..., ~cat] > 1) or np.any(X[..., cat] >= cards[cat]) \
                or np.any(X[..., cat] != np.floor(X[..., cat])):
            raise ValueError(f"{name} must hold integer codes 0..k-1 in categorical columns and values in [0, 1] "
                             "in numeric ones")
        return X

    def cells(self, X) -> np.ndarray:
        """The query index of each row's cell in each histogram, ``(len(X), n_histograms)``."""
        V = self.check(X)[:, self._cols]                                     # (k, H, 2): the two columns
        codes = np.where(self._res > 0, np.minimum(np.floor(V * self._res), self._res - 1), V).astype(np.int64)
        return self.offsets + codes[..., 0] * self._width + codes[..., 1]

    def answers(self, X) -> np.ndarray:
        """All query answers of a data set: the share of its rows in each cell, ``(n_queries,)``."""
        cells = self.cells(X)
        return np.bincount(cells.ravel(), minlength=self.n_queries) / len(cells)

    def _shift(self, cols, old_values, new_values) -> np.ndarray:
        """How each row's cells move when its column ``cols[p]`` changes value (no checks: the inner loop)."""
        scale, cap = self._scale.take(cols, axis=0), self._cap.take(cols, axis=0)
        codes = np.minimum(np.floor(np.stack([old_values, new_values])[..., None] * scale), cap)
        return ((codes[1] - codes[0]) * self._mult.take(cols, axis=0)).astype(np.int64)


def workload(cards, resolutions=(2, 4, 8, 16)) -> Workload:
    r"""Every 2-way histogram of a table: marginals of categorical pairs, range queries with numeric columns.

    >>> w = workload((3, 2, 0), resolutions=(2, 4))
    >>> w.n_histograms, w.n_queries, w.histograms[:2]
    (5, 36, ((0, 1, 0), (0, 2, 2)))
    """
    if isinstance(cards, (str, bytes, dict)) or not np.iterable(cards):
        raise TypeError(f"cards must be a sequence of ints (0 for a numeric column), got {describe(cards)}")
    if isinstance(resolutions, (str, bytes, dict)) or not np.iterable(resolutions) or not len(resolutions):
        raise TypeError(f"resolutions must be a non-empty sequence of ints >= 2, got {describe(resolutions)}")
    cards = tuple(check_int(k, "cards", low=0) for k in cards)
    res = tuple(check_int(b, "resolutions", low=2) for b in resolutions)
    hists = [(i, j, b) for i, j in itertools.combinations(range(len(cards)), 2)
             for b in (res if 0 in (cards[i], cards[j]) else (0,))]
    return Workload(cards, tuple(hists))


def _workload(w) -> Workload:
    if not isinstance(w, Workload):
        raise TypeError(f"w must be a Workload (see workload()), got {describe(w)}")
    return w
