"""`petalnet predict` (inference/predict.py), its settings (inference/settings.py) and the `load_classifier`
API (classifier.py)."""

import copy
import csv
import hashlib
import io
import json
import os
import sys
import types
import zipfile

import pytest
from PIL import Image

from conftest import CLASSES, cli
from imagegen import save_variants
from petalnet import load_classifier
from petalnet.inference.predict import run_predict
from petalnet.inference.settings import EvaluateSettings, ExportSettings, PredictSettings
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
    spread = max(abs(top[c] - tops[0][c]) for top in tops for c in CLASSES)  # one photo in six formats
    assert spread < 0.02  # the formats' own rounding (JPEG, WebP) moves the probabilities a little
    assert max(abs(another[c] - tops[0][c]) for c in CLASSES) > max(20 * spread, 0.002)  # another is told apart


def test_plain_output_topk_and_missing_file(trained_run, mixed_folder, tmp_path, capsys):
    folder, variants = mixed_folder
    missing = tmp_path / "gone.jpg"
    assert cli("predict", trained_run, variants["upright.jpg"], missing, "--topk", "2") == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    path, *rest = lines[0].split()
    assert path == str(variants["upright.jpg"]) and len(rest) == 4 and rest[0] in CLASSES and float(rest[1]) > 0
    assert lines[1] == f"{missing}  error: no such file"


@pytest.mark.slow
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


def test_run_predict_takes_the_settings_the_command_line_makes(trained_run, mixed_folder, capsys):
    folder, variants = mixed_folder
    assert cli("predict", trained_run, variants["upright.jpg"], folder / "nested", "--json", "--topk", "2") == 0
    printed = capsys.readouterr().out
    settings = PredictSettings(model=trained_run, paths=[variants["upright.jpg"], folder / "nested"], topk=2, json=True)
    assert settings.model == str(trained_run) and settings.paths == (str(variants["upright.jpg"]),
                                                                      str(folder / "nested"))  # Paths become str
    assert run_predict(settings) == 0
    assert capsys.readouterr().out == printed
    with pytest.raises(SettingError, match="batch_size must be at least 1, got 0"):
        run_predict(PredictSettings(model=trained_run, paths=("x.jpg",), batch_size=0))
    with pytest.raises(TypeError):
        PredictSettings(paths=("x.jpg",))  # no model: the API must name it, as the command line must


def with_bounds(monkeypatch, cls, name, **bounds):
    """Declare other bounds for field `name` of `cls` for this test."""
    field = copy.copy(cls.__dataclass_fields__[name])
    field.metadata = types.MappingProxyType({**field.metadata, "bounds": bounds})
    monkeypatch.setitem(cls.__dataclass_fields__, name, field)


def test_topks_bound_is_declared_once_and_every_check_reads_it(trained_run, mixed_folder, monkeypatch, capsys):
    """The command line, run_predict and Classifier.predict check topk against PredictSettings' field: move
    the bound there and each of them moves with it (a check with its own number would not)."""
    folder, variants = mixed_folder
    photo = str(variants["upright.jpg"])
    clf = load_classifier(trained_run, device="cpu")
    with_bounds(monkeypatch, PredictSettings, "topk", at_least=2)
    assert cli("predict", trained_run, photo, "--topk", "1") == 2
    assert "--topk must be at least 2, got 1" in capsys.readouterr().err
    with pytest.raises(SettingError, match="topk must be at least 2, got 1"):
        clf.predict(photo, topk=1)
    with_bounds(monkeypatch, PredictSettings, "topk", at_least=0)
    assert clf.predict(photo, topk=0) == [{"path": photo, "top": []}]
    assert cli("predict", trained_run, photo, "--topk", "0", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"path": photo, "top": []}


