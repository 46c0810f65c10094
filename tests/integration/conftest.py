"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from tests import factories


@pytest.fixture
def login(client: Client) -> Callable[[str | None], Client]:
    """A dashboard client logged in as a fresh user with `role` (None: no role)."""

    def make(role: str | None) -> Client:
        client.force_login(factories.UserFactory(role=role))
        return client

    return make
