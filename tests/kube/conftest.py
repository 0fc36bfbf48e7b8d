"""Fixtures for the kube tests; the emulator and fake controllers live in ``kube_emulator``."""
import pytest

from kube_emulator import Cluster


@pytest.fixture
def cluster():
    """An empty in-memory API server; at the end, every custom object it stored must have
    matched its CRD schema."""
    with Cluster() as emulator:
        yield emulator
        assert emulator.invalid_objects() == []
