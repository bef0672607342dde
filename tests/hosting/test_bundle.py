"""Plugin bundles: real archives built in tmp_path, good and hostile."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from emdash._hosting._bundle import (
    MAX_BUNDLE_BYTES,
    BundleError,
    extract_bundle,
    open_bundle,
)

DESCRIPTOR = b'id = "bundled"\nversion = "1.0.0"\nentrypoint = "plugin.py"\n'
CODE = b"from emdash import define_plugin\nplugin = define_plugin()\n"


def tar_bundle(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def good_members(prefix: str = "") -> list[tarfile.TarInfo | tuple[str, bytes]]:
    return [(prefix + "emdash-plugin.toml", DESCRIPTOR), (prefix + "plugin.py", CODE)]


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def test_a_good_tar_gz_unpacks_with_its_digest(tmp_path: Path) -> None:
    path = tar_bundle(tmp_path / "b.tar.gz", [*good_members("bundled/"), ("bundled/lib/x.py", b"")])
    bundle = open_bundle(path)
    assert bundle.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(bundle.files) == ["emdash-plugin.toml", "lib/x.py", "plugin.py"]
    target, descriptor = extract_bundle(bundle, tmp_path / "plugins")
    assert descriptor.id == "bundled" and target.parent == tmp_path / "plugins"
    assert (target / "plugin.py").read_bytes() == CODE
    assert (target / "lib" / "x.py").is_file()


def test_a_good_zip_at_the_root_unpacks(tmp_path: Path) -> None:
    path = tmp_path / "b.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("emdash-plugin.toml", DESCRIPTOR)
        archive.writestr("plugin.py", CODE)
    target, descriptor = extract_bundle(open_bundle(path), tmp_path / "plugins")
    assert descriptor.id == "bundled"
    assert sorted(os.listdir(target)) == ["emdash-plugin.toml", "plugin.py"]


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (special("evil", tarfile.SYMTYPE, "/etc/passwd"), "is a symbolic link (to '/etc/passwd')"),
        (special("hard", tarfile.LNKTYPE, "plugin.py"), "is a hard link (to 'plugin.py')"),
        (special("dev", tarfile.CHRTYPE), "is a device node"),
        (special("blk", tarfile.BLKTYPE), "is a device node"),
        (special("pipe", tarfile.FIFOTYPE), "is a FIFO"),
        (("../escape.py", b"x"), "contains '..'"),
        (("lib/../../escape.py", b"x"), "contains '..'"),
        (("/etc/cron.d/evil", b"x"), "is an absolute path"),
        (("C:/evil", b"x"), "is an absolute path"),
        (("lib\\evil.py", b"x"), "contains a backslash"),
        (("bad\nname", b"x"), "control characters"),
        (("plugin.py", b"again"), "appears twice"),
    ],
)
def test_hostile_tar_members_are_refused(
    tmp_path: Path, member: tarfile.TarInfo | tuple[str, bytes], message: str
) -> None:
    path = tar_bundle(tmp_path / "evil.tar.gz", [*good_members(), member])
    with pytest.raises(BundleError) as info:
        open_bundle(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert not (tmp_path / "escape.py").exists()


def test_a_zip_symlink_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("emdash-plugin.toml", DESCRIPTOR)
        link = zipfile.ZipInfo("plugin.py")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(BundleError, match="'plugin.py' is a symbolic link"):
        open_bundle(path)


def test_oversized_archives_are_refused(tmp_path: Path) -> None:
    # Random bytes do not compress, so the archive itself is over 1 MB.
    big = tar_bundle(
        tmp_path / "big.tar.gz", [*good_members(), ("blob", os.urandom(MAX_BUNDLE_BYTES))]
    )
    with pytest.raises(BundleError, match="bundles are limited to 1000000 bytes"):
        open_bundle(big)


def test_a_small_archive_that_unpacks_past_the_bound_is_refused(tmp_path: Path) -> None:
    # 5 MB of zeros gzip to a few KB: the archive passes the size check, the content not.
    path = tar_bundle(tmp_path / "bomb.tar.gz", [*good_members(), ("zeros", bytes(5_000_000))])
    assert path.stat().st_size < MAX_BUNDLE_BYTES
    with pytest.raises(BundleError, match="unpacks to more than 1000000 bytes"):
        open_bundle(path)
    zpath = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("emdash-plugin.toml", DESCRIPTOR)
        archive.writestr("zeros", bytes(5_000_000))
    with pytest.raises(BundleError, match="unpacks to more than 1000000 bytes"):
        open_bundle(zpath)


def test_a_bundle_without_a_descriptor_or_with_a_bad_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="has no emdash-plugin.toml"):
        open_bundle(tar_bundle(tmp_path / "a.tar.gz", [("plugin.py", CODE)]))
    bad = tar_bundle(
        tmp_path / "b.tar.gz", [("emdash-plugin.toml", b'id = "Bad Id"\n'), ("plugin.py", CODE)]
    )
    with pytest.raises(BundleError, match="its descriptor is not valid: .*Invalid plugin id"):
        extract_bundle(open_bundle(bad), tmp_path / "plugins")
    assert os.listdir(tmp_path / "plugins") == []  # the half-made directory is gone


def test_garbage_is_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "x.tar.gz"
    path.write_bytes(b"not an archive")
    with pytest.raises(BundleError, match="is not a valid .tar.gz, .tar or .zip archive"):
        open_bundle(path)


def test_extraction_never_follows_an_existing_link(tmp_path: Path) -> None:
    # Even a planted link in the destination's parent is never written through: extraction
    # goes to a directory it creates itself.
    parent = tmp_path / "plugins"
    parent.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, parent / "bundled")
    target, _ = extract_bundle(
        open_bundle(tar_bundle(tmp_path / "b.tar.gz", good_members())), parent
    )
    assert target != parent / "bundled" and os.listdir(outside) == []


def test_a_bundle_entrypoint_must_be_inside_the_bundle(tmp_path: Path) -> None:
    for entry in ("os.path", None):
        line = b"" if entry is None else f'entrypoint = "{entry}"\n'.encode()
        text = b'id = "bundled"\nversion = "1.0.0"\n' + line
        path = tar_bundle(
            tmp_path / "m.tar.gz", [("emdash-plugin.toml", text), ("plugin.py", CODE)]
        )
        with pytest.raises(BundleError, match="its entrypoint must be a file or directory inside"):
            extract_bundle(open_bundle(path), tmp_path / "plugins")
