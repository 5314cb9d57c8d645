r"""Plots used across the book: convergence curves and 2-D contours with paths.

Every helper takes an optional ``ax`` and returns it; none calls ``plt.show()``.
Each method keeps one colour across the whole book (:func:`color_for`), and
:func:`use_style` (applied by every chapter's setup cell) gives figures an
opaque white background, so they stay readable under the book's dark theme.

**The figure rule.** Every figure is at most :data:`FIGURE_WIDTH` inches wide, and a
figure with several panels stacks them vertically, one panel per row
(:func:`subplots` makes that layout).  Why: a page scales a figure down to its width, so
what stays readable is the font size *relative to the figure's width*.  On a 400 px phone
screen the book's content is 368 px wide; a 4.2 in figure (4.3 in with the margin that
saving adds) whose smallest text (ticks, legends) is 10.5 pt then shows that text at
10.5 * 368 / (72 * 4.3) = 12.5 px, above 9 pt (12 px).  On a desktop the figure shows at
its own size (``figure.dpi`` 100: about 430 px wide, ticks at 14.6 px).  So: no
``figsize`` wider than :data:`FIGURE_WIDTH`, no font smaller than :func:`min_font_size`
(no ``fontsize=8``), and legends inside the figure's width.

Figures are stored as high-resolution PNGs ("retina": twice the pixels, displayed at half
size), sharp on high-DPI screens; Jupyter, Colab and the book all honour the displayed
size, and the book opens the full-size PNG on a click.

Book: chapters/toolkit.ipynb

References
----------
Hunter, Matplotlib: a 2D graphics environment, Computing in Science & Engineering 9(3), 2007.
"""
from __future__ import annotations

import sys
import zlib

import numpy as np

__all__ = ["METHOD_COLORS", "color_for", "use_style", "STYLE", "FIGURE_WIDTH", "PANEL_HEIGHT", "subplots",
           "min_font_size", "plot_convergence", "plot_contour"]

#: One colour per method, fixed across the book (the Okabe-Ito and tab10 palettes).
METHOD_COLORS = {
    "gd": "#0072B2",
    "sgd": "#0072B2",
    "sgd (last iterate)": "#0072B2",
    "sgd (average)": "#E69F00",
    "last iterate": "#0072B2",
    "average": "#E69F00",
    "suffix average": "#009E73",
    "heavy ball": "#009E73",
    "nesterov": "#CC79A7",
    "adam": "#D55E00",
    "adagrad": "#56B4E9",
    "newton": "#000000",
    "theory": "#7f7f7f",
    "reference": "#7f7f7f",
}
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
            "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f"]

#: The widest figure of the book, in inches (see the figure rule above).
FIGURE_WIDTH = 4.2
#: The height of one panel, in inches; :func:`subplots` stacks panels of this height.
PANEL_HEIGHT = 2.8
#: How the inline backend stores figures: PNGs at twice ``figure.dpi``, shown at half size.
INLINE_FORMAT = "retina"

#: The rcParams applied by :func:`use_style`.
STYLE = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.transparent": False,
    "figure.figsize": (FIGURE_WIDTH, PANEL_HEIGHT),
    "figure.dpi": 100,
    "figure.constrained_layout.use": True,
    "savefig.pad_inches": 0.05,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "xtick.labelsize": 10.5,
    "ytick.labelsize": 10.5,
    "legend.fontsize": 10.5,
}
_FONT_KEYS = ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize", "ytick.labelsize",
              "legend.fontsize")


def min_font_size() -> float:
    """The smallest font size of :data:`STYLE`, in points (ticks and legends).

    >>> min_font_size()
    10.5
    """
    return float(min(STYLE[k] for k in _FONT_KEYS))


def color_for(method: str) -> str:
    r"""The book's colour for a method name (case-insensitive).

    Known methods have a fixed colour; any other name gets a colour from a
    palette chosen by a stable hash of the name, the same in every run.

    Examples
    --------
    >>> color_for("Adam") == color_for("adam")
    True
    >>> color_for("my method") == color_for("my method")
    True
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    key = method.strip().lower()
    if key in METHOD_COLORS:
        return METHOD_COLORS[key]
    return _PALETTE[zlib.crc32(key.encode()) % len(_PALETTE)]


def use_style() -> None:
    """Apply the book's matplotlib style: :data:`STYLE` (white, opaque figures; light grid; the
    book's sizes) and, in a Jupyter kernel, high-resolution inline figures (:data:`INLINE_FORMAT`)."""
    import matplotlib as mpl

    mpl.rcParams.update(STYLE)
    if "IPython" in sys.modules:  # only where IPython already runs; never import it here
        from IPython import get_ipython

        if get_ipython() is not None:
            try:
                from matplotlib_inline.backend_inline import set_matplotlib_formats
            except ImportError:  # an IPython without the inline backend: default PNGs
                return
            set_matplotlib_formats(INLINE_FORMAT)


def subplots(n_panels: int = 1, *, height: float = PANEL_HEIGHT, sharex: bool = False, **kwargs):
    r"""A figure in the book's layout: ``n_panels`` panels stacked vertically, :data:`FIGURE_WIDTH` wide.

    Parameters
    ----------
    n_panels : int
        Number of panels (axes), one per row.
    height : float
        Height of each panel, in inches.
    sharex : bool
        Share the horizontal axis between the panels.
    **kwargs
        Passed on to :func:`matplotlib.pyplot.subplots` (e.g. ``sharey``); ``figsize``, ``nrows``
        and ``ncols`` are the layout's and cannot be given.

    Returns
    -------
    fig : matplotlib Figure
    axes : matplotlib Axes (one panel) or an array of ``n_panels`` Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> fig, axes = subplots(2)
    >>> len(axes), tuple(float(v) for v in fig.get_size_inches())
    (2, (4.2, 5.6))
    """
    import matplotlib.pyplot as plt

    if not isinstance(n_panels, int) or isinstance(n_panels, bool) or n_panels < 1:
        raise ValueError(f"n_panels must be a positive int, got {n_panels!r}")
    if not height > 0:
        raise ValueError(f"height must be positive (inches), got {height!r}")
    clash = {"figsize", "nrows", "ncols"} & set(kwargs)
    if clash:
        raise TypeError(f"subplots() sets {sorted(clash)} itself: the book's layout is one panel per row, "
                        f"{FIGURE_WIDTH} in wide")
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(n_panels, 1, figsize=(FIGURE_WIDTH, height * n_panels), sharex=sharex, **kwargs)


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax


