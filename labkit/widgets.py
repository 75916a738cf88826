"""Interactive exploration in Jupyter, with a static figure for the built site."""
import os

import matplotlib.pyplot as plt
from IPython.display import display

__all__ = ["explore"]


def explore(draw, default, glue_key=None, **options):
    """Show ``draw(**values)`` (a matplotlib figure) with a slider per option.

    ``options`` maps each keyword of ``draw`` to its list of choices; ``default``
    (a dict) gives the starting values. The default figure is drawn first; with
    ``glue_key`` it is glued (myst-nb) so a chapter can show it. When
    ``LABKIT_STATIC=1`` (``make book`` sets it) or ipywidgets is missing, that
    default figure is displayed in place of the widget, so the built site shows it.
    """
    missing = set(options) - set(default)
    if missing:
        raise ValueError(f"default has no value for {sorted(missing)}")
    for name, choices in options.items():
        if default[name] not in choices:
            raise ValueError(f"default {name}={default[name]!r} is not among {list(choices)!r}")
    try:
        import ipywidgets as w
    except ImportError:
        w = None
    static = w is None or os.environ.get("LABKIT_STATIC") == "1"

    fig = draw(**default)
    if glue_key is not None:
        from myst_nb import glue

        glue(glue_key, fig, display=static)
    elif static:
        display(fig)
    plt.close(fig)
    if static:
        return

    def run(**values):
        fig = draw(**values)
        display(fig)
        plt.close(fig)

    controls = {name: w.SelectionSlider(options=list(choices), value=default[name],
                                        description=name, continuous_update=False)
                for name, choices in options.items()}
    w.interact(run, **controls)
