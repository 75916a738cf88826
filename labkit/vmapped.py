"""K copies of any ``nn.Module`` as one module, through ``torch.func``.

``StackedModel`` stacks the K models' parameters and buffers on a leading K axis
(``torch.func.stack_module_state``'s layout) and runs them with
``vmap(functional_call(...))``: one call per layer for all K models. vmap folds
K into the batched operations (a convolution of K models becomes one grouped
convolution), so it works for any architecture, a ``labkit.models.CNN`` in
particular. ``StackedMLP`` (``labkit.stacked``) remains the faster path for MLPs
(``benchmarks/vmap_vs_stacked.py``).

For a plain ``nn.Sequential`` of convolutions, batch norms, ReLUs, pools,
dropout and linear layers (``labkit.models.CNN``), a faster path gives the same
result without vmap: the K models' channels side by side, ``(N, K*C, ...)``, so
a convolution is one grouped convolution (``groups=K``; one convolution with K
times the filters where the input is shared), a batch norm is one batch norm
over K*C channels, and pooling is one call; the classifier is one batched
matmul, as in ``StackedMLP``. vmap's batching rules for batch norm and
max-pooling move the K axis around and were the slow part (2.3-2.6x the time
of the same work done model by model, on 2 CPU cores; README, "Benchmarks").
Both paths keep the same parameter layout; ``fold=False`` forces vmap.

Each model keeps its own batch-norm statistics (the running buffers are
batched, so train mode updates each model's own), its own dropout masks
(``randomness="different"``) and, if the K models were built with different
dropout rates, its own rate. ``sweep_fit`` trains it like a ``StackedMLP``.
"""
import copy
import inspect

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from .models import CNN
from .runtime import seed_all, seeded

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


CONV = (nn.Conv1d, nn.Conv2d)
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)
SPATIAL = CONV + BATCHNORM + (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveAvgPool1d,
                              nn.AdaptiveAvgPool2d)
FLAT = (nn.Linear, nn.Flatten)
ANYWHERE = (nn.ReLU, nn.Dropout, _Dropout)


def _unflatten(base):
    """Whether ``base`` opens with ``nn.Unflatten(1, ...)``, which turns a signal of
    shape (N, L) into (N, C, L): the folded path applies it to the input first."""
    return isinstance(base[0], nn.Unflatten) and base[0].dim == 1 and len(base) > 1


def _foldable(base):
    """Whether ``base`` is a Sequential the folded path computes exactly: a convolution
    first (optionally after an ``nn.Unflatten(1, ...)`` of the input), spatial layers
    until a Flatten, then linear layers."""
    if not (type(base) is nn.Sequential or isinstance(base, CNN)) or not len(base):
        return False  # another forward than Sequential's (CNN's only adds prepare())
    layers = list(base)[1:] if _unflatten(base) else list(base)
    if not isinstance(layers[0], CONV):
        return False
    flat = False
    for m in layers:
        ok = isinstance(m, ANYWHERE) or isinstance(m, FLAT if flat else SPATIAL + (nn.Flatten,))
        if isinstance(m, CONV):
            ok = ok and m.groups == 1 and m.padding_mode == "zeros" and \
                not isinstance(m.padding, str)
        if isinstance(m, BATCHNORM):
            ok = ok and m.affine and m.track_running_stats and m.momentum is not None
        if isinstance(m, nn.Flatten):
            ok = ok and m.start_dim == 1 and m.end_dim == -1
        if isinstance(m, nn.ReLU):
            ok = ok and not m.inplace
        if not ok:
            return False
        flat = flat or isinstance(m, FLAT)
    return True


