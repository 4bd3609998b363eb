"""bulk_allocation: the cyclic collector paused inside, its state given back after (also on error)."""

from __future__ import annotations

import gc

import pytest

from hardmail.core.bulk import bulk_allocation


def test_paused_inside_and_enabled_after() -> None:
    assert gc.isenabled()
    with bulk_allocation():
        assert not gc.isenabled()
        with bulk_allocation():  # nested: the inner exit leaves it paused
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_enabled_again_after_an_error() -> None:
    with pytest.raises(ValueError), bulk_allocation():
        raise ValueError("boom")
    assert gc.isenabled()


def test_left_disabled_when_it_was() -> None:
    gc.disable()
    try:
        with bulk_allocation():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
