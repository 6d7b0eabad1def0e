"""Keep the garbage collector's full pass out of the 20 Hz tick.

A process that flies drones holds a few hundred thousand long-lived Python objects once it has
started: imported code, TorchScript modules and their graphs, rclpy. CPython's oldest-generation
collection walks all of them, and it comes when allocation counts say so, in the middle of
whatever runs then: in the swarm runtime at N = 50 (274,000 tracked objects) one such pass took
117 ms and made a 139 ms tick, nearly three periods. `gc.freeze` moves every object alive at the
end of start-up into a permanent generation that collections skip; what is allocated later is
collected as usual, so only garbage cycles among the start-up objects are never reclaimed.
"""
from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


def freeze_startup_objects() -> int:
    """Collect once, then exempt every object alive now from later collections (for the rest of
    the process: a node, after it is built). Returns how many objects are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


@contextlib.contextmanager
def startup_objects_frozen() -> Iterator[int]:
    """The objects alive now exempt from collections for a block (a mission run inside a longer
    process, such as a test session or `lgtc sim --runtime` over many episodes), unfrozen again at
    its end. No collection first: garbage frozen with them is released at the end anyway, and
    a full pass would cost every episode ~170 ms (180,000 objects at paper_10x4). In a process
    that had frozen objects already (a node), they stay frozen: `gc.unfreeze` cannot release only
    this block's."""
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        yield gc.get_freeze_count()
    finally:
        if not frozen_before:
            gc.unfreeze()
