"""Every command against everything users (and attackers) hand it: no traceback, the documented exit code
(docs/commands.md#exit-codes).

Each case runs the command and checks that stderr holds no `Traceback`, that the exit code is the
documented one, that an error is one line, and that nothing was written where the case says so. One case
per command (CHILD) runs `python -m petalnet ...` in a child process, as a user would, so that what only a
fresh interpreter shows (a warning printed while the command's modules import, the exit status) is seen;
the others run in this process through `petalnet.cli.main`, with its stdout and stderr captured, while the
children run two at a time. Exit codes a child process cannot show cheaply (130 for every command, 4) are
checked in this process at the end.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from conftest import SMALL_SIZE, cli, shown
from imagegen import bomb_png, jpeg_bytes, make_class_folders, truncated_jpeg
from test_data_download import COUNTS, build_archive


class Evil:
    """Unpickling this runs open(marker, "w"): a checkpoint that would create a file if loaded unsafely."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def broken_files(folder):
    """Files that are not photos Pillow can decode, named like photos."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bomb.png").write_bytes(bomb_png())
    (folder / "truncated.jpg").write_bytes(truncated_jpeg())
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a photo\n")
    (folder / "pdf.png").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")  # unsupported format
    return sorted(folder.iterdir())


def unsafe_archives(root):
    """flower_photos-shaped archives, each with one member that must never be extracted."""
    outside = root / "outside.txt"
    members = {"absolute": (tarfile.TarInfo(str(outside)), None),
               "dotdot": (tarfile.TarInfo("flower_photos/../../outside.txt"), None),
               "symlink": (tarfile.TarInfo("flower_photos/daisy/link.jpg"), None),
               "device": (tarfile.TarInfo("flower_photos/daisy/dev.jpg"), None)}
    members["symlink"][0].type, members["symlink"][0].linkname = tarfile.SYMTYPE, "/etc/passwd"
    members["device"][0].type, members["device"][0].devmajor = tarfile.CHRTYPE, 1
    members["absolute"][0].size = members["dotdot"][0].size = 1
    counts = {name: min(n, 3) for name, n in COUNTS.items()}  # the count check comes after safety
    root.mkdir(parents=True, exist_ok=True)
    return {name: build_archive(root / f"{name}.tgz", counts, [(info, b"x" if info.size else None)])
            for name, (info, _) in members.items()}


@pytest.fixture(scope="module")
def world(made_photos, trained_run, tmp_path_factory):
    """Everything the cases point at, built once."""
    root = tmp_path_factory.mktemp("robust")
    w = {"root": root, "few": made_photos, "marker": root / "pwned.txt", "file": root / "a_file",
         "good": sorted(made_photos.rglob("*.jpg"))[0]}
    w["file"].write_text("a file where a folder is expected: nothing can be written under it\n")
    w["bad"] = broken_files(root / "bad")
    w["messy"] = make_class_folders(root / "messy", {"a": 6, "b": 6})
    broken_files(root / "messy" / "a")
    (root / "noclasses").mkdir()
    (root / "noclasses" / "loose.jpg").write_bytes(jpeg_bytes(1))
    make_class_folders(root / "emptyclass", {"a": 3})
    (root / "emptyclass" / "b").mkdir()
    make_class_folders(root / "layout" / "train", {"a": 3, "b": 3})
    make_class_folders(root / "layout" / "val", {"a": 2, "b": 2, "c": 2}, start_seed=50)
    make_class_folders(root / "otherclasses", {"cats": 2, "dogs": 2})
    w["archives"] = unsafe_archives(root / "archives")
    (root / "notgzip.tgz").write_text("<html>404</html>")
    w.update(checkpoints(root, trained_run))
    return w


def checkpoints(root, trained_run):
    """The session's small run (its best.pt and split.json), and checkpoints made from it that must be refused."""
    run = root / "run"
    run.mkdir()
    for name in ("best.pt", "split.json"):
        (run / name).symlink_to(trained_run / name)
    good = torch.load(run / "best.pt", weights_only=True)
    paths = {"run": run, "evil": root / "evil.pt", "truncated": root / "truncated.pt",
             "other_model": root / "other_model.pt", "other_classes": root / "other_classes.pt",
             "evil_run": root / "evil_run"}
    torch.save({**good, "meta": Evil(root / "pwned.txt")}, paths["evil"])
    paths["truncated"].write_bytes((run / "best.pt").read_bytes()[:5000])
    torch.save({**good, "meta": {**good["meta"], "model": "alexnet"}}, paths["other_model"])
    torch.save({**good, "meta": {**good["meta"], "classes": ["a", "b", "c"]}}, paths["other_classes"])
    paths["evil_run"].mkdir()
    torch.save({"format": "petalnet", "config": Evil(root / "pwned.txt")}, paths["evil_run"] / "last.pt")
    return paths


