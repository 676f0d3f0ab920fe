"""The daemon's garbage collection in the main loop (automatic collections are off while it
serves, so the MIDI callback never runs one)."""

from __future__ import annotations

import gc

import pytest

from melodyflowd.service.daemon import GC_OLDER, GC_YOUNG, collect_garbage


@pytest.fixture
def gc_off():
    was = gc.isenabled()
    gc.disable()
    gc.collect()
    yield
    if was:
        gc.enable()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_nothing_to_do_below_the_threshold(gc_off) -> None:
    assert collect_garbage() is None


def test_cycles_are_collected_once_enough_objects_are_new(gc_off) -> None:
    import weakref

    a, b = Node(), Node()
    a.other, b.other = b, a
    probe = weakref.ref(a)
    del a, b
    assert probe() is not None                     # a cycle: only the collector frees it
    keep = [[] for _ in range(GC_YOUNG)]           # new container objects
    assert collect_garbage() == 0
    assert probe() is None
    assert gc.get_count()[0] < GC_YOUNG
    del keep


def test_older_generations_follow_the_same_rule(gc_off) -> None:
    seen = []
    keep = []
    for _ in range((GC_OLDER + 1) ** 2 + 1):       # 10 x (10 young, 1 older), then 2
        keep.append([[] for _ in range(GC_YOUNG)])
        seen.append(collect_garbage())
    assert seen.count(1) >= 1 and seen.count(2) >= 1
    assert seen[:GC_OLDER] == [0] * GC_OLDER
    assert not gc.isenabled()                      # it never turns automatic collection on
