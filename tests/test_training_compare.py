"""`petalnet compare RUN...`: the table, --json and --plot for this session's small run and edited copies of
it, runs as older versions wrote them, and bad input (one line, exit 2, nothing written)."""

import json
import statistics

import pytest

from conftest import cli, linked_copy, metrics, run_petalnet, shown
from petalnet.config.run import METRIC_COLUMNS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OLD_COLUMNS = ["epoch", "train_loss", "val_loss", "val_acc", "lr", "epoch_seconds", "train_images_per_s"]  # 0.1
FAST_ROWS = [  # epoch, val_acc, epoch_seconds, train_images_per_s, elapsed_s
    (1, "0.25", "9.5", "50", "12.25"), (2, "0.75", "8", "70", "20.5"), (3, "0.5", "8.5", "60", "30.5")]


@pytest.fixture
def fast_run(trained_run, tmp_path):
    """A copy of the small run as if trained with recipe fast for 3 epochs, best at epoch 2."""
    run = tmp_path / "fast"
    linked_copy(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "recipe": "fast"}))
    lines = [",".join(METRIC_COLUMNS)] + [f"{e},1.0,1.1,{acc},0.001,64,64,{secs},{speed},{elapsed}"
                        for e, acc, secs, speed, elapsed in FAST_ROWS]
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run


def old_run(trained_run, folder, config_keys=("recipe", "model", "epochs")):
    """A copy of the small run with metrics.csv and config.json as petalnet 0.1 wrote them (no elapsed_s)."""
    linked_copy(trained_run, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({k: config[k] for k in config_keys}))
    rows = metrics(folder, drop_timings=False)
    lines = [",".join(OLD_COLUMNS)] + [",".join(row[k] for k in OLD_COLUMNS) for row in rows]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    return folder


def model_of(run):
    return json.loads((run / "config.json").read_text())["model"]


def table(capsys, *args):
    """The compare table as {run: [cells]}, checking the exit code."""
    code = cli("compare", *args)
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = out.out.splitlines()
    assert lines[0].split()[:3] == ["run", "recipe", "model"]
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


def test_the_table_has_one_row_per_run(trained_run, fast_run, capsys):
    rows = metrics(trained_run, drop_timings=False)
    best = max(rows, key=lambda row: float(row["val_acc"]))
    speed = statistics.median(float(row["train_images_per_s"]) for row in rows)
    shown_rows, model = table(capsys, trained_run, fast_run), model_of(trained_run)
    assert list(shown_rows) == [trained_run.name, "fast"]
    assert shown_rows[trained_run.name] == ["seed", model, "2", f"{float(best['val_acc']):.4f}", best["epoch"],
                                            f"{float(rows[-1]['elapsed_s']):.1f}", "s", f"{speed:.1f}"]
    assert shown_rows["fast"] == ["fast", model, "3", "0.7500", "2", "30.5", "s", "60.0"]


def test_json_holds_metrics_csv_values_in_full(trained_run, fast_run, capsys):
    assert cli("compare", trained_run, fast_run, "--json") == 0
    small, fast = json.loads(capsys.readouterr().out)
    model = model_of(trained_run)
    rows = metrics(trained_run, drop_timings=False)
    best = max(rows, key=lambda row: float(row["val_acc"]))
    assert small == {"run": trained_run.name, "recipe": "seed", "model": model, "epochs": 2,
                     "best_val_acc": float(best["val_acc"]), "best_epoch": int(best["epoch"]),
                     "wall_s": float(rows[-1]["elapsed_s"]),
                     "train_images_per_s": statistics.median(float(row["train_images_per_s"]) for row in rows)}
    assert fast == {"run": "fast", "recipe": "fast", "model": model, "epochs": 3, "best_val_acc": 0.75,
                    "best_epoch": 2, "wall_s": 30.5, "train_images_per_s": 60.0}


def test_plot_is_a_png_and_is_never_replaced_silently(trained_run, fast_run, tmp_path, capsys):
    picture = tmp_path / "runs.png"
    assert cli("compare", trained_run, fast_run, "--plot", picture) == 0
    data = picture.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    capsys.readouterr()
    assert cli("compare", trained_run, "--plot", picture) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--overwrite" in err
    assert picture.read_bytes() == data
    assert cli("compare", trained_run, "--plot", picture, "--overwrite") == 0
    assert picture.read_bytes() != data and picture.read_bytes().startswith(PNG_SIGNATURE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast", "runs.png"]  # no temp file left behind


def test_an_old_run_still_compares(trained_run, tmp_path, capsys):
    old = old_run(trained_run, tmp_path / "old")
    bare = old_run(trained_run, tmp_path / "bare", config_keys=())
    rows = metrics(old, drop_timings=False)
    assert cli("compare", old, bare, "--json", "--plot", tmp_path / "old.png") == 0
    got, nothing = json.loads(capsys.readouterr().out)
    assert got["wall_s"] == sum(float(row["epoch_seconds"]) for row in rows)  # no elapsed_s before 0.2
    assert got["recipe"] == "seed" and got["epochs"] == 2 and got["best_val_acc"] is not None
    assert nothing["recipe"] is None and nothing["model"] is None
    assert (tmp_path / "old.png").read_bytes().startswith(PNG_SIGNATURE)
    shown_rows = table(capsys, bare)
    assert shown_rows["bare"][:2] == ["-", "-"]


@pytest.mark.parametrize("problem", ["not a run", "missing", "a file", "bad metrics"])
def test_bad_input_is_one_line_and_writes_nothing(problem, trained_run, tmp_path, capsys):
    bad = tmp_path / "bad"
    if problem == "not a run":
        bad.mkdir()
        (bad / "config.json").write_text("{}")
    elif problem == "a file":
        bad.write_text("hello")
    elif problem == "bad metrics":
        linked_copy(trained_run, bad)
        (bad / "metrics.csv").write_text("step,loss\n1,0.5\n")
    picture = tmp_path / "out.png"
    assert cli("compare", trained_run, bad, "--plot", picture) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and str(bad) in out.err, out
    assert {"not a run": "no metrics.csv", "missing": "does not exist", "a file": "not a run folder",
            "bad metrics": "val_acc"}[problem] in out.err
    assert not picture.exists()


@pytest.mark.slow
def test_no_run_and_a_missing_path_through_the_terminal(tmp_path):
    done = run_petalnet("compare", tmp_path / "nowhere", "--plot", tmp_path / "out.png")
    assert done.returncode == 2 and done.stdout == "", shown(done)
    assert done.stderr.strip().count("\n") == 0 and "nowhere does not exist" in done.stderr, shown(done)
    done = run_petalnet("compare")
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "RUN" in done.stderr, shown(done)
    assert list(tmp_path.iterdir()) == []
