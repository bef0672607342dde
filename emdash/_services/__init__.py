"""The host's CMS operations that fire hooks: ``rt.content``, ``rt.media``, ...

Each service takes the store and a :class:`~._hook_runner.HookRunner` (never the runtime):

- ``_content``, ``_media``, ``_comments``: saves, uploads, moderation and their hooks.
- ``_email``: the email pipeline; ``_cron`` and ``_cron_schedule``: the scheduler.
- ``_page`` and ``_page_render``: page metadata and fragments.
- ``_hook_runner``: the narrow interface services use to run hooks.
"""
