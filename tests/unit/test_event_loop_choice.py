"""use_event_loop: which loop new event loops of the worker process are; the collector's
tuning."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest
import uvloop

from eventpro.settings import Settings
from eventpro.worker import GC_OLDER_THRESHOLDS, tune_garbage_collector, use_event_loop


@pytest.fixture()
def restore_policy() -> Iterator[None]:
    policy = asyncio.get_event_loop_policy()
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(policy)


def _new_loop_type() -> type:
    loop = asyncio.new_event_loop()
    try:
        return type(loop)
    finally:
        loop.close()


def test_uvloop_makes_new_loops_uvloop(restore_policy: None) -> None:
    assert use_event_loop("uvloop") == "uvloop"
    assert _new_loop_type() is uvloop.Loop


def test_asyncio_makes_new_loops_asyncio_loops(restore_policy: None) -> None:
    use_event_loop("uvloop")
    assert use_event_loop("asyncio") == "asyncio"
    assert not issubclass(_new_loop_type(), uvloop.Loop)
    assert issubclass(_new_loop_type(), asyncio.AbstractEventLoop)


def test_the_default_is_uvloop_and_unknown_loops_are_refused() -> None:
    assert Settings().event_loop == "uvloop"
    with pytest.raises(ValueError, match="event_loop"):
        Settings(event_loop="trio")  # type: ignore[arg-type]


def test_the_collector_is_tuned_and_start_up_objects_frozen() -> None:
    before = gc.get_threshold()
    try:
        assert tune_garbage_collector(12_345) == (12_345, *GC_OLDER_THRESHOLDS)
        assert gc.get_threshold() == (12_345, *GC_OLDER_THRESHOLDS)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_young_threshold_must_be_positive() -> None:
    assert Settings(gc_young_threshold=700).gc_young_threshold == 700
    with pytest.raises(ValueError, match="gc_young_threshold"):
        Settings(gc_young_threshold=0)
