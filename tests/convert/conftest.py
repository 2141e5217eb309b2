"""Keep every conversion test off the user's caches, the shipped hub and the network."""

import pytest



@pytest.fixture(autouse=True)
def _isolated(isolated_hub):
    return isolated_hub
