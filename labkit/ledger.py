"""The ledger's recipes: each regulariser of the course as one setting of one training run.

A ``Recipe`` switches regularisers on (weight decay, L1, dropout, batch norm, random
shifts, input noise, label smoothing, mixup, a cosine schedule, early stopping,
pruning, an ensemble, weight averaging (EMA or SWA), SAM). ``train_recipes`` trains
every (recipe, seed) pair as K stacked models, in a few stacks (see ``_group_key``),
with the same initial weights for the same seed, the same data and the same epochs.
Each chapter's lab writes its regulariser out and checks it; these are the compact
versions the ledger and the capstone share, so that both train exactly the same
recipes.
"""
import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .data import Dataset
from .runtime import generator, seed as actual_seed, seeds as local_seeds
from .sweep import sweep_fit

__all__ = ["Recipe", "RecipeRuns", "train_recipes", "random_shift", "WeightAverages"]

HOOK_SEED = 5000  # the regularisers' generator: local seed config.seed + HOOK_SEED


@dataclass(frozen=True)
class Recipe:
    """One training recipe; every field at its default is the plain baseline.

    weight_decay: AdamW's decoupled decay.  l1: coefficient of sum |W| over weight
    matrices.  dropout: rate after each hidden layer.  shift: random circular shifts
    of up to +-shift samples.  noise: std of Gaussian input noise.  smoothing: label
    smoothing epsilon.  mixup: Beta(alpha, alpha) of mixup (0: off).  schedule:
    cosine decay of the rate over the epochs.  patience: early stopping on the
    validation accuracy, restoring the best weights.  prune: fraction of weights
    removed by magnitude halfway, then held at zero while training goes on.  members:
    ensemble size (softmax outputs averaged; costs ``members`` times the training).
    ema: decay per step of an exponential moving average of the weights, from the
    first step, which replaces them at the end.  swa: the share of the epochs, at the end, whose end-of-epoch
    weights are averaged equally (stochastic weight averaging), the average replacing
    them.  (With batch norm, the averaged weights get statistics recomputed in one
    pass over the training data; with early stopping, the average covers the steps
    before the stop.)  sam: SAM's radius rho (two gradient evaluations a step).
    """

    weight_decay: float = 0.0
    l1: float = 0.0
    dropout: float = 0.0
    batchnorm: bool = False
    shift: int = 0
    noise: float = 0.0
    smoothing: float = 0.0
    mixup: float = 0.0
    schedule: bool = False
    patience: int | None = None
    prune: float = 0.0
    members: int = 1
    ema: float = 0.0
    swa: float = 0.0
    sam: float = 0.0

    def __post_init__(self):
        if self.members < 1 or not 0 <= self.prune < 1 or not 0 <= self.smoothing < 1 \
                or not 0 <= self.ema < 1 or not 0 <= self.swa <= 1:
            raise ValueError(f"Recipe: members >= 1, prune, smoothing and ema in [0, 1), "
                             f"swa in [0, 1]; got {self}")
        if min(self.weight_decay, self.l1, self.dropout, self.shift, self.noise,
               self.mixup, self.sam) < 0:
            raise ValueError(f"Recipe: strengths must be >= 0; got {self}")
        if self.ema and self.swa:
            raise ValueError(f"Recipe: ema and swa are two averages of the same weights; "
                             f"a recipe takes one; got {self}")

    def changes(self):
        """The fields that differ from the baseline, as a dict."""
        base = Recipe()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(base, f.name)}

    def label(self):
        return ", ".join(f"{k}={v}" for k, v in self.changes().items()) or "baseline"

    def plus(self, other):
        """This recipe with ``other``'s changes added."""
        return dataclasses.replace(self, **other.changes())


def random_shift(x, generator, bound):
    """Circularly shift each signal (last axis) by a random offset, uniform on the
    integers in [-bound, bound]; ``bound`` broadcasts against ``x.shape[:-1]``."""
    *lead, length = x.shape
    u = torch.rand(lead, generator=generator).to(x.device)
    offset = (u * (2 * bound + 1)).floor().long() - bound
    index = (torch.arange(length, device=x.device) - offset[..., None]) % length
    return x.gather(-1, index)


