"""labkit.plots: figures sized for the site's column, legends no smaller than ticks."""
import matplotlib
import matplotlib.pyplot as plt
import pytest
from matplotlib.font_manager import FontProperties

from labkit.plots import COLUMN_WIDTH, new_figure


def points(size):
    return FontProperties(size=size).get_size_in_points()


def test_new_figure_fits_the_column():
    fig, axes = new_figure(ncols=2, width=COLUMN_WIDTH / 2, height=3)
    assert len(axes) == 2 and fig.get_figwidth() == pytest.approx(COLUMN_WIDTH)
    plt.close(fig)
    with pytest.raises(ValueError, match="column"):
        new_figure(ncols=2, width=4.4)


def test_new_figure_grid_comes_back_flat_row_by_row():
    fig, axes = new_figure(ncols=2, nrows=2, width=3, height=2)
    assert len(axes) == 4 and fig.get_size_inches() == pytest.approx((6, 4))
    assert axes[1].get_position().y0 == pytest.approx(axes[0].get_position().y0)
    assert axes[2].get_position().y0 < axes[0].get_position().y0
    plt.close(fig)


def test_legend_is_not_smaller_than_tick_labels():
    rc = matplotlib.rcParams
    ticks = max(points(rc["xtick.labelsize"]), points(rc["ytick.labelsize"]))
    assert points(rc["legend.fontsize"]) >= ticks
    assert points("small") >= ticks  # what the labs pass as ax.legend(fontsize="small")
    fig, (ax,) = new_figure()
    ax.plot([0, 1], label="a")
    legend = ax.legend(fontsize="small")
    tick = ax.get_xticklabels()[0]
    assert legend.get_texts()[0].get_fontsize() >= tick.get_fontsize()
    plt.close(fig)
