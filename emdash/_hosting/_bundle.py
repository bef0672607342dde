"""Plugin bundles: a ``.tar.gz`` / ``.tgz`` / ``.tar`` / ``.zip`` of a plugin directory.

A bundle comes from outside (a download, a colleague, a registry), so every byte of it is
hostile input until checked. :func:`open_bundle` reads it **into memory** under fixed
bounds and refuses, naming the member and what to do:

- an archive larger than :data:`MAX_BUNDLE_BYTES` (1 MB), or members that add up to more
  once unpacked, or more than :data:`MAX_MEMBERS` members (a zip/gzip bomb stops at the
  bound: sizes are counted as the data is read, not taken from the headers);
- a tar stream compressed with anything but gzip, or whose unpacked stream (content plus
  headers, long names and pax records, which tarfile reads whole) exceeds a fixed bound;
- any member that is not a regular file or a directory: symbolic and hard links, device
  nodes, FIFOs, sockets (in a zip, the file type in the Unix mode bits);
- absolute paths, ``..`` components, backslashes, control characters, duplicate paths,
  paths that differ only by case or Unicode form (one file on macOS and Windows);
- encrypted zip members, and zip members compressed with anything but deflate (zipfile
  bounds the output of deflate per read, not that of bzip2 or LZMA);
- a format other than the one its suffix names, or a tar that is also a zip (bytes after
  the tar that a zip reader would take for the bundle).

The plugin directory is the archive's root, or its single top-level directory (what
``tar czf hello.tgz hello`` makes). Its descriptor is then validated again from the
unpacked copy, like a directory's, and its ``entrypoint`` must be a path inside the bundle
(a module path would load code installed on the host). :func:`extract_bundle` writes the checked members into
a **new** directory it creates (``mkdtemp``, mode 0700 while unpacking) with
``O_EXCL | O_NOFOLLOW``: nothing existing is followed or overwritten, and no path can leave
that directory because every path was checked above and the archive's own link members
were refused. The sha256 of the archive's bytes is the bundle's identity, shown to the
operator and pinned in the site's plugin registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from .._model._descriptor import PluginDescriptor
from .._shared._errors import EmDashError, ManifestError
from ._loader import _looks_like_path

__all__ = [
    "BUNDLE_SUFFIXES",
    "MAX_BUNDLE_BYTES",
    "MAX_MEMBERS",
    "Bundle",
    "BundleError",
    "extract_bundle",
    "is_bundle",
    "open_bundle",
]

MAX_BUNDLE_BYTES = 1_000_000
MAX_MEMBERS = 1_000
BUNDLE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
#: The unpacked tar stream: 1 MB of content plus, for up to MAX_MEMBERS members, their
#: 512-byte headers, pax or long-name records and block padding. tarfile reads metadata
#: records (GNU long names, pax headers) whole, before any member is returned, so the
#: stream is bounded before tarfile sees it, not member by member.
_MAX_TAR_STREAM = 4 * MAX_BUNDLE_BYTES + MAX_MEMBERS * 4 * 512
_DESCRIPTOR_NAMES = ("emdash-plugin.toml", "emdash-plugin.json")


class BundleError(ManifestError):
    """A plugin bundle that is refused (the message names the bundle and the member)."""


@dataclass(frozen=True)
class Bundle:
    """A checked bundle held in memory: its digest and its files (relative POSIX paths)."""

    source: Path
    sha256: str
    files: dict[str, bytes]
    directories: frozenset[str]


def is_bundle(path: Path) -> bool:
    """Whether ``path`` names a bundle file (by its suffix) rather than a directory."""
    return path.name.lower().endswith(BUNDLE_SUFFIXES) and not path.is_dir()


def open_bundle(path: Path) -> Bundle:
    """Read and check the bundle at ``path`` (see the module docstring)."""
    shown = str(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(f"Plugin bundle {shown} is not a regular file")
        if info.st_size > MAX_BUNDLE_BYTES:
            raise _too_big(shown, info.st_size)
        with open(path, "rb") as fh:
            data = fh.read(MAX_BUNDLE_BYTES + 1)  # bounded even if the file grows meanwhile
    except OSError as exc:
        raise BundleError(f"Cannot read plugin bundle {shown}: {exc.strerror}") from None
    if len(data) > MAX_BUNDLE_BYTES:
        raise _too_big(shown, len(data))
    digest = hashlib.sha256(data).hexdigest()
    # The suffix decides the format, and a tar that is also a zip is refused: tar reads an
    # archive from its start, zip from its end, so bytes appended to a .tar.gz can hold a
    # second plugin. The operator who lists the bundle with tar must see what is installed.
    suffix = path.name.lower()
    is_zip = zipfile.is_zipfile(io.BytesIO(data))
    if suffix.endswith(".zip"):
        if not is_zip:
            raise BundleError(f"Plugin bundle {shown} is not a valid .zip archive")
        members = _zip_members(shown, data)
    elif suffix.endswith((".tar.gz", ".tgz", ".tar")):
        if is_zip:
            raise BundleError(
                f"Plugin bundle {shown} is a tar archive that is also a zip archive (data "
                "after the tar, or a zip member at its very end); bundle the plugin "
                "directory again with: tar czf NAME.tar.gz DIR"
            )
        members = _tar_members(shown, data)
    else:
        raise BundleError(
            f"Plugin bundle {shown}: its name must end in one of {', '.join(BUNDLE_SUFFIXES)}"
        )
    files, directories = _strip_root(shown, members)
    return Bundle(path, digest, files, directories)


def extract_bundle(bundle: Bundle, parent: Path) -> tuple[Path, PluginDescriptor]:
    """Unpack ``bundle`` into a new directory inside ``parent``; return it and the
    descriptor read back from it (validated as for any plugin directory).

    The directory is named ``.bundle-*`` (the caller renames it into place); on any error
    it is removed again.
    """
    parent.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix=".bundle-", dir=parent))
    try:
        for directory in sorted(bundle.directories, key=lambda d: d.count("/")):
            try:
                # parents=True: an archive may list "lib/sub/" without "lib/".
                (target / directory).mkdir(0o755, parents=True, exist_ok=True)
            except OSError as exc:
                raise _cannot_unpack(bundle, directory, exc) from None
        for name, content in bundle.files.items():
            # Parents created here too (an archive may omit directory entries); every
            # component was checked, and this tree holds only what we created.
            try:
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(target / name, flags, 0o644)
            except OSError as exc:
                raise _cannot_unpack(bundle, name, exc) from None
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
        os.chmod(target, 0o755)
        try:
            descriptor = PluginDescriptor.from_file(target)
        except EmDashError as exc:
            raise BundleError(
                f"Plugin bundle {bundle.source}: its descriptor is not valid: {exc.message}"
            ) from None
        if descriptor.entrypoint is None or not _looks_like_path(descriptor.entrypoint):
            # A module path would load code installed on the host, not the bundle's own.
            raise BundleError(
                f"Plugin bundle {bundle.source}: its entrypoint must be a file or directory "
                'inside the bundle (e.g. entrypoint = "plugin.py"), not '
                f"{descriptor.entrypoint!r}",
                plugin_id=descriptor.id,
            )
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target, descriptor


def _cannot_unpack(bundle: Bundle, name: str, exc: OSError) -> BundleError:
    # A name the file system cannot hold (ENAMETOOLONG: a component over 255 bytes, a path
    # over PATH_MAX) is the bundle's fault: say so, with the name, not as a traceback.
    return BundleError(
        f"Plugin bundle {bundle.source}: member {name[:200]!r} cannot be unpacked "
        f"({exc.strerror}); use shorter file names"
    )


# -- reading archives ---------------------------------------------------------------------------


def _too_big(shown: str, size: int) -> BundleError:
    return BundleError(
        f"Plugin bundle {shown} is {size} bytes; bundles are limited to {MAX_BUNDLE_BYTES} "
        "bytes (1 MB). Leave out what the plugin does not need at run time (tests, "
        "caches, .git)."
    )


class _Budget:
    """Unpacked bytes and members, counted as they are read."""

    def __init__(self, shown: str) -> None:
        self.shown = shown
        self.bytes = 0
        self.members = 0

    def member(self) -> None:
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise BundleError(
                f"Plugin bundle {self.shown} has more than {MAX_MEMBERS} members; a plugin "
                "needs far fewer files"
            )

    def take(self, n: int) -> int:
        """Bytes still allowed after ``n`` more (negative: over the bound)."""
        self.bytes += n
        if self.bytes > MAX_BUNDLE_BYTES:
            raise BundleError(
                f"Plugin bundle {self.shown} unpacks to more than {MAX_BUNDLE_BYTES} bytes "
                "(1 MB); bundles are limited to that once unpacked too"
            )
        return MAX_BUNDLE_BYTES - self.bytes


def _read_bounded(fh: IO[bytes], budget: _Budget) -> bytes:
    chunks: list[bytes] = []
    while True:
        # Never more than what is left in the budget plus one byte: a member whose header
        # understates its size is caught here, having read at most the bound.
        chunk = fh.read(min(64 * 1024, MAX_BUNDLE_BYTES - budget.bytes + 1))
        if not chunk:
            return b"".join(chunks)
        budget.take(len(chunk))
        chunks.append(chunk)


def _tar_stream(shown: str, data: bytes) -> bytes:
    """The uncompressed tar stream of ``data`` (gzip or plain), at most
    :data:`_MAX_TAR_STREAM` bytes.

    Decompressed here rather than by ``tarfile.open(mode="r:*")``: tarfile reads a long
    name or a pax header whole, whatever size its header announces, so a 1 MB gzip
    archive could make it hold ~1 GB (and bzip2 or xz, which it also accepts, far more).
    Only gzip is accepted: it is what ``.tar.gz``/``.tgz`` means, and the bound below
    makes its ratio harmless.
    """
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                stream = gz.read(_MAX_TAR_STREAM + 1)  # decompresses at most this much
        except (OSError, EOFError, zlib.error) as exc:
            raise BundleError(
                f"Plugin bundle {shown} is not a valid .tar.gz, .tar or .zip archive ({exc})"
            ) from None
        if len(stream) > _MAX_TAR_STREAM:
            raise BundleError(
                f"Plugin bundle {shown} unpacks to more than {_MAX_TAR_STREAM} bytes of tar "
                f"data; bundles are limited to {MAX_BUNDLE_BYTES} bytes (1 MB) once unpacked"
            )
        return stream
    if data[:3] == b"BZh" or data[:6] == b"\xfd7zXZ\x00" or data[:4] == b"\x28\xb5\x2f\xfd":
        raise BundleError(
            f"Plugin bundle {shown} is compressed with bzip2, xz or zstd; a bundle is a "
            "gzip-compressed (.tar.gz, .tgz) or a plain (.tar) tar archive, or a .zip"
        )
    return data


def _tar_members(shown: str, data: bytes) -> list[tuple[str, bytes | None]]:
    budget = _Budget(shown)
    out: list[tuple[str, bytes | None]] = []
    stream = _tar_stream(shown, data)
    try:
        # "r:" (no decompression): _tar_stream bounded and decompressed it already.
        with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
            while True:
                member = tar.next()  # one header at a time: a bomb stops at the budget
                if member is None:
                    break
                budget.member()
                name = _check_name(shown, member.name)
                if member.isdir():
                    out.append((name, None))
                    continue
                if not member.isreg():
                    raise BundleError(
                        f"Plugin bundle {shown}: member {name!r} is a {_tar_kind(member)}; "
                        "bundles may hold only regular files and directories. Replace links "
                        "with copies of the files."
                    )
                if member.size > MAX_BUNDLE_BYTES - budget.bytes:
                    budget.take(member.size)  # raises: the declared size alone is too much
                fh = tar.extractfile(member)
                if fh is None:  # pragma: no cover - isreg() members always have data
                    raise BundleError(f"Plugin bundle {shown}: member {name!r} has no data")
                with fh:
                    out.append((name, _read_bounded(fh, budget)))
    except (tarfile.TarError, EOFError, OSError, ValueError, RecursionError) as exc:
        # RecursionError: tarfile reads each long-name or pax header by recursing into the
        # header after it, so a long chain of them (cheap once gzipped) runs out of stack.
        raise BundleError(
            f"Plugin bundle {shown} is not a valid .tar.gz, .tar or .zip archive "
            f"({str(exc)[:200] or type(exc).__name__})"
        ) from None
    return out


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "device node"
    if member.isfifo():
        return "FIFO"
    return "special file"


def _zip_members(shown: str, data: bytes) -> list[tuple[str, bytes | None]]:
    budget = _Budget(shown)
    out: list[tuple[str, bytes | None]] = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                budget.member()
                name = _check_name(shown, info.filename)
                mode = info.external_attr >> 16
                kind = stat.S_IFMT(mode)
                if info.flag_bits & 0x1:
                    raise BundleError(
                        f"Plugin bundle {shown}: member {name!r} is encrypted; bundles must "
                        "not be encrypted"
                    )
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    # zipfile bounds the output of deflate per read, but passes each chunk
                    # of a bzip2 or LZMA member to its decompressor unbounded: a few
                    # hundred bytes of bzip2 become hundreds of MB in memory at once,
                    # before _read_bounded sees any of it.
                    raise BundleError(
                        f"Plugin bundle {shown}: member {name!r} is compressed with a method "
                        "other than deflate (or none); make the zip with the usual settings "
                        "(zip -r, or Python's ZIP_DEFLATED)"
                    )
                if info.is_dir() and kind in (0, stat.S_IFDIR):
                    out.append((name, None))
                    continue
                if kind not in (0, stat.S_IFREG):
                    what = "symbolic link" if stat.S_ISLNK(mode) else "special file"
                    raise BundleError(
                        f"Plugin bundle {shown}: member {name!r} is a {what}; bundles may hold "
                        "only regular files and directories. Replace links with copies of "
                        "the files."
                    )
                with archive.open(info) as fh:
                    out.append((name, _read_bounded(fh, budget)))
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        ValueError,
        NotImplementedError,  # a compression method zipfile does not know
    ) as exc:
        raise BundleError(f"Plugin bundle {shown} is not a valid .zip archive ({exc})") from None
    return out


def _check_name(shown: str, raw: str) -> str:
    """The member's relative POSIX path, or a refusal for any name that could escape."""

    def refuse(why: str) -> BundleError:
        return BundleError(
            f"Plugin bundle {shown}: member {raw[:200]!r} {why}; every member must be a "
            "relative path inside the plugin directory"
        )

    if not raw or any(ord(c) < 0x20 or c == "\x7f" for c in raw):
        raise refuse("has an empty name or control characters")
    if "\\" in raw:
        raise refuse("contains a backslash")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise refuse("is an absolute path")
    parts = [p for p in PurePosixPath(raw).parts if p != "."]
    if any(p == ".." for p in parts):
        raise refuse("contains '..'")
    if not parts:
        return "."
    return "/".join(parts)


