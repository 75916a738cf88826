"""Data builders. Every split is a pair of tensors kept in memory on the device.

Every ``seed`` argument is a local seed, shifted by ``LABKIT_SEED`` (see ``labkit.runtime``).
"""
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .runtime import device as default_device, generator, seed as actual_seed

__all__ = ["Split", "Dataset", "from_arrays", "mnist1d", "mnist1d_published", "digits",
           "regression", "cifar10", "flip_labels", "resample"]


@dataclass(frozen=True)
class Split:
    """Inputs ``x`` and targets ``y``, first dimension = examples."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self):
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} rows but y has {self.y.shape[0]}")

    def __len__(self):
        return self.x.shape[0]

    def to(self, device):
        return Split(self.x.to(device), self.y.to(device))

    def take(self, index):
        return Split(self.x[index], self.y[index])


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits; ``num_classes`` is None for regression."""

    train: Split
    val: Split
    test: Split
    num_classes: int | None = None

    def to(self, device):
        return Dataset(self.train.to(device), self.val.to(device), self.test.to(device),
                       self.num_classes)

    @property
    def in_shape(self):
        return tuple(self.train.x.shape[1:])


def _check_sizes(available, **sizes):
    for name, n in sizes.items():
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be a positive int, got {n!r}")
    if sum(sizes.values()) > available:
        raise ValueError(f"asked for {sum(sizes.values())} examples "
                         f"({', '.join(f'{k}={v}' for k, v in sizes.items())}) "
                         f"but only {available} exist")


def from_arrays(x, y, n_train, n_val, n_test, seed=0, num_classes=None, device=None):
    """Shuffle ``x, y`` with local seed ``seed`` and cut them into train, val and test."""
    x, y = torch.as_tensor(np.asarray(x)), torch.as_tensor(np.asarray(y))
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    _check_sizes(x.shape[0], n_train=n_train, n_val=n_val, n_test=n_test)
    x = x.float()
    y = y.long() if num_classes else y.float()
    order = torch.randperm(x.shape[0], generator=generator(seed))
    cuts = np.cumsum([0, n_train, n_val, n_test])
    parts = [Split(x[order[a:b]], y[order[a:b]]) for a, b in zip(cuts[:-1], cuts[1:])]
    return Dataset(*parts, num_classes=num_classes).to(device or default_device())


def mnist1d(n_train=4000, n_val=1000, n_test=1000, seed=0, device=None):
    """MNIST-1D (Greydanus, 2020): 10 classes of 40-sample signals, generated locally."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split = n_train + n_val + n_test, 0.5
    args.seed = actual_seed(seed)
    d = make_dataset(args)
    x = np.concatenate([d["x"], d["x_test"]])
    y = np.concatenate([d["y"], d["y_test"]])
    return from_arrays(x, y, n_train, n_val, n_test, seed, num_classes=10, device=device)


def mnist1d_published(n_val=500, seed=0, device=None):
    """MNIST-1D's published split (Greydanus & Kobak): the 4,000 training and 1,000
    test signals of ``make_dataset(get_dataset_args())``, the split the paper's
    baselines were measured on.

    The data never changes with ``LABKIT_SEED``: the test split is the paper's.
    Validation is ``n_val`` signals drawn out of the 4,000 with local seed ``seed``
    (which ``LABKIT_SEED`` shifts); training is the rest.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    if not isinstance(n_val, int) or not 0 < n_val < 4000:
        raise ValueError(f"n_val must be an int in (0, 4000), got {n_val!r}")
    d = make_dataset(get_dataset_args())
    x, y = torch.as_tensor(d["x"]).float(), torch.as_tensor(d["y"]).long()
    order = torch.randperm(len(x), generator=generator(seed))
    train, val = order[n_val:], order[:n_val]
    test = Split(torch.as_tensor(d["x_test"]).float(), torch.as_tensor(d["y_test"]).long())
    return Dataset(Split(x[train], y[train]), Split(x[val], y[val]), test,
                   num_classes=10).to(device or default_device())


