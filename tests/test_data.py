import pickle

import numpy as np
import pytest
import torch

from labkit import data as D


def test_mnist1d_shapes_and_disjoint_splits(small_mnist1d):
    d = small_mnist1d
    assert (len(d.train), len(d.val), len(d.test)) == (600, 200, 100)
    assert d.in_shape == (40,) and d.num_classes == 10
    assert d.train.x.dtype == torch.float32 and d.train.y.dtype == torch.long
    assert set(d.train.y.unique().tolist()) == set(range(10))
    rows = {tuple(r) for r in d.train.x.round(decimals=5).tolist()}
    assert not rows & {tuple(r) for r in d.val.x.round(decimals=5).tolist()}


def test_mnist1d_is_generated_not_downloaded(monkeypatch):
    import mnist1d.data

    def refuse(*a, **k):
        raise AssertionError("get_dataset downloads; labkit must use make_dataset")

    monkeypatch.setattr(mnist1d.data, "get_dataset", refuse)
    d = D.mnist1d(50, 20, 20, seed=0)
    assert len(d.train) == 50


def test_builders_are_deterministic():
    a, b = D.regression(seed=4), D.regression(seed=4)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, D.regression(seed=5).train.x)


def test_digits_flat_and_image():
    flat = D.digits(100, 50, 50)
    img = D.digits(100, 50, 50, image=True)
    assert flat.in_shape == (64,) and img.in_shape == (1, 8, 8)
    assert 0.0 <= float(flat.train.x.min()) and float(flat.train.x.max()) <= 1.0


def test_regression_noise_level():
    d = D.regression(n_train=10, n_val=10, n_test=20000, noise=0.5, seed=0)
    residual = d.test.y - torch.sin(2.5 * d.test.x)
    assert abs(float(residual.std()) - 0.5) < 0.02


def test_flip_labels_changes_exactly_that_fraction(small_mnist1d):
    s = small_mnist1d.train
    noisy = D.flip_labels(s, 0.25, 10, seed=0)
    assert int((noisy.y != s.y).sum()) == round(0.25 * len(s))
    assert torch.equal(noisy.x, s.x)


def test_resample():
    s = D.Split(torch.arange(10.0)[:, None], torch.arange(10))
    boot = D.resample(s, 10, seed=0)
    assert len(boot) == 10 and torch.equal(boot.x[:, 0].long(), boot.y)
    assert len(set(D.resample(s, 10, seed=0, replace=False).y.tolist())) == 10


def _write_cifar(folder, n=4, labels=None):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in D.CIFAR_FILES:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": list(labels if labels is not None else rng.integers(0, 10, n))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)


def test_cifar10_reads_python_batches(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    d = D.cifar10(tmp_path, n_val=4)
    assert (len(d.train), len(d.val), len(d.test)) == (16, 4, 4)
    assert d.in_shape == (3, 32, 32)
    assert 0.0 <= float(d.train.x.min()) and float(d.train.x.max()) <= 1.0
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as f:
        raw = pickle.load(f)
    first = torch.tensor(raw[b"data"][0], dtype=torch.float32).view(3, 32, 32) / 255
    assert torch.allclose(d.test.x[0].cpu(), first)
    assert d.test.y.tolist() == list(raw[b"labels"])


def test_mnist1d_published_is_the_papers_split_whatever_the_seed(monkeypatch):
    from mnist1d.data import get_dataset_args, make_dataset

    from labkit.data import mnist1d_published

    ref = make_dataset(get_dataset_args())
    d = mnist1d_published(n_val=500)
    assert (len(d.train), len(d.val), len(d.test)) == (3500, 500, 1000)
    assert torch.equal(d.test.x, torch.as_tensor(ref["x_test"]).float())
    assert torch.equal(d.test.y, torch.as_tensor(ref["y_test"]))
    # train + val is the published training set, each signal once
    pooled = torch.cat([d.train.x, d.val.x])
    assert sorted(map(tuple, pooled.tolist())) == sorted(
        map(tuple, torch.as_tensor(ref["x"]).float().tolist()))
    monkeypatch.setenv("LABKIT_SEED", "5")
    other = mnist1d_published(n_val=500)
    assert torch.equal(other.test.x, d.test.x)          # the test split never moves
    assert not torch.equal(other.val.x, d.val.x)        # the validation draw does
    with pytest.raises(ValueError, match="n_val"):
        mnist1d_published(n_val=4000)