def _architecture(model):
    """What K stacked models must share: module types and settings (a stride, an eps;
    only ``nn.Dropout``'s rate may differ), parameter and buffer shapes."""
    return ([(n, type(m).__name__, "" if type(m) is nn.Dropout else m.extra_repr())
             for n, m in model.named_modules()],
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

    def __init__(self, models, example_ndim=None, fold=None):
        super().__init__()
        models = list(models)
        if not models or not all(isinstance(m, nn.Module) for m in models):
            raise ValueError("StackedModel needs a non-empty list of nn.Module")
        arch = _architecture(models[0])
        if any(_architecture(m) != arch for m in models[1:]) or \
                any(type(m) is not type(models[0]) for m in models):
            raise ValueError("all models in a StackedModel must have the same architecture "
                             "(module types and settings, parameter and buffer shapes; a CNN or "
                             "MLP built with dropout=0 has no Dropout layer)")
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
                    self.register_buffer(_key(name + ".p"), torch.tensor(
                        rates, device=states[0][self._params[0]].device))
                    self._rates.append(name + ".p")
        self._base = [base]  # in a list: not a submodule (its tensors are on "meta")
        foldable = _foldable(base)
        if fold and not foldable:
            raise ValueError("fold=True needs an nn.Sequential (e.g. labkit.models.CNN) of "
                             f"{', '.join(t.__name__ for t in SPATIAL + FLAT)} starting with a "
                             "convolution")
        self.folded = foldable if fold is None else bool(fold)

    @classmethod
    def from_seeds(cls, build, seeds, example_ndim=None, fold=None):
        """Stack ``build()`` called once per local seed, each after ``seed_all(seed)``:
        model j starts from the weights a separate run seeded with ``seeds[j]`` would use."""
        return cls(seeded(build, seeds), example_ndim=example_ndim, fold=fold)

    @classmethod
    def from_grid(cls, build, grid, example_ndim=None, fold=None):
        """One model per point of ``grid`` (a ``Grid`` with a ``seed`` axis), seeded by it.
        ``build`` receives the grid axes it names as keywords, e.g. a dropout axis:
        ``from_grid(lambda dropout: CNN(1, 10, dropout=dropout, dims=1), grid)``."""
        names = [a for a in grid.axes if a != "seed" and a in
                 inspect.signature(build).parameters]
        models = []
        for j, seed in enumerate(grid["seed"]):
            seed_all(seed)
            models.append(build(**{a: grid[a][j] for a in names}))
        return cls(models, example_ndim=example_ndim, fold=fold)

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
        if self.folded:
            return self._folded(x, per_model)
        params = {n: getattr(self, _key(n)) for n in self._params}
        buffers = {n: getattr(self, _key(n)) for n in self._bufs + self._rates}
        run = vmap(self._call, in_dims=(0, 0, 0 if per_model else None), randomness="different")
        return run(params, buffers, x)

    def _folded(self, x, per_model):
        """The forward pass with the K models' channels side by side (see the module's doc)."""
        base, k = self._base[0], self.k
        if hasattr(base, "prepare"):  # the model's own input check and reshaping (CNN)
            one = base.prepare(x[0] if per_model else x)
            if one.ndim > (x.ndim - 1 if per_model else x.ndim):
                x = x.unsqueeze(2 if per_model else 1)
        children = list(base.named_children())
        if _unflatten(base):
            x = x.unflatten(2 if per_model else 1, base[0].unflattened_size)
            children = children[1:]
        n = x.shape[1 if per_model else 0]
        # h is shared (N, C, ...), folded (N, K*C, ...) or, after Flatten, stacked (K, N, F)
        h, mode = x, "shared"
        if per_model:
            h, mode = x.transpose(0, 1).reshape(n, -1, *x.shape[3:]), "folded"
        for name, m in children:
            get = lambda t: getattr(self, _key(f"{name}.{t}"))  # noqa: E731
            if mode == "shared" and isinstance(m, (nn.Dropout, _Dropout, BATCHNORM)):
                h, mode = h.repeat(1, k, *[1] * (h.ndim - 2)), "folded"
            if isinstance(m, CONV):
                conv = F.conv1d if isinstance(m, nn.Conv1d) else F.conv2d
                w = get("weight")
                b = get("bias").reshape(-1) if m.bias is not None else None
                h = conv(h, w.reshape(-1, *w.shape[2:]), b, m.stride, m.padding, m.dilation,
                         1 if mode == "shared" else k)
                mode = "folded"
            elif isinstance(m, BATCHNORM):
                if self.training:
                    get("num_batches_tracked").add_(1)
                h = F.batch_norm(h, get("running_mean").view(-1), get("running_var").view(-1),
                                 get("weight").reshape(-1), get("bias").reshape(-1),
                                 self.training, m.momentum, m.eps)
            elif isinstance(m, (nn.Dropout, _Dropout)):
                if self.training:
                    p = get("p") if name + ".p" in self._rates else torch.full(
                        (k,), float(m.p), device=h.device)
                    keep = (1 - p).view(k, 1, 1) if mode == "stacked" else (1 - p).view(1, k, 1)
                    shape = h.shape
                    h = h.reshape(k, n, -1) if mode == "stacked" else h.reshape(n, k, -1)
                    h = (h * (torch.rand_like(h) < keep) / keep).view(shape)
            elif isinstance(m, nn.Flatten):
                h = h.flatten(1) if mode == "shared" else h.reshape(n, k, -1).transpose(0, 1)
                mode = "shared" if mode == "shared" else "stacked"
            elif isinstance(m, nn.Linear):
                w = get("weight").transpose(1, 2)
                h = torch.baddbmm(get("bias")[:, None], h, w) if mode == "stacked" else \
                    torch.matmul(h, w) + get("bias")[:, None]
                mode = "stacked"
            else:  # ReLU and pooling act channel by channel
                h = m(h)
        if mode == "shared":
            return h.expand(k, *h.shape)
        return h if mode == "stacked" else h.reshape(n, k, -1, *h.shape[2:]).transpose(0, 1)

    def unstack(self, index, template):
        """Copy model ``index``'s parameters and buffers into ``template`` (a module of
        the same architecture, e.g. freshly built) and return it. A dropout rate is
        the template's own (it is a module setting, not a tensor)."""
        with torch.no_grad():
            for n, t in list(template.named_parameters()) + list(template.named_buffers()):
                t.copy_(getattr(self, _key(n))[index])
        return template
