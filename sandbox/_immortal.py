"""Make what the fork server built immortal before it forks workers (CPython 3.12, 3.13).

Which process runs this: the fork server, once, after it imported and built everything
workers use and before its first fork (``_forkserver.main``). No plugin code exists in it
yet, and it is single-threaded.

Why: a forked worker shares the fork server's memory copy-on-write, but every object it
merely *uses* gets its reference count raised and lowered, and each such write copies the
whole 4 KiB page the object lives on into the worker. Measured page by page (see
``benchmarks/worker_memory.py --pages``), about two thirds of a worker's private pages
differed from the fork server's by a few bytes or not at all: reference counts of shared
objects, not new data. CPython 3.12 introduced immortal objects (PEP 683): an object whose
reference count is the immortal value is never written by ``Py_INCREF``/``Py_DECREF`` and
never freed. The interpreter makes its static objects and interned strings immortal; this
module does the same for every object reachable from the fork server's heap, so workers
stop writing to those pages at all (idle USS per worker 3.2 -> ~1.7 MiB on 3.12).

Why it is safe here:

* An immortal object is never deallocated: everything immortalized lives as long as the
  process. In the fork server that is what happens anyway (it keeps what it built for its
  whole life and exits with ``os._exit``); in a worker, an inherited object it drops is not
  freed (no finalizer runs, no memory returns), which is what the worker wants: freeing it
  would write to the shared page too. Nothing the fork server holds at this point relies on
  a finalizer to release a resource it later drops (its sockets are closed or detached
  explicitly).
* CPython code that takes a shortcut when an object is uniquely referenced (in-place string
  concatenation, tuple reuse in iterators) checks for a reference count of 1; an immortal
  object never has it, so it always takes the general path.
* Sandboxed code gains nothing: it cannot read reference counts (``sys`` is not importable)
  and immortality changes no value, only when memory is freed.

The layout is CPython's, checked at run time: 64-bit, the GIL build (the free-threaded build
splits the count in two fields), versions 3.12 and 3.13, where an object is immortal when the
low 32 bits of ``ob_refcnt`` read as a negative ``int32`` and ``Py_INCREF`` skips the write
when adding one would wrap those 32 bits to zero (so the value written is exactly
``0xFFFFFFFF``, the interpreter's own ``_Py_IMMORTAL_REFCNT``). Anywhere else
:func:`immortalize` does nothing and returns 0 (3.11 has no immortal objects: its workers
keep writing reference counts, see ``benchmarks/README.md``).
"""

from __future__ import annotations

import ctypes
import gc
import sys
import sysconfig
import types

__all__ = ["immortalize", "supported"]

# _Py_IMMORTAL_REFCNT of CPython 3.12 and 3.13 (Include/object.h): UINT_MAX.
_IMMORTAL = 0xFFFFFFFF
_SIGN32 = 0x80000000


def supported() -> bool:
    """True where this interpreter's immortal-object layout is the one written here."""
    return (
        sys.implementation.name == "cpython"
        and sys.version_info[:2] in ((3, 12), (3, 13))
        and sys.maxsize > 2**32
        and not sysconfig.get_config_var("Py_GIL_DISABLED")
        # A Py_TRACE_REFS (debug) build puts two list pointers before ob_refcnt.
        and not hasattr(sys, "getobjects")
    )


def _code_parts(code: types.CodeType) -> tuple[object, ...]:
    # Code objects are not tracked by the collector and have no traverse function, so
    # gc.get_referents() does not see what they hold: name the parts explicitly.
    return (
        code.co_consts,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_filename,
        code.co_name,
        code.co_qualname,
        code.co_linetable,
        code.co_exceptiontable,
        code.co_code,
    )


def immortalize() -> int:
    """Make every object reachable from the collector's lists immortal; how many were made.

    Starts from every object the collector tracks (all containers: module dicts, classes,
    functions, lists, ...) and follows references to the untracked ones (strings, numbers,
    code objects and their constants). An object that is immortal already is not followed
    again: the immortal count doubles as the walk's visited mark, so the walk needs no set
    of its own (which would cost the fork server memory its holes-filling then keeps).
    Objects reachable only from the C stack are missed, which only costs memory.
    """
    if not supported():
        return 0
    gc.collect()
    count = 0
    refcount = ctypes.c_ssize_t.from_address
    code_type = types.CodeType
    get_referents = gc.get_referents
    stack: list[object] = gc.get_objects()
    while stack:
        obj = stack.pop()
        cell = refcount(id(obj))
        if cell.value & _SIGN32:  # immortal already (static, interned, or visited)
            continue
        cell.value = _IMMORTAL
        count += 1
        if type(obj) is code_type:
            stack.extend(_code_parts(obj))
        else:
            stack.extend(get_referents(obj))
    return count
