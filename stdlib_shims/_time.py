"""Members of the time shims: datetime and time.

``datetime`` exposes only its classes and constants. The real module object is never
handed out: on 3.11 ``datetime.sys`` is the ``sys`` module (escape corpus 069).

``strptime`` (both modules) imports ``_strptime`` from C the first time it runs. From a
sandboxed frame that import goes through the sandbox's ``__import__`` (which only confirms
the module is already loaded) and, after seccomp, could not read the file anyway, so
``preload()`` imports and warms it up in the fork server.

``time.sleep`` is deliberately absent: a sleeping plugin holds a worker and the host's wall
clock budget without doing anything.
"""

from __future__ import annotations

import datetime
import time


def datetime_members() -> dict[str, object]:
    names = (
        "date",
        "datetime",
        "time",
        "timedelta",
        "timezone",
        "tzinfo",
        "UTC",
        "MINYEAR",
        "MAXYEAR",
    )
    return {name: getattr(datetime, name) for name in names}


def time_members() -> dict[str, object]:
    names = (
        "time",
        "time_ns",
        "monotonic",
        "monotonic_ns",
        "perf_counter",
        "perf_counter_ns",
        "process_time",
        "process_time_ns",
        "gmtime",
        "localtime",
        "mktime",
        "asctime",
        "ctime",
        "strftime",
        "strptime",
        "struct_time",
        "timezone",
        "altzone",
        "daylight",
        "tzname",
    )
    return {name: getattr(time, name) for name in names}
