import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def small_mnist1d():
    from labkit.data import mnist1d

    return mnist1d(600, 200, 100, seed=1)


def pytest_configure(config):
    """Once per run (not once per xdist worker): no screenshots of pages that no longer
    exist (tests/test_site.py writes one per English page)."""
    if not hasattr(config, "workerinput"):
        import shutil
        from pathlib import Path
        shutil.rmtree(Path(__file__).resolve().parents[1] / "_build" / "screenshots",
                      ignore_errors=True)
