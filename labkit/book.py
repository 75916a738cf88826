"""Handing a lab's results to the book: myst-nb glue for numbers and figures."""
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["glue_numbers", "glue_text", "power_of_ten", "glue_figure"]

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


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


def power_of_ten(value, digits=2):
    """``value`` as prose writes a very small or large number: ``'3.0 × 10⁻⁸'``.

    ``digits`` significant digits; zero and non-finite values are written plainly.
    """
    value = float(value)
    if value == 0 or not np.isfinite(value):
        return f"{value:g}"
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def glue_text(**values):
    """Glue each named string for the chapter (``{glue:text}`lab.ipynb::name```).

    For numbers the lab has already written out, e.g. with ``power_of_ten``.
    """
    from myst_nb import glue

    for name, value in values.items():
        if not isinstance(value, str):
            raise ValueError(f"glue_text: {name} must be a string, got {value!r}")
        glue(name, value, display=False)


def glue_figure(name, fig):
    """Show ``fig`` in the lab, glue it under ``name`` for the chapter, and close it."""
    from myst_nb import glue

    glue(name, fig)
    plt.close(fig)
