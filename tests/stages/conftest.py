"""Fixtures for the stage tests that talk to a cluster: the in-memory API server of tests/kube."""
import pytest

from tests.kube.kube_emulator import Cluster


@pytest.fixture
def cluster():
    """An empty in-memory API server; at the end, every custom object it stored must have
    matched its CRD schema."""
    with Cluster() as emulator:
        yield emulator
        assert emulator.invalid_objects() == []
