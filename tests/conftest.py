"""Shared test settings: one torch thread (small ops are faster so), and a private cache."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MINIHASH_CACHE", str(tmp_path_factory.mktemp("minihash-cache")))
    yield
    mp.undo()