def _as_runs(results):
    """Accept a Result, a list of Results or a dict label -> Result."""
    from .core import Result

    if isinstance(results, Result):
        return {results.method: results}
    if isinstance(results, dict):
        return dict(results)
    if isinstance(results, (list, tuple)):
        return {r.method: r for r in results}
    raise TypeError("results must be a Result, a list of Results or a dict label -> Result, "
                    f"got {type(results).__name__}")


def plot_convergence(results, ax=None, *, x: str = "t", y: str = "f", f_star=None,
                     logx: bool = False, logy: bool = True, colors=None):
    r"""Plot ``y`` (default the objective) against ``x`` for one or more runs.

    Parameters
    ----------
    results : Result, list of Result or dict label -> Result
        The runs; labels default to each result's ``method``.
    ax : matplotlib Axes or None
    x : str
        History column on the horizontal axis: ``"t"`` (iterations) or
        ``"n_evals"`` (oracle calls), or any recorded column.
    y : str
        History column on the vertical axis.
    f_star : float or None
        If given, plot the gap ``y - f_star`` (labelled as such).
    logx, logy : bool
        Logarithmic axes.
    colors : dict or None
        Label -> colour overrides; otherwise :func:`color_for`.

    Returns
    -------
    matplotlib Axes
    """
    if x not in ("t", "n_evals") and not isinstance(x, str):
        raise TypeError(f"x must be a history column name, got {x!r}")
    runs = _as_runs(results)
    ax = _axes(ax)
    colors = colors or {}
    for label, res in runs.items():
        xs, ys = res.history[x], np.asarray(res.history[y], dtype=float)
        if f_star is not None:
            ys = ys - f_star
        ax.plot(xs, ys, color=colors.get(label, color_for(label)), label=label)
    xlabel = {"t": "iteration $t$", "n_evals": "oracle calls"}.get(x, x)
    ylabel = y if f_star is None else f"{y} $-$ {y}$^\\star$"
    if y == "f":
        ylabel = "$f(x_t)$" if f_star is None else "$f(x_t) - f^\\star$"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.legend()
    return ax


def plot_contour(f, bounds, ax=None, *, paths=None, levels: int = 30, log: bool = True,
                 n_grid: int = 200, colors=None):
    r"""Contours of a 2-D function with optional optimization paths.

    Parameters
    ----------
    f : callable or Problem
        ``f(X)`` evaluated on an ``(n, 2)`` batch of points (or point by point
        when it does not accept a batch).  A :class:`~optlab.core.Problem`
        uses its ``f``.
    bounds : array_like, shape (2, 2)
        ``[[x_lo, x_hi], [y_lo, y_hi]]``.
    ax : matplotlib Axes or None
    paths : dict label -> array of shape (n, 2) or Result, optional
        A Result must have been run with its iterates kept (history column
        ``"x"``).
    levels : int
        Number of contour levels.
    log : bool
        Space levels logarithmically above the minimum on the grid.
    n_grid : int
        Grid points per axis.
    colors : dict or None
        Label -> colour overrides; otherwise :func:`color_for`.

    Returns
    -------
    matplotlib Axes
    """
    from .core import Problem, Result

    if isinstance(f, Problem):
        f = f.f
    b = np.asarray(bounds, dtype=float)
    if b.shape != (2, 2) or not np.all(b[:, 0] < b[:, 1]):
        raise ValueError(f"bounds must be [[x_lo, x_hi], [y_lo, y_hi]] with lo < hi, got {bounds!r}")
    ax = _axes(ax)
    gx, gy = np.linspace(*b[0], n_grid), np.linspace(*b[1], n_grid)
    X, Y = np.meshgrid(gx, gy)
    pts = np.column_stack([X.ravel(), Y.ravel()])
    try:
        Z = np.asarray(f(pts), dtype=float).reshape(X.shape)
    except (ValueError, TypeError, IndexError):
        Z = np.array([f(p) for p in pts], dtype=float).reshape(X.shape)
    if log:
        Zs = np.log10(Z - Z.min() + 1e-3)
        ax.contour(X, Y, Zs, levels=levels, cmap="viridis", linewidths=0.7)
    else:
        ax.contour(X, Y, Z, levels=levels, cmap="viridis", linewidths=0.7)
    colors = colors or {}
    for label, path in (paths or {}).items():
        if isinstance(path, Result):
            if "x" not in path.history:
                raise ValueError(f"path {label!r}: the Result has no 'x' history column (run it with keep_x=True)")
            path = np.stack(path.history["x"])
        path = np.asarray(path, dtype=float)
        c = colors.get(label, color_for(label))
        ax.plot(path[:, 0], path[:, 1], "-o", ms=2.5, lw=1.2, color=c, label=label)
        ax.plot(path[-1, 0], path[-1, 1], "*", ms=10, color=c)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_xlim(*b[0])
    ax.set_ylim(*b[1])
    if paths:
        ax.legend()
    return ax