class RecipeRuns:
    """Trained stacks of ``train_recipes``: ``val_acc`` has shape (recipes, seeds);
    ``accuracy(split, r)`` evaluates recipe ``r`` on another split (the test split,
    once, at the end)."""

    def __init__(self, recipes, n_seeds, parts, val):
        self.recipes, self.n_seeds, self.parts = recipes, n_seeds, parts
        self.val_acc = self.accuracy(val)

    @torch.no_grad()
    def probabilities(self, split, r, outputs=None):
        """Softmax outputs of recipe ``r``'s models on ``split``, averaged over
        ensemble members: shape (seeds, N, classes). ``outputs`` (a dict) keeps each
        stack's outputs on ``split``, so recipes sharing a stack run it once."""
        model, rows = self.parts[r]
        outputs = {} if outputs is None else outputs
        if model not in outputs:
            model.eval()
            outputs[model] = model(split.x).softmax(-1)
        probs = outputs[model]
        members = self.recipes[r].members
        return probs[rows].reshape(self.n_seeds, members, *probs.shape[1:]).mean(1)

    def correct(self, split, recipes=None):
        """Which examples of ``split`` each run got right: shape (recipes, seeds, N),
        for ``labkit.stats.paired_bootstrap`` over the examples."""
        rs = range(len(self.recipes)) if recipes is None else recipes
        outputs = {}  # one forward pass per stack, however many recipes it holds
        return np.stack([(self.probabilities(split, r, outputs).argmax(-1) == split.y)
                         .cpu().numpy() for r in rs])

    def accuracy(self, split, recipes=None):
        return self.correct(split, recipes).mean(-1, dtype=np.float32)


def _group_key(r):
    """Recipes share a stack when they train alike. Those that need a hook (shifts or
    noise, soft targets, an L1 term) stack apart from those that need none, which then
    take the sweep's written-out backward instead of autograd's (on 2 CPU cores a
    hooked stack cost about 3x as much per model); dropout stacks apart too (it would
    draw masks for every model of a stack, and the dropout group's draws are kept as
    they were)."""
    return (r.batchnorm, r.schedule, r.patience, r.prune, r.shift > 0 or r.noise > 0,
            r.smoothing > 0 or r.mixup > 0, r.l1 > 0, r.dropout > 0,
            r.ema > 0 or r.swa > 0, r.sam > 0)


def train_recipes(recipes, build, data, config, n_seeds, stop=None):
    """Train ``n_seeds`` runs of every recipe; return ``RecipeRuns``.

    ``build(batchnorm, dropout, seeds)`` returns K stacked models (a list of K dropout
    rates, K local seeds); seed ``s`` of every recipe starts from the same weights,
    and ensemble member ``m`` from seed ``s + 1000 m``. ``config`` (a FitConfig)
    sets the optimizer, rate, batch size and epochs shared by all. Every stack sees
    the training batches in the same order (the regularisers draw their random
    numbers from a generator of their own).

    ``stop`` (a Split) is what early stopping watches. Give one apart from
    ``data.val``: a recipe scored on the split that chose its stopping epoch would
    be scored optimistically against the others, which are scored at their last epoch.
    """
    recipes = list(recipes)
    groups = {}
    for i, r in enumerate(recipes):
        groups.setdefault(_group_key(r), []).append(i)
    parts = {}
    for key, members in groups.items():
        batchnorm, schedule, patience, prune = key[:4]
        rows, per_model, start = {}, [], 0
        for i in members:
            r = recipes[i]
            for s in local_seeds(n_seeds):
                for m in range(r.members):
                    per_model.append((r, s + 1000 * m))
            rows[i] = slice(start, len(per_model))
            start = len(per_model)
        model = build(batchnorm, [r.dropout for r, _ in per_model], [s for _, s in per_model])
        model = model.to(data.train.x.device)
        watched = data if patience is None or stop is None else \
            Dataset(data.train, stop, data.test, data.num_classes)
        _fit_group(model, watched, config, [r for r, _ in per_model], schedule, patience,
                   prune)
        for i in members:
            parts[i] = (model, rows[i])
    return RecipeRuns(recipes, n_seeds, parts, data.val)


