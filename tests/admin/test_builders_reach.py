"""The ``blocks`` namespace plugins import in the sandbox leads nowhere but to its builders."""

from __future__ import annotations

from emdash._shared._blocks import BUILDER_NAMES, blocks
from tests.shims.test_reachability import problems, walk


def test_nothing_dangerous_is_reachable_from_the_builders() -> None:
    reached = walk([("blocks", blocks)])
    # The walk explores: every builder is reached through the guard.
    assert len(reached) > len(BUILDER_NAMES)
    # shared=True: the namespace lives in every worker of the fork server (a prelude), so
    # nothing reachable from it may be a mutable container two plugins could both write to.
    assert problems(reached, shared=True) == []
