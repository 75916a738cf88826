"""K copies of any ``nn.Module`` as one module, through ``torch.func``.

``StackedModel`` stacks the K models' parameters and buffers on a leading K axis
(``torch.func.stack_module_state``'s layout) and runs them with
``vmap(functional_call(...))``: one call per layer for all K models. vmap folds
K into the batched operations (a convolution of K models becomes one grouped
convolution), so it works for any architecture, a ``labkit.models.CNN`` in
particular. ``StackedMLP`` (``labkit.stacked``) remains the faster path for MLPs
(``benchmarks/vmap_vs_stacked.py``).

Each model keeps its own batch-norm statistics (the running buffers are
batched, so train mode updates each model's own), its own dropout masks
(``randomness="different"``) and, if the K models were built with different
dropout rates, its own rate. ``sweep_fit`` trains it like a ``StackedMLP``.
"""
import copy

import torch
from torch import nn
from torch.func import functional_call, vmap

from .runtime import seed_all

__all__ = ["StackedModel"]


class _Dropout(nn.Module):
    """Inverted dropout whose rate ``p`` is a buffer: stacked, each model has its own."""

    def __init__(self, p):
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)))

    def forward(self, x):
        if not self.training:
            return x
        keep = 1 - self.p
        return x * (torch.rand_like(x) < keep) / keep


def _architecture(model):
    return ([(n, type(m).__name__) for n, m in model.named_modules()],
            [(n, tuple(t.shape), t.dtype) for n, t in model.named_parameters()],
            [(n, tuple(t.shape), t.dtype) for n, t in model.named_buffers()])


def _key(name):
    return name.replace(".", "__")  # a module attribute cannot hold a dot


class StackedModel(nn.Module):
    """K copies of one architecture (any ``nn.Module``), run and trained side by side.

    ``StackedModel([CNN(...), ...])`` or ``StackedModel.from_seeds(lambda: CNN(...), seeds)``;
    each model starts from exactly the weights it was built with. Parameters
    and buffers have a leading K axis (``model.k``). ``model(x)`` takes input
    ``(N, *example)`` shared by all models or ``(K, N, *example)``, one batch
    per model, and returns ``(K, N, ...)`` (e.g. ``(K, N, C)`` class scores).

    Which of the two an input is follows ``example_ndim``, the number of axes
    of one example: taken from the first model's ``example_ndim`` attribute
    (a CNN has one) unless given. ``forward(x, per_model=...)`` says it
    explicitly (``sweep_fit`` does, from the data's example shape), e.g. for a
    1-D CNN fed ``(N, L)`` signals. ``unstack(j, template)`` copies model j
    back into a plain module.
    """

    def __init__(self, models, example_ndim=None):
        super().__init__()
        models = list(models)
        if not models or not all(isinstance(m, nn.Module) for m in models):
            raise ValueError("StackedModel needs a non-empty list of nn.Module")
        arch = _architecture(models[0])
        if any(_architecture(m) != arch for m in models[1:]) or \
                any(type(m) is not type(models[0]) for m in models):
            raise ValueError("all models in a StackedModel must have the same architecture "
                             "(module types, parameter and buffer shapes)")
        if not arch[1]:
            raise ValueError("StackedModel needs models with parameters")
        self.k = len(models)
        self.example_ndim = example_ndim if example_ndim is not None else \
            getattr(models[0], "example_ndim", None)
        base = copy.deepcopy(models[0]).to("meta")
        states = [dict(m.named_parameters()) for m in models]
        self._params = [n for n, _, _ in arch[1]]
        for n in self._params:
            stacked = torch.stack([s[n].detach() for s in states]).clone()
            self.register_parameter(_key(n), nn.Parameter(stacked))
        buffers = [dict(m.named_buffers()) for m in models]
        self._bufs = [n for n, _, _ in arch[2]]
        for n in self._bufs:
            self.register_buffer(_key(n), torch.stack([b[n] for b in buffers]).clone())
        # dropout: per-model rates as a buffer where the models' rates differ
        self._rates = []
        for name, module in models[0].named_modules():
            if isinstance(module, nn.Dropout):
                rates = [m.get_submodule(name).p for m in models]
                if len(set(rates)) > 1:
                    parent, _, child = name.rpartition(".")
                    holder = base.get_submodule(parent) if parent else base
                    setattr(holder, child, _Dropout(0.0).to("meta"))
                    self.register_buffer(_key(name + ".p"), torch.tensor(rates))
                    self._rates.append(name + ".p")
        self._base = [base]  # in a list: not a submodule (its tensors are on "meta")

    @classmethod
    def from_seeds(cls, build, seeds, example_ndim=None):
        """Stack ``build()`` called once per local seed, each after ``seed_all(seed)``:
        model j starts from the weights a separate run seeded with ``seeds[j]`` would use."""
        models = []
        for seed in seeds:
            seed_all(seed)
            models.append(build())
        return cls(models, example_ndim=example_ndim)

    @classmethod
    def from_grid(cls, build, grid, example_ndim=None):
        """One model per point of ``grid`` (a ``Grid`` with a ``seed`` axis), seeded by it."""
        return cls.from_seeds(build, grid["seed"], example_ndim=example_ndim)

    def train(self, mode=True):
        super().train(mode)
        self._base[0].train(mode)
        return self

    def _call(self, params, buffers, x):
        return functional_call(self._base[0], (params, buffers), (x,))

    def forward(self, x, per_model=None):
        if per_model is None:
            e = self.example_ndim
            if e is None or x.ndim not in (e + 1, e + 2):
                raise ValueError(f"StackedModel expects (N, ...) shared or (K={self.k}, N, ...) "
                                 f"per model with {e} axes per example (example_ndim), got "
                                 f"{tuple(x.shape)}; pass per_model= or example_ndim=")
            per_model = x.ndim == e + 2
        if per_model and (x.ndim < 2 or x.shape[0] != self.k):
            raise ValueError(f"a batch with one copy per model must have K={self.k} first, "
                             f"got {tuple(x.shape)}")
        params = {n: getattr(self, _key(n)) for n in self._params}
        buffers = {n: getattr(self, _key(n)) for n in self._bufs + self._rates}
        run = vmap(self._call, in_dims=(0, 0, 0 if per_model else None), randomness="different")
        return run(params, buffers, x)

    def unstack(self, index, template):
        """Copy model ``index``'s parameters and buffers into ``template`` (a module of
        the same architecture, e.g. freshly built) and return it."""
        with torch.no_grad():
            for n, t in list(template.named_parameters()) + list(template.named_buffers()):
                t.copy_(getattr(self, _key(n))[index])
        return template
