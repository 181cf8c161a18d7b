"""Shared test fixtures."""

import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes tens of seconds, still part of every run")


@pytest.fixture(autouse=True)
def _one_thread():
    """Unit tests use tiny shapes: a thread pool only adds latency (a lot of it on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
