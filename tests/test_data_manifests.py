"""--data as a manifest (CSV, TSV, JSONL, imagefolder's metadata) or an archive: train, evaluate, data check
and data split read every form, report rows they cannot use, and refuse a manifest that is not one."""

import csv
import json
import os
import shutil
import stat
import tarfile
import zipfile

import pytest

from conftest import CLASSES, SMALL, cli
from imagegen import jpeg_bytes, make_class_folders, truncated_jpeg
from petalnet.data.sources import open_data
from petalnet.data.split import make_split


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Archives unpack under $PETALNET_HOME/unpacked: the test's own."""
    monkeypatch.setenv("PETALNET_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def write_csv(path, header, rows, delimiter=","):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        csv.writer(f, delimiter=delimiter).writerows([header, *rows])
    return path


def flat_manifest(made_photos, folder, split=False):
    """folder/photos/<n>.jpg (the made photos, renamed so no folder tells the class) and folder/labels.csv:
    path,label[,split] with every class's first two photos in val and the next one in test."""
    rows = []
    for name in CLASSES:
        for k, photo in enumerate(sorted((made_photos / name).glob("*.jpg"))):
            target = folder / "photos" / f"{name}{k:02d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, target)
            part = "val" if k < 2 else "test" if k == 2 else "train"
            rows.append([f"photos/{target.name}", name] + ([part] if split else []))
    return write_csv(folder / "labels.csv", ["path", "label"] + (["split"] if split else []), rows)


def report_of(capsys, *args):
    code = cli("data", "check", *args, "--json", "--near-threshold", "off")
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def manifest_run(made_photos, tmp_path_factory):
    """A run trained from a manifest with a split column (val rows as its val, test rows left out)."""
    folder = tmp_path_factory.mktemp("manifest")
    manifest = flat_manifest(made_photos, folder, split=True)
    assert cli("train", "--data", manifest, "--out", folder / "run", *SMALL, "--epochs", "1") == 0
    return manifest, folder / "run"


def test_a_run_from_a_manifest_keeps_its_split_column(manifest_run):
    manifest, run = manifest_run
    split = json.loads((run / "split.json").read_text())
    assert split["manifest"] == str(manifest) and split["source"] == str(manifest.parent.resolve())
    assert len(split["train"]) == 17 * 5 and len(split["val"]) == 2 * 5 and len(split["test"]) == 5
    assert {path for path, _ in split["val"]} == {f"photos/{name}{k:02d}.jpg" for name in CLASSES for k in (0, 1)}
    config = json.loads((run / "config.json").read_text())
    assert config["layout"] == "manifest" and config["classes"] == CLASSES and config["num_val"] == 10


def test_evaluate_scores_a_manifests_test_rows(manifest_run, tmp_path, capsys):
    manifest, run = manifest_run
    assert cli("evaluate", run, "--data", manifest, "--json", "--out", tmp_path / "eval", "--device", "cpu") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 5 and report["classes"] == CLASSES
    rows = list(csv.DictReader(open(tmp_path / "eval" / "predictions.csv")))
    assert sorted(row["path"].rsplit("/", 1)[-1] for row in rows) == sorted(f"{n}02.jpg" for n in CLASSES)


def test_check_reports_missing_repeated_and_twice_labelled_rows_and_copies_given_other_labels(tmp_path, capsys):
    make_class_folders(tmp_path / "p", {"a": 3, "b": 3})
    (tmp_path / "p" / "a" / "bad.jpg").write_bytes(truncated_jpeg())
    (tmp_path / "p" / "copy.jpg").write_bytes((tmp_path / "p" / "a" / "img_000.jpg").read_bytes())
    rows = [[f"p/{c}/img_{k:03d}.jpg", c] for c in "ab" for k in range(3)]
    rows += [["p/a/img_000.jpg", "a"], ["p/b/img_001.jpg", "a"], ["p/gone.jpg", "b"], ["p/a/bad.jpg", "a"],
             ["p/copy.jpg", "b"]]
    manifest = write_csv(tmp_path / "m.tsv", ["path", "label"], rows, delimiter="\t")
    code, report = report_of(capsys, manifest)
    assert code == 1 and report["layout"] == "manifest" and report["manifest"] == str(manifest)
    assert report["counts"] == {"a": 3, "b": 3} and report["total"] == 6
    assert {row["path"]: row["error"] for row in report["dropped"]} == {
        "p/a/img_000.jpg": "line 8 repeats line 2",
        "p/b/img_001.jpg": "given different labels or splits: line 6: b; line 9: a",
        "p/gone.jpg": "missing (line 10)"}
    assert [row["path"] for row in report["unreadable"]] == ["p/a/bad.jpg"]
    (group,) = report["duplicates"]
    assert group["paths"] == ["p/a/img_000.jpg", "p/copy.jpg"] and group["across_folders"]
    assert cli("data", "check", manifest, "--near-threshold", "off") == 1
    text = capsys.readouterr().out
    assert "manifest rows not used: 3" in text and "exact duplicates: 1 groups (1 given different labels)" in text


def test_train_leaves_out_unusable_rows_and_says_so(tmp_path, capsys):
    make_class_folders(tmp_path / "p", {"a": 6, "b": 6})
    rows = [[f"p/{c}/img_{k:03d}.jpg", c] for c in "ab" for k in range(6)] + [["p/gone.jpg", "a"]]
    manifest = write_csv(tmp_path / "m.csv", ["path", "label"], rows)
    lines = []
    from petalnet import train

    train(data=manifest, out=tmp_path / "run", recipe="seed", overrides={"model": "resnet9", "image_size": 32,
          "epochs": 1}, device="cpu", progress=False, log=lines.append)
    assert "left out 1 photo(s), row(s) or link(s): unreadable, excluded, unusable or loops:" in lines
    assert "  p/gone.jpg: missing (line 14)" in lines
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["num_train"] + record["num_val"] == 12 and record["left_out"][0]["path"] == "p/gone.jpg"


def test_jsonl_lists_are_several_labels_and_even_four_photos_train(tmp_path, capsys):
    make_class_folders(tmp_path, {"x": 4})
    lines = [{"path": f"x/img_{k:03d}.jpg", "labels": labels}
             for k, labels in enumerate([["roses", "tulips"], ["roses"], [], ["tulips", "daisy", "roses"]])]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, report = report_of(capsys, manifest)
    assert code == 0 and report["multilabel"] and report["classes"] == ["daisy", "roses", "tulips"]
    assert report["counts"] == {"daisy": 1, "roses": 3, "tulips": 2}
    assert report["labels_per_photo"] == {"0": 1, "1": 1, "2": 1, "3": 1}
    assert cli("train", "--data", manifest, "--out", tmp_path / "run", *SMALL, "--epochs", "1") == 0
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert len(split["val"]) == 1 and sorted(map(tuple, (labels for _, labels in split["train"] + split["val"]))) == \
        [(), (0, 1, 2), (1,), (1, 2)]


def test_imagefolder_metadata_labels_from_folders_or_a_named_column_and_split_folders(tmp_path, capsys):
    make_class_folders(tmp_path / "hf" / "train", {"cat": 3, "dog": 3})
    make_class_folders(tmp_path / "hf" / "validation", {"cat": 1, "dog": 1}, start_seed=50)
    for part in ("train", "validation"):
        folder = tmp_path / "hf" / part
        names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
        rows = [[name, "pet" if name.startswith("cat") else "other"] for name in names]
        write_csv(tmp_path / "hf" / part / "metadata.csv", ["file_name", "kind"], rows)
    source = open_data(tmp_path / "hf")
    assert source.kind == "manifest" and source.root == tmp_path / "hf"
    split = make_split(source, progress=False)
    assert split.classes == ("cat", "dog") and len(split.train) == 6 and len(split.val) == 2
    assert all(path.startswith("validation/") for path, _ in split.val)
    assert make_split(open_data(tmp_path / "hf", label_column="kind"), progress=False).classes == ("other", "pet")
    code, report = report_of(capsys, tmp_path / "hf" / "train", "--label-column", "kind")
    assert code == 0 and report["counts"] == {"other": 3, "pet": 3}


def zip_of(folder, path):
    with zipfile.ZipFile(path, "w") as bundle:
        for file in sorted(folder.rglob("*")):
            bundle.write(file, f"{folder.name}/{file.relative_to(folder)}")
    return path


def test_archives_of_class_folders_or_a_manifest_are_unpacked_once(made_photos, manifest_run, tmp_path, home, capsys):
    bundle = zip_of(made_photos, tmp_path / "photos.zip")
    code, report = report_of(capsys, bundle)
    assert code == 0 and report["layout"] == "class folders" and report["total"] == len(CLASSES) * 20
    (unpacked,) = (home / "unpacked").iterdir()
    assert report["root"] == str(unpacked / "photos")
    before = (unpacked / "photos" / CLASSES[0]).stat().st_mtime_ns
    assert report_of(capsys, bundle)[0] == 0 and (unpacked / "photos" / CLASSES[0]).stat().st_mtime_ns == before
    manifest, run = manifest_run
    with tarfile.open(tmp_path / "labelled.tar.gz", "w:gz") as tar:
        tar.add(manifest.parent / "photos", "photos")
        tar.add(manifest, "labels.csv")
    assert cli("evaluate", run, "--data", tmp_path / "labelled.tar.gz", "--json", "--out", tmp_path / "e") == 0
    assert json.loads(capsys.readouterr().out)["n"] == 5


@pytest.mark.parametrize("member", ["../evil.jpg", "/abs/evil.jpg", "link"])
def test_an_unsafe_archive_is_refused_before_anything_is_written(tmp_path, home, capsys, member):
    bundle = tmp_path / "bad.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("a/ok.jpg", jpeg_bytes(1))
        info = zipfile.ZipInfo("a/link.jpg" if member == "link" else member)
        if member == "link":
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd" if member == "link" else jpeg_bytes(2))
    assert cli("data", "check", bundle) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"petalnet: error: refusing unsafe archive {bundle}") and err.count("\n") == 1
    assert not (home / "unpacked").exists() or not any((home / "unpacked").iterdir())
    assert not (tmp_path / "evil.jpg").exists()


