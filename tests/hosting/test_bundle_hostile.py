"""Plugin bundles built by a hostile author: archive metadata, compressors and names that
the first round of checks (tests/hosting/test_bundle.py) did not cover."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from emdash._hosting._bundle import MAX_BUNDLE_BYTES, BundleError, extract_bundle, open_bundle

DESCRIPTOR = b'id = "bundled"\nversion = "1.0.0"\nentrypoint = "plugin.py"\n'
CODE = b"from emdash import define_plugin\nplugin = define_plugin()\n"
MEGABYTE_OF_ZEROS = bytes(1 << 20)


def _tar_bytes(members: list[tuple[str, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _header_bomb(kind: bytes, megabytes: int) -> bytes:
    """A tar stream whose first header announces ``megabytes`` MB of metadata (a GNU long
    name, a pax header): tarfile reads such metadata whole, before any member is seen."""
    header = tarfile.TarInfo("././@LongLink")
    header.type = kind
    header.size = megabytes << 20
    return header.tobuf(format=tarfile.GNU_FORMAT)


def _gzip_stream(head: bytes, zero_megabytes: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(head)
        for _ in range(zero_megabytes):
            gz.write(MEGABYTE_OF_ZEROS)
    return out.getvalue()


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE])
def test_metadata_that_unpacks_past_the_bound_is_refused_before_it_is_read(
    tmp_path: Path, kind: bytes
) -> None:
    # 64 MB of header data in a ~64 KB archive: it must stop at the unpacking bound, not
    # be read into memory by tarfile (which it was: a 1 MB archive took ~1 GB).
    path = tmp_path / "bomb.tar.gz"
    path.write_bytes(_gzip_stream(_header_bomb(kind, 64), 64))
    assert path.stat().st_size < MAX_BUNDLE_BYTES
    with pytest.raises(BundleError, match="unpacks to more than"):
        open_bundle(path)


def test_a_bzip2_tar_is_refused_whatever_its_suffix(tmp_path: Path) -> None:
    # bzip2 expands a few hundred bytes into gigabytes; bundles are gzip or plain tar only.
    path = tmp_path / "b.tar"
    path.write_bytes(bz2.compress(_tar_bytes([("emdash-plugin.toml", DESCRIPTOR)])))
    with pytest.raises(BundleError, match=r"gzip-compressed \(\.tar\.gz, \.tgz\) or a plain"):
        open_bundle(path)


def test_a_plain_tar_and_a_multi_member_gzip_still_open(tmp_path: Path) -> None:
    tar = _tar_bytes([("emdash-plugin.toml", DESCRIPTOR), ("plugin.py", CODE)])
    (tmp_path / "a.tar").write_bytes(tar)
    assert sorted(open_bundle(tmp_path / "a.tar").files) == ["emdash-plugin.toml", "plugin.py"]
    # `cat a.gz b.gz` is a valid gzip file (two members): read as one stream.
    half = len(tar) // 2
    (tmp_path / "b.tgz").write_bytes(gzip.compress(tar[:half]) + gzip.compress(tar[half:]))
    assert sorted(open_bundle(tmp_path / "b.tgz").files) == ["emdash-plugin.toml", "plugin.py"]


def test_a_pax_size_override_is_bounded_by_what_is_read(tmp_path: Path) -> None:
    # A pax record may claim any size for the next member; what counts is the data read.
    pax = tarfile.TarInfo("plugin.py")
    pax.pax_headers = {"size": str(50 << 20)}
    pax.size = 0
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("emdash-plugin.toml")
        info.size = len(DESCRIPTOR)
        tar.addfile(info, io.BytesIO(DESCRIPTOR))
        tar.addfile(pax)
    path = tmp_path / "pax.tar"
    path.write_bytes(raw.getvalue())
    with pytest.raises(BundleError, match="unpacks to more than|not a valid"):
        open_bundle(path)


@pytest.mark.parametrize(
    "name",
    [
        "a" * 300 + ".py",  # one component longer than any file system allows (255)
        "/".join(["d" * 200] * 25) + "/x.py",  # a path longer than PATH_MAX (4096)
    ],
)
def test_a_name_too_long_for_the_file_system_is_a_bundle_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / "long.tar.gz"
    path.write_bytes(
        gzip.compress(
            _tar_bytes([("emdash-plugin.toml", DESCRIPTOR), ("plugin.py", CODE), (name, b"")])
        )
    )
    with pytest.raises(BundleError) as info:
        extract_bundle(open_bundle(path), tmp_path / "plugins")
    assert "too long" in info.value.message and str(path) in info.value.message
    assert os.listdir(tmp_path / "plugins") == []  # nothing half-made is left


@pytest.mark.parametrize(
    ("first", "other"),
    [("plugin.py", "Plugin.py"), ("plugin.py", "PLUGIN.PY"), ("key.py", "\u212aey.py")],
)
def test_names_that_differ_only_by_case_are_refused(tmp_path: Path, first: str, other: str) -> None:
    # On a case-insensitive file system (macOS, Windows) both would be one file: which one a
    # reviewer reads and which one loads would depend on the order of the members.
    path = tmp_path / "case.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("emdash-plugin.toml", DESCRIPTOR)
        archive.writestr("plugin.py", CODE)
        if first != "plugin.py":
            archive.writestr(first, b"")
        archive.writestr(other, b"import os\n")
    with pytest.raises(BundleError, match="differ only by case"):
        open_bundle(path)


def test_unicode_forms_of_one_name_are_refused(tmp_path: Path) -> None:
    # "é" composed (NFC) and decomposed (NFD): one file on macOS, two on Linux.
    members = [
        ("emdash-plugin.toml", DESCRIPTOR),
        ("plugin.py", CODE),
        ("caf\u00e9.py", b""),
        ("cafe\u0301.py", b""),
    ]
    path = tmp_path / "nf.tar.gz"
    path.write_bytes(gzip.compress(_tar_bytes(members)))
    with pytest.raises(BundleError, match="differ only by case"):
        open_bundle(path)


def test_setuid_and_world_writable_modes_are_not_carried_over(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in (("emdash-plugin.toml", DESCRIPTOR), ("plugin.py", CODE)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o6777
            tar.addfile(info, io.BytesIO(data))
        lib = tarfile.TarInfo("lib")
        lib.type = tarfile.DIRTYPE
        lib.mode = 0o7777
        tar.addfile(lib)
    path = tmp_path / "modes.tgz"
    path.write_bytes(raw.getvalue())
    target, _ = extract_bundle(open_bundle(path), tmp_path / "plugins")
    for entry in (target, target / "plugin.py", target / "lib"):
        mode = entry.stat().st_mode
        assert mode & 0o7000 == 0 and mode & 0o002 == 0, oct(mode)


def _pax_tar(members: list[tuple[str, dict[str, str], bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, pax, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = pax
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def test_a_pax_path_record_is_checked_like_a_name(tmp_path: Path) -> None:
    # The header says "harmless.py"; the pax record that tar and tarfile obey says "../x".
    path = tmp_path / "pax.tgz"
    path.write_bytes(
        gzip.compress(
            _pax_tar(
                [
                    ("emdash-plugin.toml", {}, DESCRIPTOR),
                    ("plugin.py", {}, CODE),
                    ("harmless.py", {"path": "../escape.py"}, b"x"),
                ]
            )
        )
    )
    with pytest.raises(BundleError, match="contains '..'"):
        open_bundle(path)


def test_a_sparse_member_is_counted_by_its_unpacked_size(tmp_path: Path) -> None:
    # GNU sparse 1.0: a one-line map and 100 MB of holes read back as zeros.
    sparse_map = b"1\n0\n1\n".ljust(512, b"\0") + b"x"
    pax = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "zeros.py",
        "GNU.sparse.realsize": str(100 << 20),
    }
    path = tmp_path / "sparse.tgz"
    path.write_bytes(
        gzip.compress(
            _pax_tar(
                [
                    ("emdash-plugin.toml", {}, DESCRIPTOR),
                    ("plugin.py", {}, CODE),
                    ("GNUSparseFile.0/zeros.py", pax, sparse_map),
                ]
            )
        )
    )
    with pytest.raises(BundleError, match="unpacks to more than"):
        open_bundle(path)


def test_a_tar_with_a_zip_appended_is_refused_not_read_as_the_zip(tmp_path: Path) -> None:
    # `tar tzf` lists the tar (gzip ignores the trailing bytes with a warning); a zip reader
    # finds the zip's directory at the end. The operator reviews one, emdash installed the
    # other: a bundle must mean one thing.
    benign = gzip.compress(_tar_bytes([("emdash-plugin.toml", DESCRIPTOR), ("plugin.py", CODE)]))
    hidden = io.BytesIO()
    with zipfile.ZipFile(hidden, "w") as archive:
        archive.writestr("emdash-plugin.toml", DESCRIPTOR)
        archive.writestr("plugin.py", b"import os\n")
    path = tmp_path / "polyglot.tar.gz"
    path.write_bytes(benign + hidden.getvalue())
    with pytest.raises(BundleError, match="is also a zip archive"):
        open_bundle(path)


def test_the_suffix_decides_the_format(tmp_path: Path) -> None:
    path = tmp_path / "really-a-tar.zip"
    path.write_bytes(gzip.compress(_tar_bytes([("emdash-plugin.toml", DESCRIPTOR)])))
    with pytest.raises(BundleError, match="is not a valid .zip archive"):
        open_bundle(path)


def test_directories_implied_by_deep_paths_count_as_members(tmp_path: Path) -> None:
    # One member "d0/a/a/.../x.py" 1500 levels deep made 1500 directories; a thousand such
    # members (well under the byte bounds once gzipped) made 1.5 million: inode exhaustion.
    deep = "/".join(["a"] * 1500) + "/x.py"
    path = tmp_path / "deep.tgz"
    path.write_bytes(
        gzip.compress(
            _tar_bytes([("emdash-plugin.toml", DESCRIPTOR), ("plugin.py", CODE), (deep, b"")])
        )
    )
    with pytest.raises(BundleError, match="more than 1000 files and directories"):
        open_bundle(path)
    assert not (tmp_path / "plugins").exists()


def test_a_directory_listed_without_its_parent_or_under_a_file(tmp_path: Path) -> None:
    def with_dir(name: str, extra: list[tuple[str, bytes]]) -> Path:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for member, data in [("emdash-plugin.toml", DESCRIPTOR), ("plugin.py", CODE), *extra]:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            directory = tarfile.TarInfo(name)
            directory.type = tarfile.DIRTYPE
            tar.addfile(directory)
        path = tmp_path / f"d{len(extra)}.tar"
        path.write_bytes(raw.getvalue())
        return path

    target, _ = extract_bundle(open_bundle(with_dir("lib/sub", [])), tmp_path / "plugins")
    assert (target / "lib" / "sub").is_dir()
    with pytest.raises(BundleError, match="'lib' is both a file and a directory"):
        open_bundle(with_dir("lib/sub", [("lib", b"")]))


def test_a_directory_name_too_long_for_the_file_system_is_a_bundle_error(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for member, data in [("emdash-plugin.toml", DESCRIPTOR), ("plugin.py", CODE)]:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        directory = tarfile.TarInfo("d" * 300)
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
    path = tmp_path / "longdir.tar"
    path.write_bytes(raw.getvalue())
    with pytest.raises(BundleError, match="cannot be unpacked"):
        extract_bundle(open_bundle(path), tmp_path / "plugins")
    assert os.listdir(tmp_path / "plugins") == []


@pytest.mark.parametrize("path_record", ["plugin.py\x00.txt", "./../x.py", "lib//../../x.py"])
def test_pax_names_with_nul_or_dot_segments_are_refused(tmp_path: Path, path_record: str) -> None:
    path = tmp_path / "nul.tgz"
    path.write_bytes(
        gzip.compress(
            _pax_tar(
                [
                    ("emdash-plugin.toml", {}, DESCRIPTOR),
                    ("plugin.py", {}, CODE),
                    ("other.py", {"path": path_record}, b"import os\n"),
                ]
            )
        )
    )
    with pytest.raises(BundleError, match="control characters|appears twice|contains '..'"):
        open_bundle(path)


def test_a_chain_of_metadata_headers_is_a_bundle_error(tmp_path: Path) -> None:
    # tarfile reads a long-name header by recursing into the next header: 3000 of them in a
    # row (12 KB gzipped) were a raw RecursionError, a traceback instead of a refusal.
    raw = io.BytesIO()
    for _ in range(3000):
        header = tarfile.TarInfo("././@LongLink")
        header.type = tarfile.GNUTYPE_LONGNAME
        header.size = 5
        raw.write(header.tobuf(format=tarfile.GNU_FORMAT) + b"x.py\0".ljust(512, b"\0"))
    path = tmp_path / "chain.tgz"
    path.write_bytes(gzip.compress(raw.getvalue() + bytes(1024)))
    with pytest.raises(BundleError, match="is not a valid"):
        open_bundle(path)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_zip_members_are_stored_or_deflated_only(tmp_path: Path, method: int) -> None:
    # zipfile inflates deflate in bounded steps, but hands each 4 KB of a bzip2 or LZMA
    # member to the decompressor with no bound on its output: 177 bytes of bzip2 are 200 MB
    # of zeros, in memory at once, before any budget could see them (a 468-byte zip took
    # 470 MB).
    path = tmp_path / "bz.zip"
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        archive.writestr("emdash-plugin.toml", DESCRIPTOR)
        archive.writestr("zeros", bytes(5 << 20))
    with pytest.raises(BundleError, match="compressed with a method other than deflate"):
        open_bundle(path)
