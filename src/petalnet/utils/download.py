"""Downloads that survive a bad connection: streamed into `<file>.part`, resumed with an HTTP Range
request when the server allows it, renamed into place only once complete, with a progress bar.

    download("https://host/file.tgz", Path("cache/file.tgz"))   # UserError with one line on failure
"""

import os
import urllib.error
import urllib.request
from pathlib import Path

from petalnet.errors import UserError
from petalnet.utils.fileio import fsync_dir
from petalnet.utils.progress import progress_bar

CHUNK = 1 << 20


def is_url(source):
    return str(source).split("://", 1)[0] in ("http", "https", "file", "ftp")


def download(url, archive, offline_hint="", progress=True):
    """Stream `url` into `archive.part`, resuming a previous partial download; rename when done.
    `offline_hint` ends the one line said when the file cannot be fetched."""
    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    part = archive.with_name(archive.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "petalnet"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the .part already holds everything
            os.replace(part, archive)
            return
        raise UserError(f"download failed: {url}: HTTP {err.code} {err.reason}{offline_hint}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise UserError(f"download failed: {url}: {getattr(err, 'reason', err)}{offline_hint}") from None
    with response:
        resumed = have and response.status == 206
        done = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length else None
        _stream(response, part, "ab" if resumed else "wb", done, total, progress)
    os.replace(part, archive)
    fsync_dir(archive.parent)


def _stream(response, part, mode, done, total, progress):
    bar = progress_bar(enabled=progress, total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=f"downloading {Path(part).stem}")
    with open(part, mode) as f, bar:
        try:
            while chunk := response.read(CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
                done += len(chunk)
        except OSError as err:
            raise UserError(f"download interrupted at {done} bytes ({err}): run again to resume") from None
        f.flush()
        os.fsync(f.fileno())
    if total is not None and done < total:
        raise UserError(f"download interrupted at {done} of {total} bytes: run again to resume")
