"""``emdash plugins add BUNDLE`` and ``emdash plugins upgrade ID [SOURCE]``.

Bundles (:mod:`emdash._hosting._bundle`) are checked in memory, unpacked into a new
directory next to the site's installed bundles (``plugins/`` beside ``emdash.toml``) and
renamed into place as ``plugins/<id>`` only once the plugin has loaded; their sha256 is
printed and pinned in the site's registry. An upgrade shows the version change, the
bundle digests and the access diff (:class:`emdash.UpgradePlan`), asks for confirmation
(``--yes`` for scripts), then swaps code and approval without uninstalling: the plugin's
data, state and cron tasks stay.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from .._hosting._bundle import Bundle, extract_bundle, is_bundle, open_bundle
from .._model._descriptor import PluginDescriptor
from .._runtime._consent import Approval, UpgradePlan
from .._shared._errors import ConfigError
from ._config import (
    SiteConfig,
    _read_document,
    _relative,
    _write_document,
    add_plugin_entry,
    find_entry,
    open_runtime,
)

__all__ = ["BUNDLE_DIR", "add_bundle", "is_bundle", "upgrade"]

#: Where unpacked bundles live, relative to the site's base directory.
BUNDLE_DIR = "plugins"


def add_bundle(config: SiteConfig, path: Path, *, trusted: bool) -> tuple[PluginDescriptor, str]:
    """Install the bundle at ``path``; return its descriptor and sha256."""
    bundle = open_bundle(path)
    click.echo(f"Bundle {path.name}: sha256 {bundle.sha256}", err=True)
    staged, descriptor = extract_bundle(bundle, _bundle_root(config))
    target = _bundle_root(config) / descriptor.id
    try:
        if os.path.lexists(target):
            raise ConfigError(
                f"{target} already exists; a plugin with id {descriptor.id!r} seems installed. "
                f"Upgrade it with: emdash plugins upgrade {descriptor.id} {path}"
            )
        _check_not_configured(config, descriptor.id)
        os.rename(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    try:
        with open_runtime(config, unloaded=[]) as rt:
            rt.add_plugin(target, trusted=trusted, bundle_sha256=bundle.sha256)
        add_plugin_entry(config, target, trusted=trusted, plugin_id=descriptor.id)
    except BaseException:
        # A bundle that does not load leaves nothing behind.
        shutil.rmtree(target, ignore_errors=True)
        raise
    return descriptor, bundle.sha256


def upgrade(config: SiteConfig, plugin_id: str, source: Path | None, *, yes: bool) -> None:
    """Review and apply an upgrade of ``plugin_id`` from ``source`` (a bundle or a
    directory; ``None``: the plugin's own directory as it is on disk now)."""
    index = find_entry(config, plugin_id)
    entry = config.plugins[index]
    current = config.plugin_path(entry)
    bundle: Bundle | None = None
    staged: Path | None = None
    if source is None:
        new_dir = current
    elif is_bundle(source):
        bundle = open_bundle(source)
        staged, _ = extract_bundle(bundle, _bundle_root(config))
        new_dir = staged
    elif source.is_dir():
        new_dir = source.resolve()
    else:
        raise ConfigError(
            f"{source} is neither a plugin directory nor a bundle (.tar.gz, .tgz, .tar or .zip)"
        )
    try:
        descriptor = PluginDescriptor.from_file(new_dir)
        if descriptor.id != plugin_id:
            raise ConfigError(
                f'{source} holds plugin "{descriptor.id}", not "{plugin_id}"; upgrade that id '
                f"instead, or install it with: emdash plugins add {source}"
            )
        # Every other plugin loads as usual; this one is loaded by upgrade_plugin below.
        others = config.model_copy(
            update={"plugins": [e for i, e in enumerate(config.plugins) if i != index]}
        )
        with open_runtime(others, unloaded=[]) as rt:
            plan = rt.upgrade_plan(
                descriptor, bundle_sha256=None if bundle is None else bundle.sha256
            )
            for line in plan.lines():
                click.echo(line)
            if plan.needs_consent:
                click.echo(f"{plugin_id} asks for more access than was approved (+ lines above).")
            if not yes and not click.confirm("Approve and upgrade?", default=False):
                # Say what declining leaves: a plugin asking for more stays refused.
                click.echo(
                    f"Not upgraded. {plugin_id} "
                    + (
                        "is refused at every start while its descriptor asks for more "
                        "than was approved: approve it, or undo the descriptor change."
                        if plan.needs_consent and source is None
                        else "stays as it is."
                    ),
                    err=True,
                )
                raise click.exceptions.Exit(1)
            final = new_dir
            if staged is not None:
                final = _swap_in(config, plugin_id, staged, current)
                staged = None
            try:
                # Read once more from where it now lives, and approve only what was shown:
                # a directory is the author's, and may have changed during the review.
                applied = PluginDescriptor.from_file(final)
                _check_reviewed(plan, applied)
                rt.upgrade_plugin(
                    applied,
                    approve=True,
                    trusted=entry.trusted,
                    bundle_sha256=None if bundle is None else bundle.sha256,
                )
            except BaseException:
                if final != new_dir:
                    _swap_back(final)
                raise
            if final != current or entry.id is None:
                _set_plugin_entry(config, index, final, plugin_id)
            if final != new_dir:
                _drop_previous(final)  # only ever a copy this command moved aside
        click.echo(f"Upgraded {plugin_id} {plan.old_version} -> {plan.new_version}")
    finally:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)


