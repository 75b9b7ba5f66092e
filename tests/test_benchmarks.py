"""benchmarks/: the scripts the docs' numbers come from still run (on a trained run, on made-up photos)."""

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from conftest import SMALL, shown
from imagegen import write_photo

ROOT = Path(__file__).resolve().parents[1]


def script(name, *args):
    return [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *map(str, args)]


@pytest.fixture(scope="module")
def runs(trained_run, made_photos, tmp_path_factory):
    """The scripts that start processes of their own (to time a cold start, to measure a training's peak
    memory, to time runs from their start), run two at a time: each spends seconds importing on one core.
    {name: (CompletedProcess, its folder)}."""
    folder = {name: tmp_path_factory.mktemp(name) for name in
              ("bench_models", "bench_memory", "bench_stores", "imbalance", "budgets")}
    (folder["budgets"] / "seed").mkdir()
    (folder["budgets"] / "seed" / "calibration").symlink_to(trained_run)  # the calibration run, found by --reuse
    commands = {
        "bench_models": script("bench_models", "--data", made_photos, "--out", folder["bench_models"], "--models",
                               "alexnet_half", "--photos", "3", "--image-size", "64"),
        "bench_memory": script("bench_memory", "--work", folder["bench_memory"] / "w", "--memory", made_photos,
                               "--disk", made_photos, "--epochs", "1", "--image-size", "64", "--disk-budget",
                               "0.0015", "--loader", folder["bench_memory"] / "w" / "cache-photos"),
        "bench_stores": script("bench_stores", "--n", "200", "--repeats", "1", "--dir", folder["bench_stores"],
                               "--engines", "packed-mmap,packed-mmap+dontneed-all"),
        "imbalance": script("imbalance", made_photos, "--work", folder["imbalance"], "--small", "roses", "--keep",
                            "0.25", "--", *SMALL, "--epochs", "1"),
        # budgets of 0.6 and 3 s: one epoch (the least a run gets) and one or a few, one seed each
        "budgets": script("budgets", "--data", made_photos, "--out", folder["budgets"], "--recipes", "seed",
                          "--budgets", "0.01", "0.05", "--seeds", "0", "--flags", " ".join(SMALL[2:]), "--reuse"),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        started = {name: pool.submit(subprocess.run, command, capture_output=True, text=True, timeout=600)
                   for name, command in commands.items()}
        return {name: (child.result(), folder[name]) for name, child in started.items()}


def test_time_to_accuracy_reads_runs(trained_run, tmp_path):
    for name in ("seed", "other"):
        (tmp_path / name).symlink_to(trained_run)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "time_to_accuracy.py"), "--reuse", "--out",
                           str(tmp_path), "--run", "seed=seed", "--run", "other=fast"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, shown(done)
    results = json.loads((tmp_path / "time_to_accuracy.json").read_text())
    assert results[0]["speedup"] == pytest.approx(1.0) and results[1]["seconds_to_target"] > 0
    assert (tmp_path / "time_to_accuracy.png").stat().st_size > 1000
    assert "| other | fast |" in done.stdout, shown(done)


def test_shrink_photos_keeps_layout_and_caps_the_short_side(tmp_path):
    source, target = tmp_path / "split", tmp_path / "small"
    write_photo(source / "train" / "daisy" / "big.jpg", 1, size=(400, 300))
    write_photo(source / "train" / "roses" / "tall.jpg", 2, size=(150, 320))
    write_photo(source / "val" / "daisy" / "tiny.jpg", 3, size=(60, 40))
    (source / "val" / "daisy" / "notes.txt").write_text("not a photo")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "shrink_photos.py"), str(source), str(target),
                           "--short-side", "100"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, shown(done)
    sizes = {p.relative_to(target).as_posix(): Image.open(p).size for p in target.rglob("*") if p.is_file()}
    assert sizes == {"train/daisy/big.webp": (133, 100), "train/roses/tall.webp": (100, 213),
                     "val/daisy/tiny.webp": (60, 40)}
    assert "3 photos" in done.stdout, shown(done)


def test_bench_models_measures_torch_and_onnx(runs):
    done, out = runs["bench_models"]
    assert done.returncode == 0, shown(done)
    (row,) = json.loads((out / "results.json").read_text())
    assert row["model"] == "alexnet_half" and (out / "alexnet_half.onnx").is_file()
    for path in ("torch", "onnx"):
        assert row[path]["img_per_s"] > 0 and row[path]["cold_start_s"] > 0, row


def test_large_folder_makes_distinct_photos_once(made_photos, tmp_path):
    import hashlib

    out = tmp_path / "large"
    command = [sys.executable, str(ROOT / "benchmarks" / "large_folder.py"), str(made_photos), str(out), "--count",
               "130", "--max-side", "64", "--workers", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, shown(done)
    photos = sorted(out.rglob("*.jpg"))
    assert len(photos) == 130 and {p.parent.name for p in photos} == {p.name for p in made_photos.iterdir()}
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in photos}) == 130  # no byte-identical files
    assert all(max(Image.open(p).size) <= 64 for p in photos)
    before = {p: p.stat().st_mtime_ns for p in photos}
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, shown(again)
    assert {p: p.stat().st_mtime_ns for p in sorted(out.rglob("*.jpg"))} == before  # built once


