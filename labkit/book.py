"""Handing a lab's results to the book: myst-nb glue for numbers and figures."""
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["glue_numbers", "glue_figure"]


def glue_numbers(**values):
    """Glue each named number for the chapter (``{glue:text}`lab.ipynb::name:.3f```).

    Values are stored as Python ints or floats (NumPy scalars and 0-d arrays are
    converted); nothing is displayed in the lab itself.
    """
    from myst_nb import glue

    for name, value in values.items():
        value = np.asarray(value)
        if value.ndim != 0 or not np.issubdtype(value.dtype, np.number):
            raise ValueError(f"glue_numbers: {name} must be one number, got {value!r}")
        glue(name, value.item(), display=False)


def glue_figure(name, fig):
    """Show ``fig`` in the lab, glue it under ``name`` for the chapter, and close it."""
    from myst_nb import glue

    glue(name, fig)
    plt.close(fig)
