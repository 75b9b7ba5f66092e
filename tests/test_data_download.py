"""`petalnet data get` against a local HTTP server serving archives the tests build."""

import io
import tarfile

import pytest

from conftest import cli, run_petalnet, shown
from imagegen import jpeg_bytes
from petalnet.data.download import FLOWER_PHOTOS

COUNTS = FLOWER_PHOTOS["counts"]


def build_archive(path, counts=COUNTS, extra_members=()):
    """A gzip tar shaped like flower_photos.tgz, with tiny distinct-enough JPEGs."""
    photo = jpeg_bytes(0, size=(8, 8))
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "flower_photos/LICENSE.txt", b"CC-BY test archive\n")
        for name, n in counts.items():
            for k in range(n):
                _add(tar, f"flower_photos/{name}/{k}.jpg", photo)
        for member, data in extra_members:
            _add(tar, member, data)
    return path


def _add(tar, name, data):
    """A file member `name` holding `data`; or, given a TarInfo (link, device...), that member as is."""
    if isinstance(name, tarfile.TarInfo):
        tar.addfile(name, io.BytesIO(data) if data else None)
        return
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return build_archive(tmp_path_factory.mktemp("archives") / "flower_photos.tgz")


@pytest.mark.slow
def test_download_checks_extracts_and_second_call_is_a_no_op(server, archive, tmp_path, capsys):
    url, www, _ = server
    (www / "flower_photos.tgz").write_bytes(archive.read_bytes())
    dest = tmp_path / "cache"
    assert cli("data", "get", "--source", f"{url}/flower_photos.tgz", "--dest", dest) == 0
    for name, n in COUNTS.items():
        assert len(list((dest / "flower_photos" / name).iterdir())) == n
    assert (dest / "flower_photos.tgz").is_file()
    assert not list(dest.glob("*.part")) and not list(dest.glob(".flower_photos.*"))
    capsys.readouterr()
    assert cli("data", "get", "--source", f"{url}/flower_photos.tgz", "--dest", dest) == 0
    assert "already there (3670 photos)" in capsys.readouterr().out


@pytest.mark.slow
def test_default_destination_is_petalnet_home(archive, tmp_path, monkeypatch):
    monkeypatch.setenv("PETALNET_HOME", str(tmp_path / "home"))
    assert cli("data", "get", "--source", archive) == 0
    assert (tmp_path / "home" / "flower_photos" / "tulips").is_dir()


def test_truncated_download_is_rejected_and_never_used(server, archive, tmp_path):
    url, www, _ = server
    data = archive.read_bytes()
    (www / "flower_photos.tgz").write_bytes(data[: len(data) // 2])
    dest = tmp_path / "cache"
    result = run_petalnet("data", "get", "--source", f"{url}/flower_photos.tgz", "--dest", dest)
    assert result.returncode == 2, shown(result)
    assert result.stderr.count("\n") == 1 and "not a complete gzip tar" in result.stderr, shown(result)
    assert "Traceback" not in result.stderr, shown(result)
    assert not (dest / "flower_photos").exists() and not (dest / "flower_photos.tgz").exists()


@pytest.mark.slow
def test_interrupted_download_resumes_with_a_range_request(server, archive, tmp_path, capsys):
    url, www, handler = server
    (www / "flower_photos.tgz").write_bytes(archive.read_bytes())
    handler.cut_after = 1000
    dest = tmp_path / "cache"
    assert cli("data", "get", "--source", f"{url}/flower_photos.tgz", "--dest", dest) == 2
    assert "run again to resume" in capsys.readouterr().err
    assert (dest / "flower_photos.tgz.part").stat().st_size == 1000
    assert not (dest / "flower_photos").exists()
    assert cli("data", "get", "--source", f"{url}/flower_photos.tgz", "--dest", dest) == 0
    assert handler.requests[-1] == "bytes=1000-"
    assert (dest / "flower_photos.tgz").read_bytes() == archive.read_bytes()
    assert len(list((dest / "flower_photos" / "daisy").iterdir())) == COUNTS["daisy"]


def test_archive_with_other_counts_is_not_flower_photos(tmp_path, capsys):
    wrong = build_archive(tmp_path / "wrong.tgz", counts={**COUNTS, "roses": 10})
    assert cli("data", "get", "--source", wrong, "--dest", tmp_path / "d") == 2
    assert "is not the flower_photos archive" in capsys.readouterr().err
    assert not (tmp_path / "d" / "flower_photos").exists()


def test_not_a_gzip_tar(tmp_path, capsys):
    fake = tmp_path / "flower_photos.tgz"
    fake.write_text("<html>404</html>")
    assert cli("data", "get", "--source", fake, "--dest", tmp_path / "d") == 2
    assert "not a complete gzip tar" in capsys.readouterr().err


def test_unsafe_member_is_refused_and_nothing_escapes(tmp_path, capsys):
    evil = build_archive(tmp_path / "evil.tgz", extra_members=[("flower_photos/../../escaped.txt", b"x")])
    dest = tmp_path / "a" / "b"
    assert cli("data", "get", "--source", evil, "--dest", dest) == 2
    assert "refusing unsafe archive" in capsys.readouterr().err
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "a" / "escaped.txt").exists()
    assert not (dest / "flower_photos").exists()


def test_missing_local_archive(tmp_path, capsys):
    assert cli("data", "get", "--source", tmp_path / "nope.tgz", "--dest", tmp_path) == 2
    assert "no such archive" in capsys.readouterr().err