def _hooks(model, recipes, config, dev, classes):
    k = len(recipes)
    col = lambda name: torch.tensor([float(getattr(r, name)) for r in recipes], device=dev)
    shift, noise, smooth, mix = col("shift"), col("noise"), col("smoothing"), col("mixup")
    l1, wd = col("l1"), [r.weight_decay for r in recipes]
    # the hooks' own random numbers, so that every stack shuffles alike (sweep_fit
    # draws each epoch's batch order from the generator it passes the hooks)
    g = generator(config.seed + HOOK_SEED)
    rng = np.random.default_rng(actual_seed(config.seed + HOOK_SEED))  # mixup's Beta
    hooks = {}
    if (shift > 0).any() or (noise > 0).any():
        def augment(x, _):
            x = x.expand(k, *x.shape) if x.ndim == 2 else x
            x = random_shift(x, g, shift.long()[:, None])
            return x + noise[:, None, None] * torch.randn(x.shape, generator=g).to(dev)
        hooks["augment"] = augment
    if (smooth > 0).any() or (mix > 0).any():
        alphas = [r.mixup for r in recipes]

        def transform(x, y, _):
            t = F.one_hot(y, classes).float()
            t = t.expand(k, *t.shape) if t.ndim == 2 else t
            t = t * (1 - smooth[:, None, None]) + smooth[:, None, None] / classes
            x = x.expand(k, *x.shape) if x.ndim == 2 else x
            lam = torch.tensor([rng.beta(a, a) if a > 0 else 1.0 for a in alphas],
                               dtype=x.dtype, device=dev)[:, None, None]
            perm = torch.rand(k, x.shape[1], generator=g).argsort(1).to(dev)[..., None]
            x = lam * x + (1 - lam) * x.gather(1, perm.expand_as(x))
            t = lam * t + (1 - lam) * t.gather(1, perm.expand_as(t))
            return x, t
        hooks["transform"] = transform
    if (l1 > 0).any() or any(r.prune for r in recipes):
        if not hasattr(model, "weights"):
            raise ValueError("l1 and prune act on a StackedMLP's weight matrices "
                             "(model.weights); this stack has none")
    if (l1 > 0).any():
        hooks["penalty"] = lambda model: l1 * sum(w.abs().flatten(1).sum(1)
                                                  for w in model.weights)
    return hooks, wd


def _fit_group(model, data, config, recipes, schedule, patience, prune):
    dev = data.train.x.device
    hooks, wd = _hooks(model, recipes, config, dev, data.num_classes)
    epochs = config.epochs
    cosine = (lambda e: 0.5 * (1 + math.cos(math.pi * e / epochs))) if schedule else None
    # the runs are scored on their final models: only early stopping watches a split
    # every epoch (the stop split, as data.val), and no other pass is made
    cfg = dataclasses.replace(config, **hooks, lr_schedule=cosine, monitor="val_acc",
                              patience=patience, restore_best=True,
                              curves=("val",) if patience else ())
    steps = math.ceil(len(data.train) / config.batch_size)
    after = [_pruner(steps, prune, config)] if prune else []
    averages = None
    if any(r.ema or r.swa for r in recipes):
        averages = WeightAverages(model, [r.ema for r in recipes],
                                  [r.swa for r in recipes], steps, epochs)
        after.append(averages)
    if after:
        cfg = dataclasses.replace(cfg, after_step=lambda model, lr: [a(model, lr)
                                                                   for a in after])
    rho = [r.sam for r in recipes] if any(r.sam for r in recipes) else None
    sweep_fit(model, data, cfg, weight_decay=wd, rho=rho)
    if averages is not None:
        averages.load_into(model, data.train.x, config.batch_size)


