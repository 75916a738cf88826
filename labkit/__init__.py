"""labkit: the plumbing of the Taming Overfitting labs.

Import what you use from its modules, e.g. ``from labkit.train import fit``.
Modules: runtime (device, seeds, profiles), data, models, train, sweep,
augment, plots, widgets.
"""

__version__ = "0.1.0"
