import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def small_mnist1d():
    from labkit.data import mnist1d

    return mnist1d(600, 200, 100, seed=1)