def test_paths_outside_the_manifests_folder_need_the_flag(tmp_path, capsys):
    make_class_folders(tmp_path / "elsewhere", {"a": 2, "b": 2})
    rows = [[f"../elsewhere/a/img_00{k}.jpg", "a"] for k in range(2)]
    rows += [[str(tmp_path / "elsewhere" / "b" / f"img_00{k}.jpg"), "b"] for k in range(2)]
    manifest = write_csv(tmp_path / "m" / "labels.csv", ["path", "label"], rows)
    assert cli("data", "split", manifest, "--out", tmp_path / "out") == 2
    assert capsys.readouterr().err == (f"petalnet: error: {manifest} line 2: ../elsewhere/a/img_000.jpg is outside the "
                                       "manifest's folder; pass --allow-paths-outside to use photos outside it\n")
    assert not (tmp_path / "out").exists()
    code, report = report_of(capsys, manifest, "--allow-paths-outside")
    assert code == 0 and report["total"] == 4


def test_data_split_of_a_manifest_writes_one_train_takes(made_photos, tmp_path, capsys):
    manifest = flat_manifest(made_photos, tmp_path / "m")
    assert cli("data", "split", manifest, "--out", tmp_path / "split", "--val-fraction", "0.2") == 0
    assert "wrote" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "split" / "labels.csv")))
    assert len(rows) == 100 and {row["split"] for row in rows} == {"train", "val"}
    assert sum(row["split"] == "val" for row in rows) == 20
    assert all((tmp_path / "split" / row["path"]).is_file() for row in rows)
    again = make_split(open_data(tmp_path / "split" / "labels.csv"), progress=False)
    assert len(again.val) == 20 and again.val_fraction is None


