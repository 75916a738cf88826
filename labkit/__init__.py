"""labkit: the plumbing of the Taming Overfitting labs.

Import what you use from its modules, e.g. ``from labkit.train import fit``.
Modules: runtime (device, seeds and ``LABKIT_SEED``, profiles), data, models,
train (``fit``), stacked (``StackedMLP``: K models as one), vmapped
(``StackedModel``: K copies of any architecture, e.g. K CNNs), sweep (``Grid``,
``sweep_fit``), stats (``effect``: claims about a population of runs), plots,
widgets, book (glue).
"""

__version__ = "0.2.0"
