"""Photos that come as an archive (.zip, .tar, .tar.gz, .tgz): unpacked once, safely, then read as a folder.

    folder = unpacked("flowers.zip")   # $PETALNET_HOME/unpacked/flowers-<key>/, or the one folder inside it

Each archive is unpacked once per content: the folder's name carries a hash of the archive's absolute path,
size and modification time, so a changed archive is unpacked again and an unchanged one is not. The guards
are `data get`'s: nothing is written unless every member is safe (no absolute path, no `..`, no link, no
device file; tarfile's `data` filter for tar, the same rules checked by hand for zip), and the unpacked size
must fit on the disk with room to spare (an archive that would fill it, a "zip bomb", is refused before a
byte is written). Members go into a temporary folder renamed into place at the end, so a half-unpacked
archive is never read; two processes unpacking the same archive at once (torchrun's ranks) both end with the
one folder.
"""

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from petalnet.data.download import petalnet_home, refuse_unsafe_member
from petalnet.errors import UserError
from petalnet.utils.fileio import fsync_dir

SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
SPARE_BYTES = 1 << 30  # left free on the disk after unpacking
IGNORED = ("__MACOSX",)  # folders archivers add beside the content


def is_archive(path):
    return Path(path).name.lower().endswith(SUFFIXES) and Path(path).is_file()


def unpacked(archive, home=None):
    """The folder holding `archive`'s content (the one top folder inside it when it has only one)."""
    archive = Path(archive)
    stats = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}:{stats.st_size}:{stats.st_mtime_ns}".encode()).hexdigest()[:12]
    name = archive.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[:-len(suffix)]
    dest = Path(home or petalnet_home()) / "unpacked" / f"{name}-{key}"
    if not dest.is_dir():
        _unpack(archive, dest)
    return content_folder(dest)


def content_folder(folder):
    """`folder`, or the single folder inside it when nothing else is there (hidden files and IGNORED aside)."""
    entries = [e for e in Path(folder).iterdir() if not e.name.startswith(".") and e.name not in IGNORED]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else Path(folder)


def _unpack(archive, dest):
    dest.parent.mkdir(parents=True, exist_ok=True)
    members, size = (_zip_members if archive.name.lower().endswith(".zip") else _tar_members)(archive)
    free = shutil.disk_usage(dest.parent).free
    if size + SPARE_BYTES > free:
        raise UserError(f"refusing to unpack {archive}: its {size / 2**30:.1f} GiB would leave less than "
                        f"{SPARE_BYTES / 2**30:.0f} GiB free in {dest.parent} ({free / 2**30:.1f} GiB free)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpacking.", dir=dest.parent))
    try:
        members(tmp)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # another process renamed its copy first: use that one
                raise
        fsync_dir(dest.parent)
    except OSError as err:
        raise UserError(f"cannot unpack {archive} into {dest.parent}: {err.strerror or err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tar_members(archive):
    """(a function that extracts into a folder, the unpacked size), every member checked first."""
    if not hasattr(tarfile, "data_filter"):
        raise UserError("this Python lacks tarfile's 'data' filter (3.11.4+ has it): cannot unpack safely")
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise UserError(f"{archive} is not a complete tar archive ({err})") from None
    for member in members:
        refuse_unsafe_member(member, archive)  # data get's check
        if not (member.isfile() or member.isdir()):
            raise UserError(f"refusing unsafe archive {archive}: member {member.name!r} is a link or device")

    def extract(folder):
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(folder, filter="data")
        except (tarfile.TarError, EOFError, zlib.error) as err:
            raise UserError(f"cannot unpack {archive}: {err}") from None

    return extract, sum(member.size for member in members)


def _zip_members(archive):
    """As _tar_members, for a zip: names checked by hand (zipfile itself would drop `..` silently)."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            infos = bundle.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise UserError(f"{archive} is not a complete zip archive ({err})") from None
    for info in infos:
        name = PurePosixPath(info.filename.replace("\\", "/"))
        kind = stat.S_IFMT(info.external_attr >> 16)
        if name.is_absolute() or ".." in name.parts or ":" in info.filename:
            raise UserError(f"refusing unsafe archive {archive}: member {info.filename!r} leaves the folder")
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise UserError(f"refusing unsafe archive {archive}: member {info.filename!r} is a link or device")

    def extract(folder):
        try:
            with zipfile.ZipFile(archive) as bundle:
                bundle.extractall(folder)
        except (zipfile.BadZipFile, zlib.error, EOFError) as err:
            raise UserError(f"cannot unpack {archive}: {err}") from None

    return extract, sum(info.file_size for info in infos)
