"""`Writer.default()`: the one home of "the writer a mission without its own uses"."""

from __future__ import annotations

import pytest

from orchestrator.allocation import default_writer_id
from orchestrator.managers.base import writer_for, writers_for
from registry.models import Writer
from tests import factories

pytestmark = pytest.mark.django_db


def test_the_default_is_the_enabled_writer_marked_default() -> None:
    factories.WriterFactory(name="other")
    chosen = factories.WriterFactory(name="main", is_default=True)
    assert Writer.default() == chosen
    assert default_writer_id() == chosen.pk


def test_a_disabled_default_means_no_default() -> None:
    factories.WriterFactory(name="main", is_default=True, enabled=False)
    assert Writer.default() is None
    assert default_writer_id() is None


def test_missions_without_a_writer_get_the_default_and_the_rest_their_own() -> None:
    default = factories.WriterFactory(name="main", is_default=True)
    own = factories.WriterFactory(name="own")
    plain = factories.MissionFactory.create(writer=None)
    pinned = factories.MissionFactory.create(writer=own)
    assert writers_for([plain, pinned]) == {plain.pk: default, pinned.pk: own}
    assert writer_for(plain) == default
    assert writer_for(pinned) == own


def test_other_defaults_excludes_the_row_itself_and_sees_disabled_ones() -> None:
    old = factories.WriterFactory(name="old", is_default=True, enabled=False)
    new = Writer(name="new")
    assert list(new.other_defaults()) == [old]
    assert list(old.other_defaults()) == []
