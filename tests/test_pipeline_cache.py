"""pipeline/cache.py: photos decoded once (train canvas, val tensors), the cache file, decoding threads."""

import pytest
import torch

from imagegen import make_class_folders
from petalnet.errors import UserError
from petalnet.pipeline.cache import decode_eval_photos, decoded_photos, fitted_size
from petalnet.pipeline.preprocess import eval_tensor
from petalnet.data.images import open_photo

SHORT, EVAL = 40, 32  # the train canvas's short side and the val size, in pixels


def photo_lists(root):
    paths = sorted(root.rglob("*.jpg"))
    labels = [0 if p.parent.name == "a" else 1 for p in paths]
    return {"train": (paths[:-2], labels[:-2]), "val": (paths[-2:], labels[-2:])}


def decoded(data, **kwargs):
    return decoded_photos(data, SHORT, EVAL, "squash", progress=False, **kwargs)


def test_cache_file_is_reused_and_keyed_by_content(tmp_path):
    make_class_folders(tmp_path / "photos", {"a": 4, "b": 4})
    data, logs = photo_lists(tmp_path / "photos"), []
    first = decoded(data, cache_dir=tmp_path / "cache", log=logs.append)
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and "saved decoded photos" in logs[-1]
    second = decoded(data, cache_dir=tmp_path / "cache", log=logs.append)
    assert logs[-1].startswith("decoded photos from")
    assert torch.equal(first[0].canvas, second[0].canvas) and torch.equal(first[1][0], second[1][0])
    data["train"][0][0].write_bytes(data["train"][0][1].read_bytes())  # one photo's content changes
    decoded(data, cache_dir=tmp_path / "cache", log=logs.append)
    assert len(list((tmp_path / "cache").iterdir())) == 2
    decoded_photos(data, SHORT, EVAL, "center_crop", cache_dir=tmp_path / "cache", progress=False, log=logs.append)
    assert len(list((tmp_path / "cache").iterdir())) == 3  # another eval transform: another file


def test_a_broken_cache_file_is_rebuilt_not_trusted(tmp_path):
    make_class_folders(tmp_path / "photos", {"a": 3, "b": 3})
    data, logs = photo_lists(tmp_path / "photos"), []
    decoded(data, cache_dir=tmp_path / "cache", log=logs.append)
    (cache_file,) = (tmp_path / "cache").iterdir()
    cache_file.write_bytes(b"not a cache")
    train, _ = decoded(data, cache_dir=tmp_path / "cache", log=logs.append)
    assert any("ignoring unreadable cache file" in line for line in logs)
    assert len(train) == 4 and cache_file.stat().st_size > 1000


def test_decoding_threads_give_the_same_photos_in_order_and_stop_at_a_broken_one(tmp_path):
    make_class_folders(tmp_path / "photos", {"a": 9, "b": 9})
    data = photo_lists(tmp_path / "photos")
    alone = decoded(data, workers=0)
    threads = decoded(data, workers=3)
    assert torch.equal(alone[0].canvas, threads[0].canvas) and torch.equal(alone[0].sizes, threads[0].sizes)
    assert torch.equal(alone[1][0], threads[1][0])
    broken = data["train"][0][5]
    broken.write_bytes(broken.read_bytes()[:200])  # truncated after the check, before training decodes it
    with pytest.raises(UserError, match=f"cannot decode {broken}"):
        decoded(data, workers=3)


@pytest.mark.parametrize("resize", ["squash", "center_crop"])
def test_val_photos_are_kept_exactly_as_evaluate_shows_them(sample_photos, resize):
    images, labels = decode_eval_photos(sample_photos, range(len(sample_photos)), 48, resize, progress=False)
    assert images.shape == (len(sample_photos), 3, 48, 48) and labels.tolist() == list(range(len(sample_photos)))
    for image, path in zip(images, sample_photos):
        assert torch.equal(image, eval_tensor(open_photo(path), 48, resize))


def test_train_photos_are_shrunk_never_enlarged_and_kept_within_twice_the_short_side():
    assert fitted_size(480, 640, 240) == (240, 320)
    assert fitted_size(100, 150, 240) == (100, 150)  # smaller already: kept
    assert fitted_size(300, 1200, 200) == (100, 400)  # a panorama: long side at most 2x the short side