# -- helpers ----------------------------------------------------------------------------------


def _bundle_root(config: SiteConfig) -> Path:
    return config.base_dir / BUNDLE_DIR


def _check_not_configured(config: SiteConfig, plugin_id: str) -> None:
    try:
        find_entry(config, plugin_id)
    except ConfigError:
        return
    raise ConfigError(
        f'A plugin with id "{plugin_id}" is already installed; upgrade it with: '
        f"emdash plugins upgrade {plugin_id} BUNDLE"
    )


def _check_reviewed(plan: UpgradePlan, applied: PluginDescriptor) -> None:
    """Refuse to approve a descriptor other than the one the operator just reviewed."""
    if (
        applied.id == plan.plugin_id
        and applied.version == plan.new_version
        and Approval.of(applied) == plan.wanted
    ):
        return
    raise ConfigError(
        f"The descriptor of {plan.plugin_id} changed while the upgrade was reviewed, so "
        "nothing was approved; make sure nothing edits the plugin meanwhile, then review "
        f"it again: emdash plugins upgrade {plan.plugin_id}",
        plugin_id=plan.plugin_id,
    )


def _previous(target: Path) -> Path:
    return target.with_name(f".{target.name}.previous")


def _swap_in(config: SiteConfig, plugin_id: str, staged: Path, current: Path) -> Path:
    """Rename ``staged`` to ``plugins/<id>``; an existing install there moves aside to
    ``.<id>.previous`` (restored if the upgrade fails, removed once it succeeded)."""
    target = _bundle_root(config) / plugin_id
    if os.path.lexists(target):
        if target.resolve() != current.resolve() or target.is_symlink():
            raise ConfigError(
                f"{target} exists but is not where {plugin_id} is installed from ({current}); "
                "move it away, then upgrade again"
            )
        old = _previous(target)
        if os.path.lexists(old):
            shutil.rmtree(old)
        os.rename(target, old)
    os.rename(staged, target)
    return target


def _swap_back(target: Path) -> None:
    old = _previous(target)
    shutil.rmtree(target, ignore_errors=True)
    if os.path.lexists(old):
        os.rename(old, target)


def _drop_previous(target: Path) -> None:
    old = _previous(target)
    if os.path.lexists(old) and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)


def _set_plugin_entry(config: SiteConfig, index: int, path: Path, plugin_id: str) -> None:
    """Point the entry at ``path`` and pin the id just approved (an entry written by hand,
    or before ids were pinned, gets its pin here: see ``PluginEntry.id``)."""
    doc = _read_document(config)
    doc["plugins"][index]["path"] = _relative(path, config.base_dir)
    doc["plugins"][index]["id"] = plugin_id
    _write_document(config, doc)
