"""The fork server makes what it built immortal (CPython 3.12/3.13), so workers stop writing
reference counts into the pages they share with it (``sandbox._immortal``)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

from sandbox import _immortal

ROOT = Path(__file__).resolve().parents[2]

# Run in a child interpreter: immortal objects are never freed, which the test process
# should not inherit.
PROBE = """
import sys
from sandbox import _immortal

kept = {"a list": [object(), "x" * 1000, 10**30]}
made = _immortal.immortalize()
inner = kept["a list"]
counts = [sys.getrefcount(o) for o in (kept, inner, inner[0], inner[1], inner[2])]
fresh = object()
print(made, *counts, sys.getrefcount(fresh))
"""


def _probe() -> list[int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [int(x) for x in out.split()]


def test_objects_reachable_from_the_heap_become_immortal_where_supported() -> None:
    made, *counts, fresh = _probe()
    if _immortal.supported():
        assert made > 1000
        # sys.getrefcount reports the immortal value itself (its own reference does not
        # change it); an object created afterwards stays mortal.
        assert counts == [0xFFFFFFFF] * 5
        assert fresh < 10
    else:
        assert made == 0
        assert all(c < 10 for c in counts)


def test_supported_only_on_the_layouts_it_knows() -> None:
    expected = (
        sys.implementation.name == "cpython"
        and sys.version_info[:2] in ((3, 12), (3, 13))
        and not sysconfig.get_config_var("Py_GIL_DISABLED")
    )
    assert _immortal.supported() is expected
