r"""Private-GSD: differentially private synthetic data by a genetic search over data sets.

A data set is a table of ``n`` rows and ``d`` columns; a column is categorical (codes
``0..k-1``) or numeric (values in ``[0, 1]``).  A :class:`Workload` lists the statistics to
preserve: for every pair of columns a 2-way histogram (a *marginal*: the share of rows in each
cell), where a numeric column is cut into ``b`` equal bins at each resolution ``b`` (*range
queries*: the share of rows with ``x_c = v`` and ``a <= u < b``).  Every query is non-smooth in the
numeric values, which is why the search is zeroth-order.

The mechanism has two stages.  :func:`measure` releases the answers with the Gaussian mechanism
(:mod:`optlab.privacy`), once; everything after it is post-processing and costs no privacy.
:func:`gsd` then searches for a synthetic data set of ``N'`` rows whose answers match the noisy
ones, minimizing the fitness :math:`F(D') = \|\hat a - q(D')\|_2^2` with an elitist genetic
algorithm whose candidates differ from the current best in one cell, so that each candidate's
fitness is updated from the few queries that one row touches (:func:`fitness_delta`).
:func:`private_gsd` runs both stages.

References
----------
T. Liu, J. Tang, G. Vietri and Z. S. Wu, Generating private synthetic data with genetic
algorithms, ICML 2023, arXiv:2306.03257 (``liu2023generating``); see :func:`gsd`.

Book: chapters/zeroth_order/private_gsd.ipynb
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .. import privacy
from ..core import Trace, as_rng
from ..validate import (
    check_array,
    check_callable,
    check_int,
    check_positive,
    check_probability,
    check_real,
    describe,
)

__all__ = ["Workload", "workload", "l2_sensitivity", "budget", "measure", "random_datasets", "fitness_delta",
           "survivors", "gsd", "private_gsd"]


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


def l2_sensitivity(w: Workload, n: int) -> float:
    r"""L2 sensitivity of all answers under replace-one neighbours: :math:`\sqrt{2H}/n`.

    Replacing one of ``n`` rows moves it out of one cell and into another in each of the ``H``
    histograms: two entries change by ``1/n`` per histogram.

    >>> l2_sensitivity(workload((3, 3)), 100)
    0.01414213562373095
    """
    return math.sqrt(2 * _workload(w).n_histograms) / check_int(n, "n", low=1)


def budget(epsilon: float, delta: float) -> float:
    r"""The zCDP budget of an :math:`(\varepsilon, \delta)` target: the largest :math:`\rho` by the tight conversion.

    >>> round(budget(1.0, 1 / 5000 ** 2), 5)
    0.01889
    """
    return privacy.zcdp_rho(epsilon, delta)


def measure(w: Workload, data, rho: float, rng=None):
    r"""The private stage: all answers of ``data`` through the Gaussian mechanism, :math:`\rho`-zCDP.

    Returns ``(noisy answers, sigma)``.
    """
    data = _workload(w).check(data, "data")
    return privacy.gaussian_mechanism(w.answers(data), l2_sensitivity(w, len(data)), rho, rng)


def random_datasets(w: Workload, n_rows: int, n_sets: int, rng=None) -> np.ndarray:
    """``n_sets`` data sets of ``n_rows`` rows drawn uniformly from the domain, ``(n_sets, n_rows, d)``."""
    n_rows, n_sets = check_int(n_rows, "n_rows", low=1), check_int(n_sets, "n_sets", low=1)
    U = as_rng(rng).random((n_sets, n_rows, len(_workload(w).cards)))
    cards = np.array(w.cards)
    return np.where(cards > 0, np.floor(U * cards), U)


def fitness_delta(residual, old_cells, new_cells, n_rows: int) -> np.ndarray:
    r"""Change of :math:`F = \|r\|^2`, :math:`r = q(D') - \hat a`, when a row moves from ``old_cells`` to ``new_cells``.

    Per histogram whose cell changes, :math:`r_{new}` grows and :math:`r_{old}` shrinks by
    :math:`1/N'`: :math:`\Delta F = \sum_h [c_h \ne o_h]\,(2(r_{c_h} - r_{o_h})/N' + 2/N'^2)`.
    """
    for name, cells in (("new_cells", new_cells), ("old_cells", old_cells)):
        if not (isinstance(cells, np.ndarray) and cells.dtype.kind in "iu"):
            raise TypeError(f"{name} must be an integer array of query indices, got {describe(cells)}")
    if old_cells.shape != new_cells.shape:
        raise ValueError(f"old_cells and new_cells must have one shape, got {old_cells.shape} and {new_cells.shape}")
    if not (isinstance(residual, np.ndarray) and residual.ndim == 1 and residual.dtype.kind == "f"):
        raise TypeError(f"residual must be a 1-D float array, got {describe(residual)}")
    step = 1.0 / check_int(n_rows, "n_rows", low=1)   # where c_h = o_h the residuals cancel: only the count is masked
    gain = np.sum(residual.take(new_cells) - residual.take(old_cells), axis=-1)
    return 2 * step * gain + 2 * step ** 2 * np.count_nonzero(new_cells != old_cells, axis=-1)


def survivors(archive_fitness, candidate_fitness, n_elite: int) -> np.ndarray:
    """Elitism: the ``n_elite`` best of the archive and the candidates together (indices, best first)."""
    for name, f in (("archive_fitness", archive_fitness), ("candidate_fitness", candidate_fitness)):
        if not (isinstance(f, np.ndarray) and f.ndim == 1 and f.dtype.kind == "f"):
            raise TypeError(f"{name} must be a 1-D float array, got {describe(f)}")
    check_int(n_elite, "n_elite", low=1, high=len(archive_fitness) + len(candidate_fitness))
    return np.argsort(np.concatenate([archive_fitness, candidate_fitness]), kind="stable")[:n_elite]


def gsd(w: Workload, target, x0, *, population: int = 100, crossover: float = 0.5, n_iters: int = 2000,
        rng=None, callback=None):
    r"""The genetic search of Private-GSD: an elitist GA over synthetic data sets with sparse fitness updates.

    Each generation builds ``population`` candidates from the current best data set, each
    differing from it in one cell: half by *mutation* (the cell gets a value drawn uniformly
    from its column's domain), half by *crossover* (the cell gets the value of the same column
    in a random row of a random elite data set).  Only the cell's row changes, so a candidate's
    fitness is the best's plus :func:`fitness_delta`, O(H) work instead of O(N' H).  The archive
    keeps the ``E`` best data sets seen (:func:`survivors`), so the best fitness never increases.

    Parameters
    ----------
    w : Workload
        The queries.
    target : array_like, shape (w.n_queries,)
        The answers to match, :math:`\hat a` (the noisy answers: the search never sees the data).
    x0 : array_like, shape (E, N', d)
        The initial archive of ``E`` data sets (e.g. :func:`random_datasets`); not modified.
    population : int
        Candidates per generation, ``P``.
    crossover : float in [0, 1]
        The share of crossovers among them (the paper's code: half); the rest are mutations.
    n_iters : int
        Generations.
    rng : None, int or numpy.random.Generator
        Source of the random rows, columns, values and donors.
    callback : callable or None
        ``callback(record) -> bool`` after every generation; True stops the run.

    Returns
    -------
    Result
        ``x``: the best data set ``(N', d)``; ``f``: its fitness.  ``n_evals["fitness"]``: fitness
        evaluations (``E`` full ones at the start, then ``P`` incremental ones per generation).
        Extras: ``archive`` ``(E, N', d)`` and ``archive_fitness``; ``answers``, :math:`q(x)`;
        ``fitness_exact``, :math:`\|\hat a - q(x)\|^2` recomputed from scratch.  History (one row per
        generation, and one for the start): ``t``, ``n_evals``, ``f`` (best fitness),
        ``improved`` (1 if the best changed), ``crossover`` (1 if that change was a crossover).

    Notes
    -----
    Cost per generation: O(P H) for the candidates' cells and fitness changes, plus a copy of
    a data set for each candidate that enters the archive (at most E).  The one guarantee is
    elitism, :math:`F(D'_{t+1}) \le F(D'_t)`; the paper states no convergence rate.  Differences
    from the official code: no early stopping; a crossover copies a numeric value as it is (the
    ICML-era code also perturbs it with clipped Gaussian noise); mutations draw uniform values.

    Examples
    --------
    >>> w = workload((2, 2))
    >>> res = gsd(w, np.array([0.5, 0.0, 0.0, 0.5]), random_datasets(w, 8, 3, rng=0), n_iters=200, rng=0)
    >>> res.f, res.n_evals, np.round(res.answers, 3).tolist()
    (0.0, {'fitness': 20003}, [0.5, 0.0, 0.0, 0.5])
    """
    target = check_array(target, "target", shape=(_workload(w).n_queries,))
    archive = w.check(x0, "x0", ndim=3)
    population, n_iters = check_int(population, "population", low=1), check_int(n_iters, "n_iters", low=1)
    crossover = check_probability(crossover, "crossover")
    check_callable(callback, "callback", optional=True, signature="record -> bool")
    rng = as_rng(rng)
    n_elite, n_rows, d = archive.shape
    n_mut, cards = population - round(crossover * population), np.array(w.cards)
    trace = Trace("private_gsd", {"population": population, "crossover": crossover, "n_elite": n_elite,
                                  "n_rows": n_rows, "n_iters": n_iters}, callback)
    archive_fitness = np.array([np.sum((w.answers(a) - target) ** 2) for a in archive])
    trace.count("fitness", n_elite)
    best = int(np.argmin(archive_fitness))                   # the slot of the best elite
    X = archive[best].copy()                                 # the current best, D'_t
    cells, residual = w.cells(X), w.answers(X) - target      # r = q(D'_t) - a_hat
    F = archive_fitness[best]
    stopped = trace.log(0, f=F, improved=0.0, crossover=0.0)
    done = 0
    for t in range(0 if stopped else n_iters):
        rows, cols = rng.integers(n_rows, size=population), rng.integers(d, size=population)
        u = rng.random(population)                           # mutation: a uniform value of the column
        values = np.where(cards[cols] > 0, np.floor(u * cards[cols]), u)
        donors = rng.integers(n_elite, size=population - n_mut)  # crossover: a cell of an elite row
        values[n_mut:] = archive[donors, rng.integers(n_rows, size=population - n_mut), cols[n_mut:]]
        old_cells = cells.take(rows, axis=0)                 # the cells of the rows before the change
        new_cells = old_cells + w._shift(cols, X[rows, cols], values)
        candidate_fitness = F + fitness_delta(residual, old_cells, new_cells, n_rows)
        trace.count("fitness", population)
        keep = survivors(archive_fitness, candidate_fitness, n_elite)
        entering = keep[keep >= n_elite] - n_elite
        if len(entering):                                    # candidates take the slots of dropped elites
            free = np.ones(n_elite, dtype=bool)
            free[keep[keep < n_elite]] = False
            free = np.flatnonzero(free)
            for slot, p in zip(free, entering):              # one copy of a data set per entrant
                archive[slot] = X
                archive[slot, rows[p], cols[p]] = values[p]
            archive_fitness[free] = candidate_fitness[entering]
        improved = keep[0] >= n_elite
        if improved:                                         # move to the best candidate: update r sparsely
            p, best = entering[0], free[0]
            X[rows[p], cols[p]] = values[p]
            cells[rows[p]] = new_cells[p]
            moved = old_cells[p] != new_cells[p]             # one cell per histogram: no repeated index
            residual[old_cells[p, moved]] -= 1.0 / n_rows
            residual[new_cells[p, moved]] += 1.0 / n_rows
            F = candidate_fitness[p]
        elif keep[0] != best:                                # an older elite is best (not under elitism)
            best = keep[0]
            X, F = archive[best].copy(), archive_fitness[best]
            cells, residual = w.cells(X), w.answers(X) - target
        done = t + 1
        if trace.log(done, f=F, improved=float(improved), crossover=float(improved and entering[0] >= n_mut)):
            break
    answers, order = w.answers(X), np.argsort(archive_fitness, kind="stable")
    return trace.result(X, F, n_iters=done, archive=archive[order], archive_fitness=archive_fitness[order],
                        answers=answers, fitness_exact=float(np.sum((answers - target) ** 2)))


def private_gsd(data, w: Workload, *, epsilon: float, delta: float, n_rows: int, n_elite: int = 5,
                population: int = 100, crossover: float = 0.5, n_iters: int = 2000, rng=None, callback=None):
    r"""The whole mechanism: measure ``data`` once at :math:`(\varepsilon, \delta)`-DP, then run :func:`gsd`.

    The budget is turned into :math:`\rho` by the tight zCDP conversion (:func:`optlab.privacy.zcdp_rho`);
    the measurement and the search draw from two independent streams of ``rng``.  The result is
    :func:`gsd`'s, with extras ``noisy`` (the released answers), ``sigma``, ``rho`` and
    ``epsilon`` (the guarantee of the release, at most the requested one).  Only ``noisy`` reaches
    the search, so the synthetic data set is :math:`(\varepsilon, \delta)`-DP by post-processing.
    """
    data = _workload(w).check(data, "data")
    epsilon, delta = check_positive(epsilon, "epsilon"), check_real(delta, "delta", low=0.0, high=1.0,
                                                                     low_open=True, high_open=True)
    n_elite = check_int(n_elite, "n_elite", low=1)
    seeds = as_rng(rng).integers(2 ** 63, size=2)
    rho = budget(epsilon, delta)
    noisy, sigma = measure(w, data, rho, rng=np.random.default_rng(seeds[0]))
    search = np.random.default_rng(seeds[1])
    res = gsd(w, noisy, random_datasets(w, n_rows, n_elite, rng=search), population=population,
              crossover=crossover, n_iters=n_iters, rng=search, callback=callback)
    res.extras.update(noisy=noisy, sigma=sigma, rho=rho, epsilon=privacy.zcdp_epsilon(rho, delta))
    return res