def test_bench_memory_reports_peak_memory_and_speed(runs):
    done, _ = runs["bench_memory"]
    assert done.returncode == 0, shown(done)
    memory, disk = json.loads(done.stderr.strip().splitlines()[-1])
    assert memory["how"] == "memory" and disk["how"] == "disk" and memory["photos"] == disk["photos"] == 100
    assert disk["store"] > 0 and memory["store"] is None
    for row in (memory, disk):
        assert row["peak_gib"] > 0.1 and row["img_s"][0] > 0 and row["decode_s_per_1000"] >= 0 and row["processes"] == 1
    assert "| 100 | disk | 1 |" in done.stdout, shown(done)
    speeds = re.search(r"batches alone from .*: disk (\d+) img/s, resident (\d+) img/s, disk (\d+) img/s", done.stdout)
    assert speeds and all(int(v) > 0 for v in speeds.groups()), shown(done)


def test_bench_stores_compares_the_packed_store_and_skips_engines_not_installed(runs):
    done, _ = runs["bench_stores"]
    assert done.returncode == 0, shown(done)
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.startswith("packed")}
    assert set(rows) == {"packed-mmap", "packed-mmap+dontneed-all"}, shown(done)
    assert all(float(row[3]) > 0 for row in rows.values()), shown(done)  # photos per CPU-second


def test_imbalance_cuts_one_class_links_the_photos_and_compares_three_variants(runs, made_photos):
    done, out = runs["imbalance"]
    assert done.returncode == 0, shown(done)
    assert "roses 4," in done.stdout, shown(done)  # 18 train roses cut to a quarter
    roses = sorted((out / "layout" / "train" / "roses").iterdir())
    assert len(roses) == 4 and all(p.is_symlink() and p.resolve().is_relative_to(made_photos) for p in roses)
    assert len(list((out / "layout" / "val" / "roses").iterdir())) == 2  # val keeps the class whole
    rows = json.loads(done.stderr.strip().splitlines()[-1])
    assert [r["variant"] for r in rows] == ["none", "class weights", "balanced sampler"]
    assert all(0 <= r["macro_f1"] <= 1 and 0 <= r["small_recall"] <= 1 for r in rows)


def test_near_duplicates_benchmark_prints_its_three_tables(made_photos, capsys):
    """Run in this process, as bench_predict below: neither measures a process's start."""
    load_benchmark("near_duplicates").main([str(made_photos), "--sample", "4", "--thresholds", "0.9"])
    out = capsys.readouterr().out
    assert "| 100 |" in out and "| grey | 4/4 |" in out, out
    assert re.search(r"\| 0\.9 \| 0 \| 0 \| 0 \| 0 \| 0 \|", out), out  # made photos: all different


def test_bench_predict_measures_decode_model_and_predict_for_three_files(trained_run, made_photos, capsys):
    load_benchmark("bench_predict").main([str(trained_run), "--data", str(made_photos), "--photos", "12",
                                          "--batch-size", "4"])
    out = capsys.readouterr().out
    for name in ("PyTorch", "ONNX Runtime", "ONNX Runtime int8"):
        assert re.search(rf"^\| {name} \|( [0-9.]+ \|){{6}}$", out, re.M), out
        assert re.search(rf"^\| {name} \| [0-9.]+ \| [01]\.[0-9]{{4}} \| 10 \|$", out, re.M), out


def load_benchmark(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_budgets_fit_each_schedule_to_its_budget_from_a_calibration_run():
    """fast's two calibration epochs at 128 and 176 px: epochs at other sizes cost a + b x size^2; the fitted
    run is the longest whose predicted time fits."""
    budgets = load_benchmark("budgets")
    rows = [{"epoch_seconds": 6.0, "elapsed_s": 16.0}, {"epoch_seconds": 9.0, "elapsed_s": 26.0}]
    model = budgets.cost_model(rows, "fast")
    epoch_seconds, startup, validation = model
    assert (startup, validation) == pytest.approx((9.0, 1.0))
    config = budgets.recipe_config("fast", 90)
    assert epoch_seconds(1, config) == pytest.approx(6.0) and epoch_seconds(90, config) > 10  # 208 px
    for budget in (60, 300, 823):
        epochs = budgets.fit_epochs("fast", budget, model)
        assert budgets.predicted_seconds("fast", epochs, model) <= budget
        assert budgets.predicted_seconds("fast", epochs + 1, model) > budget
    assert budgets.fit_epochs("fast", 5, model) == 1  # never below one epoch
    spread = budgets.summary([0.5, 0.7, 0.9])  # over seeds
    assert spread == pytest.approx({"mean": 0.7, "min": 0.5, "max": 0.9, "sd": 0.2, "n": 3})
    small = budgets.recipe_config("sprint", 10, ["--image-size", "64"])
    assert (small.image_size, small.epochs, small.model) == (64, 10, "resnet9")


def test_budgets_runs_each_budget_and_seed_and_draws_the_table(runs):
    """The session's run is the calibration run (`train` with SMALL's flags, 2 epochs), found by --reuse;
    the mean and spread over seeds are summary()'s, checked by hand above."""
    done, out = runs["budgets"]
    assert done.returncode == 0, shown(done)
    assert "calibration" not in done.stdout and done.stdout.count("$ -m petalnet train") == 2, shown(done)
    results = json.loads((out / "budgets.json").read_text())
    short, longer = (r for r in results if "budget_min" in r)
    assert short["epochs"] <= longer["epochs"] and short["final_acc"]["n"] == 1 and short["final_acc"]["sd"] == 0.0
    assert {r["target"] for r in results if "target" in r} == {0.69, 0.85}
    assert (out / "seed" / "0.05-min" / "seed-0" / "best.pt").is_file()
    assert (out / "budgets.png").stat().st_size > 1000
    assert "| seed |" in done.stdout, shown(done)
