"""`petalnet data get`: fetch TensorFlow's flower_photos archive, check it, extract it safely.

    petalnet data get                                # official archive -> ~/.cache/petalnet
    petalnet data get --source flower_photos.tgz     # an archive you already have
    petalnet data get --source https://mirror/flower_photos.tgz --dest /data

The download streams to `<dest>/flower_photos.tgz.part` (resumed with an HTTP Range request when the
server allows it) and is renamed only once complete. The archive must be a gzip tar holding the 5 class
folders with their exact photo counts; it is extracted with tarfile's `data` filter into a temp folder
that is renamed into place, so a half-extracted dataset is never seen.
"""

import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from petalnet.errors import UserError
from petalnet.utils.fileio import fsync_dir
from petalnet.data.images import is_image_name
from petalnet.utils.download import download, is_url

FLOWER_PHOTOS = {
    "name": "flower_photos",
    "url": "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz",
    "counts": {"daisy": 633, "dandelion": 898, "roses": 641, "sunflowers": 699, "tulips": 799},
}


def petalnet_home():
    return Path(os.environ.get("PETALNET_HOME") or Path.home() / ".cache" / "petalnet")


def default_data_dir():
    """The dataset commands use when --data is not given: $PETALNET_DATA, else a `data get` copy."""
    if os.environ.get("PETALNET_DATA"):
        return Path(os.environ["PETALNET_DATA"])
    fetched = petalnet_home() / FLOWER_PHOTOS["name"]
    return fetched if fetched.is_dir() else None


def data_folder(path=None):
    """`path`, else the dataset commands use when none is given (default_data_dir); one line when neither."""
    path = path or default_data_dir()
    if path is None:
        raise UserError("no dataset: pass a folder, set $PETALNET_DATA, or run 'petalnet data get'")
    return path


def run_get(settings):
    """`petalnet data get`: the dataset in place and checked; says where and how to use it. Returns 0."""
    path = get_dataset(settings.source, settings.dest)
    print(f"dataset: {path}")
    print(f"use it with: petalnet train --data {path} --out runs/seed   (or export PETALNET_DATA={path})")
    return 0


def get_dataset(source=None, dest=None, spec=FLOWER_PHOTOS, log=print):
    """Make sure `<dest>/<name>/` holds the checked dataset; return its path."""
    dest = Path(dest) if dest else petalnet_home()
    target = dest / spec["name"]
    if target.is_dir():
        counts = count_folder(target, spec)
        if counts != spec["counts"]:
            raise UserError(f"{target} exists but does not hold the expected photos "
                            f"(found {counts}): remove it and run again")
        log(f"{target} is already there ({sum(counts.values())} photos): nothing to do")
        return target
    dest.mkdir(parents=True, exist_ok=True)
    source = source or spec["url"]
    if is_url(source):
        archive = dest / f"{spec['name']}.tgz"
        if not archive.exists():
            download(source, archive)
        try:
            check_archive(archive, spec)
        except UserError:
            archive.unlink()
            raise
    else:
        archive = Path(source)
        if not archive.is_file():
            raise UserError(f"no such archive: {archive}")
        check_archive(archive, spec)
    extract(archive, dest, spec["name"])
    log(f"extracted {sum(spec['counts'].values())} photos to {target}")
    return target


def check_archive(archive, spec):
    """Raise UserError unless `archive` is a safe gzip tar with the spec's class folders and counts.

    Safe: every member passes tarfile's `data` filter (no absolute path, no `..`, no link leading out,
    no device file), checked here before anything is extracted, and again by extract().
    """
    counts = {name: 0 for name in spec["counts"]}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                refuse_unsafe_member(member, archive)
                parts = Path(member.name).parts
                if (member.isfile() and len(parts) == 3 and parts[0] == spec["name"]
                        and parts[1] in counts and is_image_name(parts[2])):
                    counts[parts[1]] += 1
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise UserError(f"{archive} is not a complete gzip tar archive ({err})") from None
    if counts != spec["counts"]:
        raise UserError(f"{archive} is not the {spec['name']} archive: expected photos per class "
                        f"{spec['counts']}, found {counts}")


def refuse_unsafe_member(member, archive):
    """UserError unless a tar member is safe to extract: no absolute path, and tarfile's `data` filter passes
    it (no `..`, no link leading out, no device file)."""
    if member.name.startswith(("/", "\\")):  # the data filter would strip the slash; we refuse outright
        raise UserError(f"refusing unsafe archive {archive}: member {member.name!r} has an absolute path")
    if not hasattr(tarfile, "data_filter"):
        return  # extract() refuses to run without it
    try:
        tarfile.data_filter(member, "/petalnet-archive-check")
    except tarfile.FilterError as err:
        raise UserError(f"refusing unsafe archive {archive}: {err}") from None


def extract(archive, dest, name):
    if not hasattr(tarfile, "data_filter"):
        raise UserError("this Python lacks tarfile's 'data' filter (3.11.4+ has it): cannot extract safely")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.extracting.", dir=dest))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        os.replace(tmp / name, dest / name)
        fsync_dir(dest)
    except tarfile.FilterError as err:
        raise UserError(f"refusing unsafe archive {archive}: {err}") from None
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise UserError(f"cannot extract {archive}: {err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def count_folder(folder, spec):
    counts = {}
    for name in spec["counts"]:
        class_dir = Path(folder) / name
        counts[name] = sum(1 for f in class_dir.iterdir() if is_image_name(f.name)) if class_dir.is_dir() else 0
    return counts
