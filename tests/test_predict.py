"""`petalnet predict` and the `load_classifier` API on a run trained in this session."""

import json
import zipfile

import pytest
from PIL import Image

from conftest import CLASSES, cli, run_petalnet, shown
from imagegen import save_variants
from petalnet import load_classifier

BROKEN = {"text.jpg": b"this is not a jpeg\n", "empty.jpg": b""}


@pytest.fixture(scope="module")
def mixed_folder(few_photos, tmp_path_factory):
    """One real photo saved in every mode, plus broken files, plus a nested real photo."""
    folder = tmp_path_factory.mktemp("mixed") / "inbox"
    photo = sorted((few_photos / "roses").iterdir())[0]
    variants = save_variants(Image.open(photo), folder)
    for name, data in BROKEN.items():
        (folder / name).write_bytes(data)
    (folder / "nested").mkdir()
    (folder / "nested" / "daisy.jpg").write_bytes(sorted((few_photos / "daisy").iterdir())[0].read_bytes())
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
    assert cli("predict", trained_run, *[variants[n] for n in names], "--json", "--topk", "5") == 0
    tops = [{t["class"]: t["prob"] for t in r["top"]} for r in json_lines(capsys.readouterr().out)]
    for top in tops[1:]:
        assert all(abs(top[c] - tops[0][c]) < 0.02 for c in CLASSES)


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


def test_python_api_returns_the_same_records(trained_run, mixed_folder, capsys):
    folder, variants = mixed_folder
    clf = load_classifier(trained_run, device="cpu")
    assert clf.classes == CLASSES
    path = variants["upright.jpg"]
    records = clf.predict([str(path), Image.open(path), str(folder / "text.jpg")])
    assert cli("predict", trained_run, path, "--json") == 0
    assert records[0] == json.loads(capsys.readouterr().out)
    assert records[1] == {"path": None, "top": records[0]["top"]}
    assert set(records[2]) == {"path", "error"}
    assert clf.predict(str(path), topk=1)[0]["top"] == records[0]["top"][:1]


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
    assert first == second


def test_user_errors_exit_2_in_one_line(trained_run, tmp_path):
    not_a_checkpoint = tmp_path / "model.pt"
    not_a_checkpoint.write_text("hello")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([tmp_path / "no_run", empty], "no such checkpoint"),
        ([not_a_checkpoint, empty], "cannot read checkpoint"),
        ([trained_run, empty], "no image files in"),
        ([trained_run, empty, "--topk", "0"], "must be at least 1"),
        ([trained_run, empty, "--plot", tmp_path / "p.gif"], "cannot save a picture as .gif"),
    ]
    for args, message in cases:
        result = run_petalnet("predict", *args)
        assert result.returncode == 2 and message in result.stderr, shown(result)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, shown(result)
