"""emdash's persistent store: SQLite through sqlite-utils.

``Store`` is the one entry point; its repositories (``options``, ``kv_entries``,
``plugin_documents``, ``content_items``, ``media_items``, ``user_accounts``,
``comment_records``, ``taxonomies``, ``cron_tasks``, ``audit_records``,
``plugin_registry``), named for their records, return plain JSON-shaped dicts with the camelCase keys of
the plugin API, so results cross the bridge unchanged.
"""

from ._audit import AUDIT_KINDS, AUDIT_OUTCOMES
from ._comments import COMMENT_STATUSES
from ._content import CONTENT_STATUSES, MAX_BATCH
from ._core import Store
from ._cursor import MAX_CURSOR_CHARS, clamp_limit
from ._db import format_timestamp, parse_timestamp
from ._media import MEDIA_STATUSES, LocalMediaStorage, media_url, storage_extension
from ._users import ROLES
from ._values import MAX_DOC_BYTES

__all__ = [
    "AUDIT_KINDS",
    "AUDIT_OUTCOMES",
    "COMMENT_STATUSES",
    "CONTENT_STATUSES",
    "MAX_BATCH",
    "MAX_CURSOR_CHARS",
    "MAX_DOC_BYTES",
    "MEDIA_STATUSES",
    "ROLES",
    "LocalMediaStorage",
    "Store",
    "clamp_limit",
    "format_timestamp",
    "media_url",
    "parse_timestamp",
    "storage_extension",
]
