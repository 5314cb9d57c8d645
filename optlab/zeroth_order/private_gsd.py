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

import math

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
from .queries import Workload, _workload, workload

__all__ = ["Workload", "workload", "l2_sensitivity", "budget", "measure", "random_datasets", "fitness_delta",
           "survivors", "gsd", "private_gsd"]


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
    sensitivity = l2_sensitivity(w, len(data))
    return privacy.gaussian_mechanism(w.answers(data), sensitivity, rho, rng)


def random_datasets(w: Workload, n_rows: int, n_sets: int, rng=None) -> np.ndarray:
    """``n_sets`` data sets of ``n_rows`` rows drawn uniformly from the domain, ``(n_sets, n_rows, d)``."""
    n_rows, n_sets = check_int(n_rows, "n_rows", low=1), check_int(n_sets, "n_sets", low=1)
    U = as_rng(rng).random((n_sets, n_rows, len(_workload(w).cards)))
    cards = np.array(w.cards)
    return np.where(cards > 0, np.floor(U * cards), U)


def _check_move(residual, old_cells, new_cells):
    for name, cells in (("new_cells", new_cells), ("old_cells", old_cells)):
        if not (isinstance(cells, np.ndarray) and cells.dtype.kind in "iu"):
            raise TypeError(f"{name} must be an integer array of query indices, got {describe(cells)}")
    if old_cells.shape != new_cells.shape:
        raise ValueError(f"old_cells and new_cells must have one shape, got {old_cells.shape} and {new_cells.shape}")
    if not (isinstance(residual, np.ndarray) and residual.ndim == 1 and residual.dtype.kind == "f"):
        raise TypeError(f"residual must be a 1-D float array, got {describe(residual)}")


def fitness_delta(residual, old_cells, new_cells, n_rows: int) -> np.ndarray:
    r"""Change of :math:`F = \|r\|^2`, :math:`r = q(D') - \hat a`, when a row moves from ``old_cells`` to ``new_cells``.

    Per histogram whose cell changes, :math:`r_{new}` grows and :math:`r_{old}` shrinks by
    :math:`1/N'`: :math:`\Delta F = \sum_h [c_h \ne o_h]\,(2(r_{c_h} - r_{o_h})/N' + 2/N'^2)`.
    Rows of ``old_cells``/``new_cells`` are candidates (one cell index per histogram).
    """
    _check_move(residual, old_cells, new_cells)
    step = 1.0 / check_int(n_rows, "n_rows", low=1)
    # where c_h = o_h the two residuals cancel: only the count of moves needs a mask
    gain = np.sum(residual.take(new_cells) - residual.take(old_cells), axis=-1)
    moves = np.count_nonzero(new_cells != old_cells, axis=-1)
    return 2 * step * gain + 2 * step ** 2 * moves


def _check_fitness(archive_fitness, candidate_fitness, n_elite):
    for name, f in (("archive_fitness", archive_fitness), ("candidate_fitness", candidate_fitness)):
        if not (isinstance(f, np.ndarray) and f.ndim == 1 and f.dtype.kind == "f"):
            raise TypeError(f"{name} must be a 1-D float array, got {describe(f)}")
    check_int(n_elite, "n_elite", low=1, high=len(archive_fitness) + len(candidate_fitness))


def survivors(archive_fitness, candidate_fitness, n_elite: int) -> np.ndarray:
    """Elitism: the ``n_elite`` best of the archive and the candidates together (indices, best first)."""
    _check_fitness(archive_fitness, candidate_fitness, n_elite)
    everyone = np.concatenate([archive_fitness, candidate_fitness])
    return np.argsort(everyone, kind="stable")[:n_elite]


def gsd(w: Workload, target, x0, *, population: int = 100, crossover: float = 0.5,
        n_iters: int = 2000, rng=None, callback=None):
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
    population = check_int(population, "population", low=1)
    n_iters = check_int(n_iters, "n_iters", low=1)
    crossover = check_probability(crossover, "crossover")
    check_callable(callback, "callback", optional=True, signature="record -> bool")
    rng = as_rng(rng)
    n_elite, n_rows, d = archive.shape
    n_mut, cards = population - round(crossover * population), np.array(w.cards)
    params = {"population": population, "crossover": crossover, "n_elite": n_elite,
              "n_rows": n_rows, "n_iters": n_iters}
    trace = Trace("private_gsd", params, callback)
    archive_fitness = np.array([np.sum((w.answers(a) - target) ** 2) for a in archive])
    trace.count("fitness", n_elite)
    best = int(np.argmin(archive_fitness))            # the slot of the best elite
    X = archive[best].copy()                          # the current best, D'_t
    cells = w.cells(X)                                # each row's cell per histogram
    residual = w.answers(X) - target                  # r = q(D'_t) - a_hat
    F = archive_fitness[best]
    stopped = trace.log(0, f=F, improved=0.0, crossover=0.0)
    done = 0
    for t in range(0 if stopped else n_iters):
        # ask: one cell per candidate, a mutation or a crossover
        rows = rng.integers(n_rows, size=population)
        cols = rng.integers(d, size=population)
        u = rng.random(population)                    # mutation: a uniform value
        values = np.where(cards[cols] > 0, np.floor(u * cards[cols]), u)
        donors = rng.integers(n_elite, size=population - n_mut)
        donor_rows = rng.integers(n_rows, size=population - n_mut)
        values[n_mut:] = archive[donors, donor_rows, cols[n_mut:]]   # crossover
        # fitness of every candidate from the queries its one row touches
        old_cells = cells.take(rows, axis=0)
        new_cells = old_cells + w._shift(cols, X[rows, cols], values)
        candidate_fitness = F + fitness_delta(residual, old_cells, new_cells, n_rows)
        trace.count("fitness", population)
        # tell: the E best of archive and candidates survive
        keep = survivors(archive_fitness, candidate_fitness, n_elite)
        entering = keep[keep >= n_elite] - n_elite
        if len(entering):                             # entrants take the dropped slots
            free = np.ones(n_elite, dtype=bool)
            free[keep[keep < n_elite]] = False
            free = np.flatnonzero(free)
            for slot, p in zip(free, entering):       # one copy of a data set each
                archive[slot] = X
                archive[slot, rows[p], cols[p]] = values[p]
            archive_fitness[free] = candidate_fitness[entering]
        improved = keep[0] >= n_elite
        if improved:                                  # move to the best candidate
            p, best = entering[0], free[0]
            X[rows[p], cols[p]] = values[p]
            cells[rows[p]] = new_cells[p]
            moved = old_cells[p] != new_cells[p]      # one cell per histogram
            residual[old_cells[p, moved]] -= 1.0 / n_rows
            residual[new_cells[p, moved]] += 1.0 / n_rows
            F = candidate_fitness[p]
        elif keep[0] != best:                         # an older elite is best (never
            best = keep[0]                            # under elitism): recompute
            X, F = archive[best].copy(), archive_fitness[best]
            cells, residual = w.cells(X), w.answers(X) - target
        done = t + 1
        by_crossover = float(improved and entering[0] >= n_mut)
        if trace.log(done, f=F, improved=float(improved), crossover=by_crossover):
            break
    answers, order = w.answers(X), np.argsort(archive_fitness, kind="stable")
    return trace.result(X, F, n_iters=done, archive=archive[order],
                        archive_fitness=archive_fitness[order], answers=answers,
                        fitness_exact=float(np.sum((answers - target) ** 2)))


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