def digits(n_train=1000, n_val=397, n_test=400, seed=0, image=False, device=None):
    """scikit-learn's 8x8 handwritten digits, scaled to [0, 1].

    ``image=True`` keeps them as ``(1, 8, 8)`` images, otherwise 64-long vectors.
    """
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 1, 8, 8) if image else x / 16.0
    return from_arrays(x, y, n_train, n_val, n_test, seed, num_classes=10, device=device)


def regression(n_train=30, n_val=200, n_test=1000, noise=0.3, seed=0, device=None):
    """1-D regression: ``y = sin(2.5 x) + noise`` with ``x`` uniform on [-2, 2].

    Validation and test targets carry the same noise, so their best
    possible mean squared error is ``noise**2``.
    """
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    n = n_train + n_val + n_test
    rng = np.random.default_rng(actual_seed(seed))
    x = rng.uniform(-2, 2, size=(n, 1))
    y = np.sin(2.5 * x) + noise * rng.standard_normal((n, 1))
    return from_arrays(x, y, n_train, n_val, n_test, seed, device=device)


def flip_labels(split, fraction, num_classes, seed=0):
    """A copy of ``split`` with ``fraction`` of its labels replaced by a different class."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    g = generator(seed)
    n = len(split)
    chosen = torch.randperm(n, generator=g)[: round(fraction * n)].to(split.y.device)
    shift = torch.randint(1, num_classes, (len(chosen),), generator=g).to(split.y.device)
    y = split.y.clone()
    y[chosen] = (y[chosen] + shift) % num_classes
    return Split(split.x, y)


def resample(split, n, seed, replace=True):
    """``n`` examples drawn from ``split`` (bootstrap when ``replace``)."""
    g = generator(seed)
    if replace:
        idx = torch.randint(len(split), (n,), generator=g)
    else:
        if n > len(split):
            raise ValueError(f"cannot draw {n} of {len(split)} examples without replacement")
        idx = torch.randperm(len(split), generator=g)[:n]
    return split.take(idx.to(split.x.device))


CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _read_cifar_batch(path):
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    try:
        data, labels = batch[b"data"], batch[b"labels"]
    except (KeyError, TypeError):
        raise ValueError(f"{path} is not a CIFAR-10 batch: no b'data'/b'labels' keys") from None
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != data.shape[0]:
        raise ValueError(f"{path}: expected data of shape (N, 3072) and N labels, "
                         f"got {data.shape} and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def cifar10(root, n_val=5000, device=None):
    """CIFAR-10 from the python version's files (``data_batch_1..5``, ``test_batch``).

    ``root`` is the folder holding them (or its parent, holding
    ``cifar-10-batches-py``). Nothing is downloaded. The last ``n_val``
    training images form the validation split. Images are float in [0, 1].
    """
    root = Path(root)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    missing = [name for name in CIFAR_FILES if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 files missing in {root}: {', '.join(missing)}. Download "
            "'CIFAR-10 python version' yourself and unpack it there; labkit never downloads.")
    train = [_read_cifar_batch(root / name) for name in CIFAR_FILES[:-1]]
    x = np.concatenate([b[0] for b in train])
    y = np.concatenate([b[1] for b in train])
    x_test, y_test = _read_cifar_batch(root / "test_batch")
    if not 0 <= n_val < len(x):
        raise ValueError(f"n_val must be in [0, {len(x)}), got {n_val}")
    if y.max(initial=0) > 9 or y_test.max(initial=0) > 9 or min(y.min(), y_test.min()) < 0:
        raise ValueError("CIFAR-10 labels must be in 0..9")

    def to_split(a, b):
        return Split(torch.from_numpy(a).float().div_(255), torch.from_numpy(b))

    cut = len(x) - n_val
    return Dataset(to_split(x[:cut], y[:cut]), to_split(x[cut:], y[cut:]),
                   to_split(x_test, y_test), num_classes=10).to(device or default_device())