def petalnet(*args, timeout=300):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "petalnet", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


# (name, argv with {placeholders}, exit code, what stderr must say (code 2+) or stdout must hold (0/1))
UNWRITABLE = "cannot read or write a file: Not a directory"  # {file}/x: a folder's place taken by a file
CASES = [
    ("get: missing archive", ["data", "get", "--source", "{root}/nope.tgz", "--dest", "{root}/d1"], 2,
     "no such archive"),
    ("get: not a gzip tar", ["data", "get", "--source", "{root}/notgzip.tgz", "--dest", "{root}/d2"], 2,
     "not a complete gzip tar"),
    *[(f"get: unsafe {kind} member",
       ["data", "get", "--source", f"{{archives[{kind}]}}", "--dest", f"{{root}}/x/{kind}"], 2,
       "refusing unsafe archive") for kind in ("absolute", "dotdot", "symlink", "device")],
    ("get: unwritable destination", ["data", "get", "--source", "{root}/notgzip.tgz", "--dest", "{file}/d"], 3,
     UNWRITABLE),
    ("check: missing folder", ["data", "check", "{root}/missing"], 2, "no such folder"),
    ("check: no class folders", ["data", "check", "{root}/noclasses"], 2, "no class folders"),
    ("check: empty class folder", ["data", "check", "{root}/emptyclass"], 2, "class folder with no images"),
    ("check: broken photos listed", ["data", "check", "{root}/messy", "--json"], 1, "bomb.png"),
    ("check: all readable", ["data", "check", "{few}"], 0, "100 readable photos"),
    ("split: val fraction 0", ["data", "split", "{few}", "--out", "{root}/s1", "--val-fraction", "0"], 2,
     "--val-fraction must be between 0 and 1, got 0.0"),
    ("split: val fraction 1", ["data", "split", "{few}", "--out", "{root}/s2", "--val-fraction", "1"], 2,
     "--val-fraction"),
    ("split: unwritable out", ["data", "split", "{few}", "--out", "{file}/s3"], 3, "cannot read or write a file"),
    ("train: missing data", ["train", "--data", "{root}/missing", "--out", "{root}/t1"], 2, "no such folder"),
    ("train: no class folders", ["train", "--data", "{root}/noclasses", "--out", "{root}/t2"], 2, "no class folders"),
    ("train: empty class folder", ["train", "--data", "{root}/emptyclass", "--out", "{root}/t3"], 2,
     "class folder with no images"),
    ("train: val class absent from train", ["train", "--data", "{root}/layout", "--out", "{root}/t4"], 2,
     "val has classes that train lacks"),
    ("train: epochs 0", ["train", "--data", "{few}", "--out", "{root}/t5", "--epochs", "0"], 2, "--epochs"),
    ("train: batch size 0", ["train", "--data", "{few}", "--out", "{root}/t6", "--batch-size", "0"], 2, "--batch-size"),
    ("train: lr 0", ["train", "--data", "{few}", "--out", "{root}/t7", "--lr", "0"], 2, "--lr"),
    ("train: unknown model", ["train", "--data", "{few}", "--out", "{root}/t8", "--model", "vgg99"], 2,
     "unknown --model 'vgg99'"),
    ("train: unknown recipe", ["train", "--data", "{few}", "--out", "{root}/t9", "--recipe", "x"], 2, "unknown recipe"),
    ("train: unknown device", ["train", "--data", "{few}", "--out", "{root}/t10", "--device", "tpu"], 2,
     "unknown device"),
    ("train: val fraction 0", ["train", "--data", "{few}", "--out", "{root}/t11", "--val-fraction", "0"], 2,
     "--val-fraction"),
    ("train: val fraction 1", ["train", "--data", "{few}", "--out", "{root}/t12", "--val-fraction", "1"], 2,
     "--val-fraction"),
    ("train: not a number", ["train", "--data", "{few}", "--out", "{root}/t13", "--lr", "fast"], 2, "invalid float"),
    ("train: nothing to resume", ["train", "--out", "{root}/t14", "--resume"], 2, "nothing to resume"),
    ("train: unsafe last.pt", ["train", "--out", "{evil_run}", "--resume"], 2, "refusing to load"),
    ("train: unwritable out", ["train", "--data", "{few}", "--out", "{file}/t16", "--recipe", "seed", "--epochs", "1",
                               "--image-size", SMALL_SIZE, "--device", "cpu"], 3, "cannot prepare run folder"),
    ("predict: unsafe checkpoint", ["predict", "{evil}", "{bad[0]}"], 2, "refusing to load"),
    ("predict: truncated checkpoint", ["predict", "{truncated}", "{bad[0]}"], 2, "cannot read checkpoint"),
    ("predict: another model's checkpoint", ["predict", "{other_model}", "{bad[0]}"], 2, "weights do not fit"),
    ("predict: another class count", ["predict", "{other_classes}", "{bad[0]}"], 2, "weights do not fit"),
    ("predict: topk 0", ["predict", "{run}", "{bad[0]}", "--topk", "0"], 2, "--topk must be at least 1"),
    ("predict: broken files get error records", ["predict", "{run}", "{root}/bad", "--json"], 1, '"error"'),
    ("predict: a photo", ["predict", "{run}", "{good}"], 0, "{good}  "),
    ("predict: unwritable --plot", ["predict", "{run}", "{good}", "--plot", "{file}/p.png"], 3, UNWRITABLE),
    ("predict: unwritable --explain", ["predict", "{run}", "{good}", "--explain", "{file}/h"], 3, "cannot create"),
    ("predict: existing --csv", ["predict", "{run}", "{good}", "--csv", "{file}"], 2,
     "already exists: pass --overwrite"),
    ("predict: unwritable --csv", ["predict", "{run}", "{good}", "--csv", "{file}/p.csv"], 3,
     "cannot write {file}/p.csv: Not a directory"),
    ("predict: --sort-into a file", ["predict", "{run}", "{good}", "--sort-into", "{file}"], 2, "is a file"),
    ("predict: --sort-into inside the folder read", ["predict", "{run}", "{root}/bad", "--sort-into",
                                                     "{root}/bad/sorted"], 2, "is inside {root}/bad"),
    ("predict: --min-prob outside [0, 1]", ["predict", "{run}", "{good}", "--sort-into", "{root}/p1", "--min-prob",
                                            "2"], 2, "--min-prob must be in [0, 1], got 2.0"),
    ("predict: unwritable --sort-into", ["predict", "{run}", "{good}", "--sort-into", "{file}/s"], 3,
     "cannot create {file}/s"),
    ("evaluate: unsafe checkpoint", ["evaluate", "{evil}", "--data", "{few}"], 2, "refusing to load"),
    ("evaluate: class names differ", ["evaluate", "{run}", "--data", "{root}/otherclasses", "--out", "{root}/e1"], 2,
     "class names differ"),
    ("evaluate: unwritable --out", ["evaluate", "{run}", "--out", "{file}/e2"], 3, "cannot create"),
    ("export: unknown format", ["export", "{run}", "--format", "tflite", "--out", "{root}/x1"], 2,
     "unknown --format 'tflite'"),
    ("export: unsafe checkpoint", ["export", "{evil}", "--out", "{root}/x2.onnx"], 2, "refusing to load"),
    ("export: unwritable --out", ["export", "{run}", "--format", "torchscript", "--out", "{file}/x3.pt"], 3,
     "cannot write"),
    ("serve: no checkpoint", ["serve", "{root}/nothing"], 2, "no such checkpoint"),
    ("serve: port out of range", ["serve", "{run}", "--port", "70000"], 2, "--port must be in [1, 65535]"),
]
if not torch.cuda.is_available():
    CASES += [("train: cuda without a GPU", ["train", "--data", "{few}", "--out", "{root}/t15", "--device", "cuda"], 2,
               "no CUDA GPU is available"),
              ("predict: cuda without a GPU", ["predict", "{run}", "{bad[0]}", "--device", "cuda"], 2,
               "no CUDA GPU is available")]
