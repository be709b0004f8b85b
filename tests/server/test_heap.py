"""A serving process freezes what it built to start, so full collections skip it."""

from __future__ import annotations

import gc

from parley.server.serve import settle_heap


def test_the_start_up_heap_is_frozen_and_later_garbage_still_collected() -> None:
    try:
        settle_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the modules and objects imported so far

        class Node:
            other: object = None

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle made after the freeze
        alive = len(gc.get_objects())
        del a, b
        assert gc.collect() >= 2
        assert len(gc.get_objects()) < alive
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