def _pruner(steps_per_epoch, fraction, config):
    """``after_step`` that, halfway through the epochs, removes the ``fraction`` of
    each model's weights smallest in magnitude (one threshold over all its weight
    matrices) and from then on holds them at zero; the optimizer runs on."""
    halfway, step, masks = steps_per_epoch * (config.epochs // 2), [0], []

    def after_step(model, lr):
        step[0] += 1
        if step[0] == halfway:
            flat = torch.cat([w.abs().flatten(1) for w in model.weights], 1)
            cut = flat.quantile(fraction, dim=1, keepdim=True)
            masks.extend((w.abs().flatten(1) > cut).reshape(w.shape).to(w.dtype)
                         for w in model.weights)
        for w, mask in zip(model.weights, masks):
            w.mul_(mask)
    return after_step


class WeightAverages:
    """``after_step`` that averages each model's weights as it trains: model k keeps an
    EMA with decay ``ema[k]`` per step (the first step's weights, then
    ``avg = d avg + (1 - d) w``) or, if ``swa[k]`` > 0, the equal average of its
    end-of-epoch weights over the last ``round(swa[k] * epochs)`` epochs (at least
    one); 0 and 0: no average. A model stopped early (rate 0) is averaged no more.
    ``load_into`` then puts the averages in place of the weights."""

    def __init__(self, model, ema, swa, steps_per_epoch, epochs):
        dev = next(model.parameters()).device
        self.decay = torch.tensor(ema, dtype=torch.float32, device=dev)
        first = [epochs - max(1, round(s * epochs)) if s else epochs for s in swa]
        self.first = torch.tensor(first, device=dev)  # first epoch SWA takes (from 0)
        self.steps, self.step = steps_per_epoch, 0
        self.n = torch.zeros(len(ema), device=dev)      # updates so far, per model
        self.avg = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def __call__(self, model, lr):
        self.step += 1
        done, within = divmod(self.step, self.steps)   # epochs done, steps into the next
        ema = (self.decay > 0) & (lr > 0)
        # at the end of epoch done - 1 (from 0): SWA takes it if it is in the window
        swa = (self.first <= done - 1) & (lr > 0) if within == 0 else torch.zeros_like(ema)
        # the new weights' share in the average: EMA 1 - d (1 at the first update), SWA
        # 1 / (n + 1); zero for a model not updated at this step
        w = torch.where(ema, torch.where(self.n > 0, 1 - self.decay, 1.0), 0.0)
        w = torch.where(swa, 1 / (self.n + 1), w)
        self.n += (ema | swa).float()
        for a, p in zip(self.avg, model.parameters()):
            a.lerp_(p, w.view(-1, *[1] * (p.ndim - 1)))

    @torch.no_grad()
    def load_into(self, model, x, batch_size):
        """Each averaged model's weights replaced by its average; with batch norm, its
        statistics recomputed on ``x`` (one pass in training mode, no dropout, each
        statistic the mean of the batches' values). Models never averaged keep theirs."""
        has = self.n > 0
        for a, p in zip(self.avg, model.parameters()):
            p.copy_(torch.where(has.view(-1, *[1] * (p.ndim - 1)), a, p))
        if not getattr(model, "batchnorm", False):
            return
        kept = [b.clone() for b in model.buffers()]
        was, dropout, momentum = model.training, model.any_dropout, model.momentum
        model.train()
        model.any_dropout = False
        for t, i in enumerate(range(0, len(x), batch_size), start=1):
            model.momentum = 1 / t
            model(x[i:i + batch_size])
        model.train(was)
        model.any_dropout, model.momentum = dropout, momentum
        for b, k in zip(model.buffers(), kept):
            b.copy_(torch.where(has.view(-1, *[1] * (b.ndim - 1)), b, k)
                    if b.shape[:1] == has.shape else k)
