"""``emdash help [TOPIC]``: the one way messages point a user to documentation.

The rule: a message that sends its reader to documentation names ``emdash help TOPIC``,
never a file path. The reference docs are files of the project's source (``docs/``,
``SECURITY.md``, ``README.md``); a wheel installed with pip does not carry them, so a
path in a message would point at nothing. ``emdash help TOPIC`` prints the document when
it is there (a source checkout, an editable install) and otherwise says where to get it:
the project's source distribution, which includes them (``MANIFEST.in``), or the
project's URL when the installed metadata declares one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["TOPICS", "Topic", "help_hint", "render_help", "topic_text"]


@dataclass(frozen=True)
class Topic:
    file: str
    title: str


TOPICS: dict[str, Topic] = {
    "plugins": Topic("docs/plugin-reference.md", "the descriptor, hooks, ctx, storage, routes"),
    "restricted-python": Topic(
        "docs/restricted-python.md", "what the sandbox refuses and what to write instead"
    ),
    "testing": Topic("docs/testing-plugins.md", "the test harness; outbound HTTP offline"),
    "admin": Topic("docs/admin.md", "admin pages, widgets and settings in Block Kit"),
    "consent": Topic("docs/consent-and-upgrades.md", "approved access, upgrades, bundles"),
    "limits": Topic("docs/resource-model.md", "every limit and quota, and how to raise it"),
    "integrity": Topic("docs/integrity.md", "concurrency, several processes, crashes"),
    "security": Topic("SECURITY.md", "the threat model and the escape suite"),
    "config": Topic("README.md", "emdash.toml and the commands (the README)"),
    "design": Topic("docs/design.md", "how the code is cut"),
}


def help_hint(topic: str) -> str:
    """``emdash help TOPIC``, for messages (the topic must exist: a test checks them)."""
    assert topic in TOPICS, topic
    return f"emdash help {topic}"


def _source_root() -> Path:
    # The directory holding the emdash package: in a checkout or an editable install,
    # also the project's root, where docs/ is.
    return Path(__file__).resolve().parents[2]


def topic_text(name: str) -> str | None:
    """The document of a topic when this installation has it, else ``None``."""
    root = _source_root()
    try:
        # Only our own project root: an installed package's parent is site-packages,
        # where another distribution's README.md may lie.
        if 'name = "emdash-runtime"' not in (root / "pyproject.toml").read_text("utf-8"):
            return None
    except OSError:
        return None
    path = root / TOPICS[name].file
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _project_url() -> str | None:
    from importlib import metadata

    from ._output import DISTRIBUTION

    try:
        urls = metadata.metadata(DISTRIBUTION).get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return None
    for entry in urls:
        label, _, url = str(entry).partition(",")
        if label.strip().lower() in ("documentation", "source", "repository", "homepage"):
            return url.strip()
    return None


def render_help(name: str | None) -> str:
    """The text ``emdash help [TOPIC]`` prints."""
    if name is None:
        width = max(len(n) for n in TOPICS)
        lines = ["Topics (emdash help TOPIC):"]
        lines += [f"  {n:<{width}}  {t.title}" for n, t in TOPICS.items()]
        return "\n".join(lines)
    text = topic_text(name)
    if text is not None:
        return text.rstrip("\n")
    from ._output import DISTRIBUTION

    topic = TOPICS[name]
    where = _project_url()
    return (
        f"{name}: {topic.title}. This installation does not include its document "
        f"({topic.file}): it is in {DISTRIBUTION}'s source distribution "
        f"(pip download --no-deps --no-binary :all: {DISTRIBUTION})"
        + (f" and at {where}" if where else "")
        + "."
    )