def _strip_root(
    shown: str, members: list[tuple[str, bytes | None]]
) -> tuple[dict[str, bytes], frozenset[str]]:
    """Files and directories relative to the plugin directory (the archive's root, or its
    one top-level directory when the descriptor is not at the root)."""
    names = [n for n, _ in members if n != "."]
    seen: set[str] = set()
    folded: dict[str, str] = {}
    for name in names:
        if name in seen:
            raise BundleError(
                f"Plugin bundle {shown}: member {name!r} appears twice; each path may appear once"
            )
        seen.add(name)
        # "plugin.py" and "Plugin.py", or "café" composed and decomposed, are one file on
        # macOS and Windows: which of them a reviewer reads and which one loads would then
        # depend on the order of the members. Refused on every system, so a bundle means
        # the same everywhere.
        key = unicodedata.normalize("NFC", name).casefold()
        if key in folded and folded[key] != name:
            raise BundleError(
                f"Plugin bundle {shown}: members {folded[key]!r} and {name!r} differ only by "
                "case or Unicode form (one file on some systems); rename one of them"
            )
        folded.setdefault(key, name)
    files = {n: c for n, c in members if c is not None}
    prefix = ""
    if not any(n in files for n in _DESCRIPTOR_NAMES):
        tops = {n.split("/", 1)[0] for n in names}
        if len(tops) == 1:
            top = tops.pop()
            if any(f"{top}/{d}" in files for d in _DESCRIPTOR_NAMES):
                prefix = top + "/"
        if not prefix:
            raise BundleError(
                f"Plugin bundle {shown} has no emdash-plugin.toml at its root or in its one "
                "top-level directory; bundle the plugin directory itself"
            )
    out_files: dict[str, bytes] = {}
    out_dirs: set[str] = set()
    for name, content in members:
        if name == "." or name + "/" == prefix:
            continue
        rel = name[len(prefix) :] if prefix else name
        if prefix and not name.startswith(prefix):
            continue  # unreachable: one top-level directory
        if content is None:
            out_dirs.add(rel)
        else:
            out_files[rel] = content
    clash = out_dirs & set(out_files)
    if clash:
        raise BundleError(
            f"Plugin bundle {shown}: {sorted(clash)[0]!r} is both a file and a directory"
        )
    # A file used as a parent directory of another member ("a" and "a/b") is refused too.
    # The directories a path implies are counted with the members: extraction creates them
    # all, and one member 1500 levels deep would otherwise make 1500 directories (a
    # thousand such members, inode exhaustion) under a member bound of 1000.
    implied: set[str] = set()
    for rel in [*out_files, *(d + "/_" for d in out_dirs)]:
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        while parent:
            if parent in out_files:
                raise BundleError(
                    f"Plugin bundle {shown}: {parent!r} is both a file and a directory"
                )
            if parent in implied:
                break  # its own parents were counted when it was
            implied.add(parent)
            if len(implied) + len(out_files) > MAX_MEMBERS:
                raise BundleError(
                    f"Plugin bundle {shown} unpacks to more than {MAX_MEMBERS} files and "
                    "directories (directories its paths imply included); a plugin needs far "
                    "fewer"
                )
            parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
    return out_files, frozenset(out_dirs)