@pytest.mark.parametrize("text,said", [
    ("file,label\nx.jpg,a\n", "has no path column (columns: file, label)"),
    ("path,label,labels\nx.jpg,a,a\n", "has both a label and a labels column"),
    ("path,kind\nx.jpg,a\n", "has no label column (columns: path, kind)"),
    ("path,label,split\nx.jpg,a,dev\n", "line 2: split 'dev' is not one of train, val, test"),
    ("path,label\n,a\n", "line 2 has no path"),
    ("path,label\n", "has no rows"),
])
def test_a_bad_manifest_is_one_line_and_exit_2_before_anything_is_written(tmp_path, capsys, text, said):
    manifest = tmp_path / "bad.csv"
    manifest.write_text(text)
    assert cli("train", "--data", manifest, "--out", tmp_path / "run", *SMALL) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_a_jsonl_line_that_is_not_json_and_a_column_not_there(tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "a.jpg", "label": "x"}\n{"path": \n')
    assert cli("data", "check", manifest) == 2
    assert f"{manifest} line 2 is not JSON" in capsys.readouterr().err
    manifest.write_text('{"path": "a.jpg", "label": "x"}\n')
    assert cli("data", "check", manifest, "--label-column", "kind") == 2
    assert "has no column 'kind'" in capsys.readouterr().err
    assert cli("data", "check", tmp_path, "--label-column", "kind") == 2
    assert "--label-column is for manifests" in capsys.readouterr().err


def test_a_link_into_another_class_folder_is_not_followed_and_is_reported(tmp_path, capsys):
    make_class_folders(tmp_path / "p", {"a": 2, "b": 2})
    os.symlink(tmp_path / "p" / "b", tmp_path / "p" / "a" / "more", target_is_directory=True)
    os.symlink("..", tmp_path / "p" / "b" / "up", target_is_directory=True)
    code, report = report_of(capsys, tmp_path / "p")
    assert code == 0 and report["counts"] == {"a": 2, "b": 2} and report["duplicates"] == []
    assert sorted(report["links_skipped"]) == ["a/more", "b/up"]
    assert cli("data", "check", tmp_path / "p", "--near-threshold", "off") == 0
    assert "folder links not followed" in capsys.readouterr().out
    split = make_split(tmp_path / "p", progress=False)  # train logs a split's left-out entries, and records them
    assert len(split.train) + len(split.val) == 4
    assert sorted(row["path"] for row in split.left_out if row["error"].startswith("folder link not followed")) == \
        ["a/more", "b/up"]


def test_csv_with_a_bom_and_excel_quoting_reads(tmp_path, capsys):
    make_class_folders(tmp_path / "p", {"a b": 2})
    text = '\ufeffpath,label\n"p/a b/img_000.jpg","a, b"\n"p/a b/img_001.jpg","a, b"\n'
    (tmp_path / "m.csv").write_bytes(text.encode("utf-8"))
    code, report = report_of(capsys, tmp_path / "m.csv")
    assert code == 0 and report["counts"] == {"a, b": 2}


def test_the_python_api_evaluates_a_manifest_as_the_command_does(manifest_run, tmp_path, capsys):
    from petalnet.inference.evaluate import run_evaluate
    from petalnet.inference.settings import EvaluateSettings

    manifest, run = manifest_run
    assert run_evaluate(EvaluateSettings(model=run, data=manifest, out=tmp_path / "api", json=True)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 5 and json.loads((tmp_path / "api" / "report.json").read_text())["n"] == 5



@pytest.mark.parametrize("form", ["class folders", "train/val", "manifest"])
def test_train_exclude_leaves_the_listed_photos_out_and_records_them(made_photos, tmp_path, form):
    if form == "class folders":
        data, root = made_photos, made_photos
    elif form == "train/val":
        root = tmp_path / "layout"
        for part, seeds in (("train", 0), ("val", 50)):
            make_class_folders(root / part, {"a": 4, "b": 4}, start_seed=seeds)
        data = root
    else:
        data = flat_manifest(made_photos, tmp_path / "m")
        root = data.parent
    photos = sorted(p for p in root.rglob("*.jpg"))
    listed = [photos[0].relative_to(root).as_posix(), str(photos[-1]), "no/such.jpg"]
    (tmp_path / "exclude.txt").write_text("# wrong labels\n" + "\n".join(listed) + "\n\n")
    lines = []
    from petalnet import train

    train(data=data, out=tmp_path / "run", recipe="seed", overrides={"model": "resnet9", "image_size": 32,
          "epochs": 1}, device="cpu", progress=False, log=lines.append, exclude=tmp_path / "exclude.txt")
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["num_train"] + record["num_val"] == len(photos) - 2
    said = {row["path"] for row in record["left_out"] if row["error"] == f"excluded ({tmp_path / 'exclude.txt'})"}
    assert said == {os.path.relpath(photos[0], root), os.path.relpath(photos[-1], root)}
    assert any(line.startswith("left out 2 photo(s), row(s) or link(s)") for line in lines)
    if form != "train/val":
        split = json.loads((tmp_path / "run" / "split.json").read_text())
        kept = {path for path, _ in split["train"] + split["val"]}
        assert not kept & said
