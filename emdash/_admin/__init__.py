"""The plugin admin's server half: Block Kit validation, generated settings, ``rt.admin``.

- :mod:`._blockkit`: the Block Kit schema, enforced on every response (``AdminResponseError``);
- :mod:`._settings`: the settings page generated from ``admin.settingsSchema`` and saving it;
- :mod:`._service`: :class:`AdminService` (``rt.admin``) and the load-time admin check.

The builders plugins use (``from emdash import blocks``) live in ``emdash._shared._blocks``:
they also run inside sandbox workers.
"""

from ._blockkit import AdminInteractionError, AdminResponseError
from ._service import ADMIN_ROUTE, AdminService, check_admin_surface

__all__ = [
    "ADMIN_ROUTE",
    "AdminInteractionError",
    "AdminResponseError",
    "AdminService",
    "check_admin_surface",
]
