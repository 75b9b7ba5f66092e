"""data/folders.py's one listing of photos (list_photos, walk_folder): what predict, export's checks, int8
calibration and the class-folder scan read."""

import pytest

from imagegen import make_class_folders, write_photo
from petalnet.data.folders import list_photos, scan_class_folder


@pytest.fixture
def tree(tmp_path):
    """a/1.jpg, a/sub/2.png, b/3.jpg; hidden files and folders; a note; links: one back up, one twice to b."""
    root = tmp_path / "photos"
    write_photo(root / "a" / "1.jpg", 1)
    write_photo(root / "a" / "sub" / "2.png", 2)
    write_photo(root / "b" / "3.jpg", 3)
    write_photo(root / ".thumbnails" / "t.jpg", 4)  # a hidden folder
    write_photo(root / "a" / ".hidden.jpg", 5)  # a hidden file (macOS's ._name copies look like this)
    (root / "a" / "notes.txt").write_text("not an image name")
    (root / "a" / "sub" / "up").symlink_to("..", target_is_directory=True)  # a/sub/up -> a: a loop
    (root / "a" / "b-again").symlink_to(root / "b", target_is_directory=True)  # b, a second time
    return root


def test_folders_are_listed_recursively_sorted_without_hidden_ones_and_each_real_folder_once(tree):
    skipped = []
    found = list_photos([tree], skipped)
    assert [p.relative_to(tree).as_posix() for p in found] == ["a/1.jpg", "a/sub/2.png", "b/3.jpg"]
    assert sorted(p.relative_to(tree).as_posix() for p in skipped) == ["a/b-again", "a/sub/up"]


def test_a_link_to_a_folder_outside_is_followed_and_files_are_kept_as_given(tree, tmp_path):
    outside = tmp_path / "elsewhere"
    write_photo(outside / "4.jpg", 6)
    (tree / "b" / "more").symlink_to(outside, target_is_directory=True)
    given = tmp_path / "notes.txt"
    found = list_photos([given, tree / "b"])  # a file named on the command line is kept whatever its name
    assert found == [given, tree / "b" / "3.jpg", tree / "b" / "more" / "4.jpg"]


def test_the_class_folder_scan_does_not_follow_a_loop(tmp_path):
    root = make_class_folders(tmp_path / "p", {"daisy": 2, "roses": 1})
    (root / "daisy" / "deeper").mkdir()
    (root / "daisy" / "deeper" / "up").symlink_to("..", target_is_directory=True)  # issue 31's loop
    found = scan_class_folder(root)
    assert len(found.files) == 3 and len(set(found.files)) == 3 and found.counts() == {"daisy": 2, "roses": 1}
