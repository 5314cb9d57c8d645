"""Unit tests of optlab.plotting: fixed colours, the white style, labelled plots."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from optlab import problems  # noqa: E402
from optlab.baselines import gradient_descent  # noqa: E402
from optlab.plotting import STYLE, color_for, plot_contour, plot_convergence, use_style  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_colors_fixed_and_case_insensitive():
    assert color_for("Adam") == color_for("adam") == color_for(" adam ")
    assert color_for("some new method") == color_for("some new method")
    with pytest.raises(TypeError, match="method"):
        color_for(3)


def test_style_gives_opaque_white_figures(tmp_path):
    use_style()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    assert matplotlib.colors.to_rgba(fig.get_facecolor()) == (1.0, 1.0, 1.0, 1.0)
    fig.savefig(tmp_path / "f.png")
    img = plt.imread(tmp_path / "f.png")
    assert img.shape[2] == 4 and np.all(img[0, 0] == 1.0), "corner pixel must be opaque white"
    assert STYLE["savefig.transparent"] is False


def test_plot_convergence_labels_and_gap():
    p = problems.quadratic(dim=5, cond=10.0, rng=0)
    r = gradient_descent(p.f, p.grad, p.x0, lr=1 / p.L, n_iters=30)
    ax = plot_convergence({"gd": r}, f_star=p.f_star, x="n_evals")
    line = ax.get_lines()[0]
    assert line.get_label() == "gd" and line.get_color() == color_for("gd")
    assert np.allclose(line.get_ydata(), r.history["f"] - p.f_star)
    assert ax.get_xlabel() == "oracle calls" and "f^\\star" in ax.get_ylabel()
    assert ax.get_yscale() == "log"
    ax2 = plot_convergence([r], logy=False)
    assert ax2.get_lines()[0].get_label() == "gd"
    with pytest.raises(TypeError, match="results"):
        plot_convergence(3)


def test_plot_contour_with_paths():
    p = problems.rosenbrock()
    r = gradient_descent(p.f, p.grad, p.x0, lr=1e-3, n_iters=20, keep_x=True)
    ax = plot_contour(p, [[-2, 2], [-1, 3]], paths={"gd": r}, n_grid=40)
    assert ax.get_xlabel() == "$x_1$" and ax.get_legend() is not None
    with pytest.raises(ValueError, match="bounds"):
        plot_contour(p, [[1, 0], [0, 1]])
    r_nox = gradient_descent(p.f, p.grad, p.x0, lr=1e-3, n_iters=2)
    with pytest.raises(ValueError, match="keep_x"):
        plot_contour(p, [[-2, 2], [-1, 3]], paths={"gd": r_nox}, n_grid=10)


def test_subplots_stacks_panels_at_the_book_width():
    from optlab.plotting import FIGURE_WIDTH, PANEL_HEIGHT, subplots

    use_style()
    fig, ax = subplots()
    assert tuple(fig.get_size_inches()) == pytest.approx((FIGURE_WIDTH, PANEL_HEIGHT))
    assert not isinstance(ax, np.ndarray), "one panel: one Axes"
    fig, axes = subplots(3, sharex=True, height=2.0)
    assert len(axes) == 3 and tuple(fig.get_size_inches()) == pytest.approx((FIGURE_WIDTH, 6.0))
    assert [a.get_subplotspec().colspan.start for a in axes] == [0, 0, 0], "one panel per row"
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n_panels"):
            subplots(bad)
    with pytest.raises(TypeError, match="figsize"):
        subplots(2, figsize=(10, 3.8))


def test_style_fonts_are_readable_on_a_phone():
    """The figure rule: the smallest font, at FIGURE_WIDTH (plus the saved margin) scaled to a phone's
    368 px column, shows at 9 pt (12 px) or more; the default figure is the book's width."""
    from optlab.plotting import FIGURE_WIDTH, min_font_size

    width_in = FIGURE_WIDTH + 2 * STYLE["savefig.pad_inches"]
    assert min_font_size() * 368 / (72 * width_in) >= 12
    assert STYLE["figure.figsize"][0] == FIGURE_WIDTH
    assert min_font_size() * STYLE["figure.dpi"] / 72 >= 12, "readable on the desktop at its own size"


def test_use_style_selects_retina_figures_in_ipython():
    """In an IPython shell, use_style() makes the inline backend store PNGs at twice the resolution."""
    pytest.importorskip("matplotlib_inline")
    import base64
    import struct

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        use_style()
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        data, meta = shell.display_formatter.format(fig)
        png = data["image/png"]
        png = base64.b64decode(png) if isinstance(png, str) else png
        width = struct.unpack(">I", png[16:20])[0]
        assert abs(meta["image/png"]["width"] * 2 - width) <= 1, "a retina PNG: twice the pixels of its display width"
    finally:
        InteractiveShell.clear_instance()
