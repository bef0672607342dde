"""The fork server fills pymalloc's free blocks before forking (copy-on-write hygiene).

Run in this process: filling only allocates objects. What is checked is the allocator's own
report, before and after, not any memory figure of the machine.
"""

from __future__ import annotations

import gc

from sandbox import _forkserver


def test_the_allocator_report_is_read() -> None:
    stats = _forkserver._allocator_free_blocks()
    assert stats is not None
    free, unused_pools = stats
    assert set(free) <= set(range(16, 513, 16))
    assert 16 in free and 512 in free
    assert all(count >= 0 for count in free.values()) and unused_pools >= 0


def test_filling_uses_up_the_free_blocks() -> None:
    gc.disable()  # no collection may free blocks between the fill and the report
    try:
        before = _forkserver._allocator_free_blocks()
        filler = _forkserver._fill_allocator_holes()
        after = _forkserver._allocator_free_blocks()
    finally:
        gc.enable()
    assert before is not None and after is not None
    assert len(filler) >= sum(before[0].values())
    # What stays free is the tail of each size class's last, freshly started pool (a
    # 16 KiB pool holds (16384 - 48) // size blocks), plus blocks the report itself freed.
    for size, count in after[0].items():
        assert count <= 2 * ((16384 - 48) // size), (size, count)


def test_each_filler_object_takes_one_block_of_its_size() -> None:
    import sys

    for size in range(48, 513, 16):
        assert sys.getsizeof(_forkserver._block_of(size, 0)) == size
    assert sys.getsizeof(_forkserver._block_of(16, 0)) == 16
    assert sys.getsizeof(_forkserver._block_of(32, 7)) == 24  # a float, in the 32-byte class
    assert _forkserver._block_of(32, 1) is not _forkserver._block_of(32, 1)