def test_settings_refuse_bad_values_in_one_line_naming_the_flag(trained_run, tmp_path, capsys):
    cases = [(["predict", trained_run, tmp_path, "--workers", "-1"], "--workers must be 0 or more, got -1"),
             (["evaluate", trained_run, "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
             (["evaluate", trained_run, "--workers", "-2"], "--workers must be 0 or more, got -2"),
             (["export", trained_run, "--out", tmp_path / "m.onnx", "--quantize", "int4"],
              "unknown --quantize 'int4': choose from int8")]
    for args, says in cases:
        code, err = cli(*args), capsys.readouterr().err
        assert code == 2 and says in err and err.count("\n") == 1, (args, code, err)
    assert cli("export", trained_run) == 2 and "the following arguments are required: --out" in \
        capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written
    assert EvaluateSettings(model=trained_run).model == str(trained_run)
    assert ExportSettings(model="m", out=tmp_path / "m.onnx").out == str(tmp_path / "m.onnx")


@pytest.mark.slow
def test_predict_and_evaluate_leave_trainings_process_settings_alone(trained_run, mixed_folder, tmp_path, monkeypatch,
                                                                     capsys):
    """No allocator tuning (mallopt) and no memory probe: inference_settings, not device_settings."""
    import petalnet.devices.settings as settings_module

    def touched(*args):
        raise AssertionError("inference touched training's process-wide settings")

    for name in ("keep_large_allocations_in_heap", "available_memory"):
        monkeypatch.setattr(settings_module, name, touched)
    folder, variants = mixed_folder
    assert load_classifier(trained_run, device="cpu").predict(variants["upright.jpg"])[0]["top"]
    assert cli("evaluate", trained_run, "--out", tmp_path / "eval", "--device", "cpu", "--json") == 0
    assert json.loads(capsys.readouterr().out)["n"] == 10


def test_a_folder_link_back_up_is_not_followed_again(trained_run, made_photos, tmp_path, capsys):
    """Issue 31: daisy/deeper/up -> .. was followed ~40 levels deep, one photo classified 40 times."""
    inbox = tmp_path / "inbox"
    (inbox / "daisy" / "deeper").mkdir(parents=True)
    (inbox / ".cache").mkdir()
    photo = sorted((made_photos / "daisy").iterdir())[0].read_bytes()
    for path in (inbox / "daisy" / "a.jpg", inbox / "daisy" / "deeper" / "b.jpg", inbox / ".cache" / "c.jpg"):
        path.write_bytes(photo)
    (inbox / "daisy" / "deeper" / "up").symlink_to("..", target_is_directory=True)
    assert cli("predict", trained_run, inbox, "--json") == 0
    captured = capsys.readouterr()
    assert [r["path"] for r in json_lines(captured.out)] == [str(inbox / "daisy" / "a.jpg"),
                                                             str(inbox / "daisy" / "deeper" / "b.jpg")]
    assert f"skipped 1 folder link(s) to a folder already listed (no photo twice): {inbox}/daisy/deeper/up" \
        in captured.err


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


# --csv (inference/table.py) and --sort-into (inference/sorting.py)

HEADER_3 = ["path", "class", "probability", "class_2", "probability_2", "class_3", "probability_3", "error"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def read_csv(path):
    """The rows of a CSV file, decoded as strict UTF-8 (the file must be valid UTF-8)."""
    text = path.read_bytes().decode("utf-8")
    return list(csv.reader(io.StringIO(text, newline="")))


def test_csv_has_a_row_per_photo_with_the_probabilities_of_json(trained_run, mixed_folder, tmp_path, capsys):
    folder, variants = mixed_folder
    out = tmp_path / "preds.csv"
    assert cli("predict", trained_run, folder, "--json", "--csv", out, "--device", "cpu") == 1  # broken files
    records = json_lines(capsys.readouterr().out)
    header, *rows = read_csv(out)
    assert header == HEADER_3 and len(rows) == len(records) == len(variants) + len(BROKEN) + 1
    for row, record in zip(rows, records):
        assert row[0] == record["path"] and len(row) == len(HEADER_3)
        if "error" in record:
            assert row[1:7] == [""] * 6 and row[7] == record["error"] and row[7]
        else:
            assert row[1::2][:3] == [t["class"] for t in record["top"]] and row[7] == ""
            assert [float(p) for p in row[2:7:2]] == [t["prob"] for t in record["top"]]  # exactly, full precision
    assert sum(1 for row in rows if row[7]) == len(BROKEN)
    assert [p.name for p in tmp_path.iterdir()] == ["preds.csv"]  # no temp file left behind


def test_csv_columns_follow_topk_up_to_the_class_count(trained_run, mixed_folder, tmp_path):
    folder, variants = mixed_folder
    every = ["path", "class", "probability"] + [f"{kind}_{n}" for n in range(2, 6) for kind in ("class", "probability")]
    for topk, columns in ((1, ["path", "class", "probability"]), (9, every)):
        out = tmp_path / f"top{topk}.csv"
        assert cli("predict", trained_run, variants["upright.jpg"], "--csv", out, "--topk", topk) == 0
        header, row = read_csv(out)
        assert header == columns + ["error"] and len(row) == len(header) and row[-1] == ""
    assert sorted(row[1:-1:2]) == CLASSES and sum(map(float, row[2:-1:2])) == pytest.approx(1, abs=1e-5)


def odd_names():
    """File names a CSV writer gets wrong: separators, quotes, formulas, a newline and a byte that is not
    UTF-8 (the last two where the file system takes them)."""
    names = ["a,b.jpg", 'say "hi".jpg', "=1+2.jpg", "+x.jpg", "-y.jpg", "@z.jpg", "=HYPERLINK(evil).jpg"]
    if sys.platform.startswith("linux"):
        names += ["two\nlines.jpg", os.fsdecode(b"caf\xe9.jpg")]
    return names


def test_csv_round_trips_odd_names_and_quotes_formulas(trained_run, made_photos, tmp_path, monkeypatch, capsys):
    photo = sorted((made_photos / "roses").iterdir())[0].read_bytes()
    folder = tmp_path / "odd"
    folder.mkdir()
    names = odd_names()
    for name in names:
        (folder / name).write_bytes(photo if "HYPERLINK" not in name else b"=not a photo")
    monkeypatch.chdir(folder)  # "." gives relative paths: each path cell starts with the name itself
    out = tmp_path / "odd.csv"
    assert cli("predict", trained_run, ".", "--csv", out, "--json") == 1  # the HYPERLINK one is broken
    records = json_lines(capsys.readouterr().out)
    header, *rows = read_csv(out)
    assert sorted(r["path"] for r in records) == sorted(names) and len(rows) == len(names)
    for row, record in zip(rows, records):
        name = record["path"]
        shown = os.fsencode(name).decode("utf-8", "backslashreplace")  # caf\xe9.jpg
        assert row[0] == ("'" + shown if name.startswith(FORMULA_STARTS) else shown), (name, row)
        assert ("error" in record) == bool(row[-1]) == ("HYPERLINK" in name)
    cells = {row[0] for row in rows}
    assert {"a,b.jpg", 'say "hi".jpg', "'=1+2.jpg", "'+x.jpg", "'-y.jpg", "'@z.jpg", "'=HYPERLINK(evil).jpg"} <= cells
    if sys.platform.startswith("linux"):
        assert {"caf\\xe9.jpg", "two\nlines.jpg"} <= cells
    assert not any(cell.startswith(FORMULA_STARTS) for row in rows for cell in row)


def test_csv_quotes_formula_class_names(trained_run, made_photos, tmp_path):
    """A checkpoint's class names are text from elsewhere too: '=cmd' is shown, never run."""
    import torch

    good = torch.load(trained_run / "best.pt", weights_only=True)
    names = ["=SUM(A1:A9)", "+1", "-2", "@me", "tulips"]
    torch.save({**good, "meta": {**good["meta"], "classes": names}}, tmp_path / "odd.pt")
    out = tmp_path / "classes.csv"
    assert cli("predict", tmp_path / "odd.pt", made_photos, "--csv", out, "--topk", "5") == 0
    header, *rows = read_csv(out)
    assert len(rows) == 100
    for row in rows:
        assert sorted(row[1:-1:2]) == sorted(n if n == "tulips" else "'" + n for n in names)


def test_existing_csv_is_refused_without_overwrite_and_replaced_with_it(trained_run, mixed_folder, tmp_path, capsys):
    folder, variants = mixed_folder
    out = tmp_path / "old.csv"
    out.write_text("keep me\n")
    assert cli("predict", trained_run, variants["upright.jpg"], "--csv", out) == 2
    err = capsys.readouterr().err
    assert "already exists: pass --overwrite" in err and err.count("\n") == 1
    assert out.read_text() == "keep me\n" and sorted(p.name for p in tmp_path.iterdir()) == ["old.csv"]
    assert cli("predict", trained_run, tmp_path, variants["upright.jpg"], "--csv", tmp_path) == 2  # a folder
    assert "is a folder" in capsys.readouterr().err
    assert cli("predict", trained_run, variants["upright.jpg"], "--csv", out, "--overwrite") == 0
    header, row = read_csv(out)
    assert header == HEADER_3 and row[0] == str(variants["upright.jpg"])


def tree_state(folder):
    """{relative path: (sha256, mtime_ns)} of every file under folder."""
    return {p.relative_to(folder): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def sorted_files(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_sort_into_links_each_photo_under_its_class(trained_run, unseen_photos, tmp_path, capsys):
    before = tree_state(unseen_photos)
    out = tmp_path / "sorted"
    assert cli("predict", trained_run, unseen_photos, "--sort-into", out, "--json") == 0
    captured = capsys.readouterr()
    records = json_lines(captured.out)
    files = sorted_files(out)
    assert len(files) == len(records) == 20 and tree_state(unseen_photos) == before  # originals unchanged
    for record in records:
        best = record["top"][0]["class"]
        linked = [f for f in files if f.parent == out / best and os.path.samefile(f, record["path"])]
        assert len(linked) == 1 and linked[0].stat().st_ino == os.stat(record["path"]).st_ino
    counts = {c: sum(r["top"][0]["class"] == c for r in records) for c in CLASSES}
    names = [p.name for p in out.iterdir()]
    assert sorted(names) == sorted(c for c in CLASSES if counts[c]) and "_unsure" not in names
    summary = captured.err.strip().splitlines()[-1]
    assert summary.startswith("sorted 20 photo(s) into") and "unsure 0" in summary
    assert all(f"{c} {n}" in summary for c, n in counts.items() if n)
    assert cli("predict", trained_run, unseen_photos, "--sort-into", out) == 0  # again: nothing new
    assert sorted_files(out) == files and "20 already there" in capsys.readouterr().err


def test_min_prob_1_sends_everything_to_unsure_with_suffixes(trained_run, unseen_photos, tmp_path, capsys):
    out = tmp_path / "sorted"
    assert cli("predict", trained_run, unseen_photos, "--sort-into", out, "--min-prob", "1.0", "--json") == 0
    records = json_lines(capsys.readouterr().out)
    assert all(r["top"][0]["prob"] < 1.0 for r in records)
    assert [p.name for p in out.iterdir()] == ["_unsure"]
    names = sorted(p.name for p in (out / "_unsure").iterdir())
    assert len(names) == 20 and names[:5] == ["made_000-1.jpg", "made_000-2.jpg", "made_000-3.jpg",
                                              "made_000-4.jpg", "made_000.jpg"]


def test_a_taken_name_gets_a_suffix_and_nothing_is_overwritten(trained_run, made_photos, tmp_path, capsys):
    photo = sorted((made_photos / "tulips").iterdir())[0]
    inbox = tmp_path / "inbox"
    for sub in ("a", "b"):  # two different files of the same name and photo: the same class
        (inbox / sub).mkdir(parents=True)
        (inbox / sub / "x.jpg").write_bytes(photo.read_bytes())
    assert cli("predict", trained_run, photo, "--json") == 0
    best = json.loads(capsys.readouterr().out)["top"][0]["class"]
    out = tmp_path / "sorted"
    (out / best).mkdir(parents=True)
    (out / best / "x.jpg").write_text("the user's own file\n")
    assert cli("predict", trained_run, inbox, "--sort-into", out) == 0
    assert sorted(p.name for p in (out / best).iterdir()) == ["x-1.jpg", "x-2.jpg", "x.jpg"]
    assert (out / best / "x.jpg").read_text() == "the user's own file\n"
    assert os.path.samefile(out / best / "x-1.jpg", inbox / "a" / "x.jpg")
    assert os.path.samefile(out / best / "x-2.jpg", inbox / "b" / "x.jpg")


def test_sort_into_copies_where_links_fail_and_skips_unreadable(trained_run, mixed_folder, tmp_path, monkeypatch,
                                                                  capsys):
    folder, variants = mixed_folder
    before = tree_state(folder)

    def no_link(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    out = tmp_path / "copies"
    assert cli("predict", trained_run, folder, "--sort-into", out) == 1  # the broken files, as without it
    files = sorted_files(out)
    assert len(files) == len(variants) + 1 and tree_state(folder) == before
    assert not any(os.path.samefile(f, p) for f in files for p in variants.values())
    originals = {hashlib.sha256(p.read_bytes()).digest() for p in variants.values()}
    assert all(hashlib.sha256(f.read_bytes()).digest() in originals | {hashlib.sha256(
        (folder / "nested" / "daisy.jpg").read_bytes()).digest()} for f in files)
    err = capsys.readouterr().err
    assert f"{len(files)} copied where hard links failed" in err and f"{len(BROKEN)} unreadable skipped" in err


def test_bad_sort_into_or_min_prob_exit_2_and_write_nothing(trained_run, unseen_photos, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine\n")
    inside = unseen_photos / "daisy" / "sorted"
    cases = [(["--sort-into", inside], "is inside"),
             (["--sort-into", unseen_photos], "is inside"),
             (["--sort-into", a_file], "is a file"),
             (["--sort-into", tmp_path / "s1", "--min-prob", "1.5"], "--min-prob must be in [0, 1], got 1.5"),
             (["--sort-into", tmp_path / "s2", "--min-prob", "-0.1"], "--min-prob must be in [0, 1]"),
             (["--sort-into", tmp_path / "s3", "--min-prob", "nan"], "--min-prob must be in [0, 1]"),
             (["--min-prob", "0.5"], "--min-prob needs --sort-into")]
    before = tree_state(unseen_photos)
    for flags, says in cases:
        code, err = cli("predict", trained_run, unseen_photos, *flags), capsys.readouterr().err
        assert code == 2 and says in err and err.count("\n") == 1, (flags, code, err)
    assert not inside.exists() and tree_state(unseen_photos) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"] and a_file.read_text() == "mine\n"
