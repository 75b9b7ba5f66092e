"""`petalnet predict` (inference/predict.py) and the `load_classifier` API (classifier.py)."""

import json
import zipfile

import pytest
from PIL import Image

from conftest import CLASSES, cli, run_petalnet, shown
from imagegen import save_variants
from petalnet import load_classifier
from petalnet.utils.fields import SettingError

BROKEN = {"text.jpg": b"this is not a jpeg\n", "empty.jpg": b""}


@pytest.fixture(scope="module")
def mixed_folder(made_photos, tmp_path_factory):
    """One photo saved in every mode, plus broken files, plus a nested photo."""
    folder = tmp_path_factory.mktemp("mixed") / "inbox"
    photo = sorted((made_photos / "roses").iterdir())[0]
    variants = save_variants(Image.open(photo), folder)
    for name, data in BROKEN.items():
        (folder / name).write_bytes(data)
    (folder / "nested").mkdir()
    (folder / "nested" / "daisy.jpg").write_bytes(sorted((made_photos / "daisy").iterdir())[0].read_bytes())
    (folder / "notes.txt").write_text("not an image name: skipped inside folders")
    return folder, variants


def json_lines(text):
    return [json.loads(line) for line in text.splitlines()]


def check_top(record, k):
    assert set(record) == {"path", "top"}
    assert len(record["top"]) == k
    assert all(set(t) == {"class", "prob"} and t["class"] in CLASSES and 0 <= t["prob"] <= 1 for t in record["top"])
    probs = [t["prob"] for t in record["top"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0001
    assert len({t["class"] for t in record["top"]}) == k


def same_top(a, b, tolerance=1e-5):
    """The same classes in the same order, probabilities within `tolerance` (a batch of 1 and one of 3 do
    not round alike)."""
    return [t["class"] for t in a] == [t["class"] for t in b] and \
        all(abs(s["prob"] - t["prob"]) <= tolerance for s, t in zip(a, b))


def test_json_gives_one_record_per_file_and_errors_for_broken_ones(trained_run, mixed_folder, capsys):
    folder, variants = mixed_folder
    assert cli("predict", trained_run, folder, "--json", "--device", "cpu") == 1  # some failed
    records = json_lines(capsys.readouterr().out)
    by_name = {r["path"].split("/")[-1]: r for r in records}
    assert len(records) == len(variants) + len(BROKEN) + 1  # notes.txt is not an image name
    for name in list(variants) + ["daisy.jpg"]:
        check_top(by_name[name], 3)
    for name in BROKEN:
        record = by_name[name]
        assert set(record) == {"path", "error"} and record["error"] and "\n" not in record["error"]


def test_every_mode_is_classified_as_the_photo_it_shows(trained_run, mixed_folder, capsys):
    folder, variants = mixed_folder
    names = ["upright.jpg", "exif_rotated.jpg", "rgba_opaque.png", "photo.webp", "photo.bmp", "photo.tif"]
    other = folder / "nested" / "daisy.jpg"
    assert cli("predict", trained_run, *[variants[n] for n in names], other, "--json", "--topk", "5") == 0
    *tops, another = [{t["class"]: t["prob"] for t in r["top"]} for r in json_lines(capsys.readouterr().out)]
    for top in tops[1:]:
        assert all(abs(top[c] - tops[0][c]) < 0.005 for c in CLASSES)
    assert any(abs(another[c] - tops[0][c]) > 0.015 for c in CLASSES)  # another photo is told apart


def test_plain_output_topk_and_missing_file(trained_run, mixed_folder, tmp_path, capsys):
    folder, variants = mixed_folder
    missing = tmp_path / "gone.jpg"
    assert cli("predict", trained_run, variants["upright.jpg"], missing, "--topk", "2") == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    path, *rest = lines[0].split()
    assert path == str(variants["upright.jpg"]) and len(rest) == 4 and rest[0] in CLASSES and float(rest[1]) > 0
    assert lines[1] == f"{missing}  error: no such file"


def test_plot_saves_the_tutorials_view_and_a_grid(trained_run, mixed_folder, tmp_path):
    folder, variants = mixed_folder
    single, grid = tmp_path / "one.png", tmp_path / "grid.png"
    assert cli("predict", trained_run, variants["upright.jpg"], "--plot", single) == 0
    assert cli("predict", trained_run, folder, "--plot", grid) == 1
    for path in (single, grid):
        assert path.read_bytes()[:4] == b"\x89PNG"
    assert Image.open(grid).size[0] > Image.open(single).size[0]


def test_python_api_returns_the_records_of_predict_json(trained_run, mixed_folder, capsys):
    folder, variants = mixed_folder
    clf = load_classifier(trained_run, device="cpu")
    assert clf.classes == CLASSES and clf.spec.image_size == 64 and clf.spec.classes == tuple(CLASSES)
    path = variants["upright.jpg"]
    records = clf.predict([str(path), Image.open(path), str(folder / "text.jpg")], topk=5)
    assert cli("predict", trained_run, path, "--json", "--topk", "5", "--device", "cpu") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == records[0]["path"] == str(path) and same_top(records[0]["top"], printed["top"])
    assert records[1]["path"] is None and records[1]["top"] == records[0]["top"]  # the same photo, same batch
    assert set(records[2]) == {"path", "error"}
    assert sum(t["prob"] for t in records[0]["top"]) == pytest.approx(1.0, abs=1e-6)  # all 5 classes, unrounded
    assert same_top(clf.predict(str(path), topk=1)[0]["top"], records[0]["top"][:1])
    with pytest.raises(SettingError, match="topk must be at least 1, got 0"):
        clf.predict(str(path), topk=0)


def as_cuda_checkpoint(src, dst):
    """Rewrite a CPU checkpoint so its tensors say they were saved on cuda:0 (as a GPU run's are)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            zout.writestr(info, data)
    return dst


def test_gpu_trained_checkpoint_loads_on_a_cpu(trained_run, mixed_folder, tmp_path, capsys):
    folder, variants = mixed_folder
    gpu = as_cuda_checkpoint(trained_run / "best.pt", tmp_path / "gpu.pt")
    with zipfile.ZipFile(gpu) as archive:
        pickled = next(archive.read(n) for n in archive.namelist() if n.endswith("/data.pkl"))
    assert b"cuda:0" in pickled
    assert cli("predict", gpu, variants["upright.jpg"], "--json", "--device", "cpu") == 0
    assert cli("predict", trained_run, variants["upright.jpg"], "--json", "--device", "cpu") == 0
    first, second = json_lines(capsys.readouterr().out)
    assert first["top"] == second["top"]


def test_user_errors_exit_2_in_one_line(trained_run, tmp_path, capsys):
    not_a_checkpoint = tmp_path / "model.pt"
    not_a_checkpoint.write_text("hello")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([tmp_path / "no_run", empty], "no such checkpoint"),
        ([not_a_checkpoint, empty], "cannot read checkpoint"),
        ([trained_run, empty], "no image files in"),
        ([trained_run, empty, "--topk", "0"], "--topk must be at least 1, got 0"),
        ([trained_run, empty, "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        ([trained_run, empty, "--plot", tmp_path / "p.gif"], "cannot save a picture as .gif"),
    ]
    for args, message in cases:
        code, err = cli("predict", *args), capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, (args, code, err)
    result = run_petalnet("predict", tmp_path / "no_run", empty)  # and as a user runs it
    assert result.returncode == 2 and result.stderr.count("\n") == 1, shown(result)
    assert "no such checkpoint" in result.stderr and "Traceback" not in result.stderr, shown(result)