WRITES_NOTHING = {"train: missing data": "t1", "train: no class folders": "t2", "train: empty class folder": "t3",
                  "train: val class absent from train": "t4", "train: epochs 0": "t5", "train: lr 0": "t7",
                  "split: val fraction 0": "s1", "evaluate: class names differ": "e1",
                  "train: cuda without a GPU": "t15", "export: unknown format": "x1",
                  "export: unsafe checkpoint": "x2.onnx", "predict: --sort-into inside the folder read": "bad/sorted",
                  "predict: --min-prob outside [0, 1]": "p1"}


# The cases that run in a child process, at least one per command (the others run in this process).
CHILD = {"get: not a gzip tar", "check: broken photos listed", "split: unwritable out", "train: missing data",
         "train: no class folders", "predict: broken files get error records", "evaluate: class names differ",
         "export: unknown format", "serve: no checkpoint"}


def in_this_process(*argv):
    """`petalnet ARGV` through cli.main in this process, as a CompletedProcess (an exception escaping main
    fails the test: it is the traceback a user would see)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(*argv)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def results(world):
    """Run every case: {name: CompletedProcess}. The CHILD cases run two at a time in child processes while
    the others run here, one after another."""
    def argv(case):
        return [arg.format(**world) for arg in case[1]]

    assert {case[0].split(":")[0] for case in CASES if case[0] in CHILD} == {case[0].split(":")[0] for case in CASES}
    with ThreadPoolExecutor(max_workers=2) as pool:
        children = {case[0]: pool.submit(petalnet, *argv(case)) for case in CASES if case[0] in CHILD}
        done = {case[0]: in_this_process(*argv(case)) for case in CASES if case[0] not in CHILD}
        return {**done, **{name: child.result() for name, child in children.items()}}


@pytest.mark.parametrize("name,argv,code,says", CASES, ids=[case[0] for case in CASES])
def test_no_traceback_and_the_documented_exit_code(results, world, name, argv, code, says):
    done = results[name]
    assert "Traceback" not in done.stderr, shown(done)
    assert done.returncode == code, shown(done)
    says = says.format(**world)
    if code >= 2:
        assert says in done.stderr and done.stderr.count("\n") == 1, shown(done)
    else:
        assert says in done.stdout, shown(done)
    if name in WRITES_NOTHING:
        assert not (world["root"] / WRITES_NOTHING[name]).exists()
    assert world["file"].read_text().startswith("a file where a folder is expected")


def test_nothing_unsafe_ever_ran_or_escaped(results, world):
    assert not world["marker"].exists()  # no checkpoint's pickle code ran
    assert not (world["root"] / "archives" / "outside.txt").exists() and not Path("/outside.txt").exists()
    for kind in ("absolute", "dotdot", "symlink", "device"):
        assert not (world["root"] / "x" / kind / "flower_photos").exists()


def test_every_broken_file_is_named_by_check_and_predict(results, world):
    report = json.loads(results["check: broken photos listed"].stdout)
    assert {row["path"] for row in report["unreadable"]} == {f"a/{p.name}" for p in world["bad"]}
    records = [json.loads(line) for line in results["predict: broken files get error records"].stdout.splitlines()]
    assert len(records) == len(world["bad"]) and all("error" in record for record in records)
    bomb = next(record for record in records if record["path"].endswith("bomb.png"))
    assert "decompression bomb" in bomb["error"]


def test_train_leaves_broken_photos_out_counts_and_records_them(world):
    run = world["root"] / "messy-run"
    done = in_this_process("train", "--data", world["root"] / "messy", "--out", run, "--epochs", "1",
                           "--image-size", SMALL_SIZE)
    assert done.returncode == 0 and "Traceback" not in done.stderr, shown(done)
    assert f"left out {len(world['bad'])} unreadable file(s)" in done.stdout, shown(done)
    left_out = json.loads((run / "config.json").read_text())["left_out"]
    assert sorted(row["path"] for row in left_out) == sorted(f"a/{p.name}" for p in world["bad"])


# Each command's function as cli.py calls it: (module, function, argv).
COMMANDS = [
    ("petalnet.data.download", "get_dataset", ["data", "get"]),
    ("petalnet.data.check", "check_dataset", ["data", "check", "."]),
    ("petalnet.data.split", "make_split", ["data", "split", ".", "--out", "x"]),
    ("petalnet.training.train", "train", ["train", "--data", ".", "--out", "x"]),
    ("petalnet.inference.predict", "run_predict", ["predict", "m", "p.jpg"]),
    ("petalnet.inference.evaluate", "run_evaluate", ["evaluate", "m"]),
    ("petalnet.inference.export", "run_export", ["export", "m", "--out", "m.onnx"]),
    ("petalnet.serving.server", "run_server", ["serve", "m"]),
]


@pytest.mark.parametrize("module, function, argv", COMMANDS, ids=[c[1] for c in COMMANDS])
def test_ctrl_c_exits_130_from_every_command(module, function, argv, monkeypatch, capsys):
    """What Ctrl-C raises anywhere in a command ends as exit 130 and one word, never a traceback (train's
    real SIGINT, with last.pt kept: tests/test_training_crashes.py)."""
    import importlib

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), function, interrupted)
    assert cli(*argv) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    if argv[0] == "train":
        assert "continue with 'petalnet train --out x --resume'" in err


def test_a_dead_torchrun_peer_exits_4_and_only_the_lowest_survivor_speaks(monkeypatch, capsys):
    """The real thing (a rank killed with SIGABRT under torchrun): tests/test_training_distributed.py."""
    import petalnet.training.train
    from petalnet.training.ranklogs import PeerStopped

    stop = PeerStopped("rank 1 of 2 (pid 7) died of SIGABRT (Aborted); its log: x/logs/rank-1.log")

    def peer_died(*args, **kwargs):
        raise stop

    monkeypatch.setattr(petalnet.training.train, "train", peer_died)
    assert cli("train", "--data", ".", "--out", "x") == 4
    assert capsys.readouterr().err == f"petalnet: error: {stop}\n"
    stop.quiet = True  # a higher rank leaves the word to the lowest survivor
    assert cli("train", "--data", ".", "--out", "x") == 4
    assert capsys.readouterr().err == ""
