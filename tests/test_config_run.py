"""config/run.py: the run folder's record, written and read in one place, runs of older versions included."""

import json

import pytest

from conftest import CLASSES
from petalnet.config.run import RunFolder, RunRecord, TrainingSummary, settings_from_saved
from petalnet.config.train import TrainConfig
from petalnet.errors import UserError
from petalnet.models.checkpoint import load_checkpoint

CONFIG_JSON_0_2_0 = ["num_train", "num_val", "left_out", "device", "processes", "device_settings", "config_keys",
                     "petalnet", "torch", "torchvision", "python", "written"]  # after the settings, in order


def test_the_record_reads_back_what_train_wrote_in_0_2_0s_layout(trained_run):
    folder = RunFolder(trained_run)
    saved = json.loads((trained_run / "config.json").read_text())
    record = folder.read_record()
    assert isinstance(record.config, TrainConfig) and record.facts.classes == tuple(CLASSES)
    assert record.to_dict() == saved  # read and written again: the same file, key for key
    assert list(saved)[-len(CONFIG_JSON_0_2_0):] == CONFIG_JSON_0_2_0
    assert record.num_train + record.num_val == 100 and record.machine.processes == 1
    assert record.config == settings_from_saved(load_checkpoint(trained_run).config)[0]  # best.pt says the same
    split = folder.read_split()
    assert [str(p) for p in split.paths("val")] == [f"{split.source}/{rel}" for rel, _ in split.val]
    assert split.to_dict() == json.loads((trained_run / "split.json").read_text())
    history, columns = folder.read_metrics()
    assert [row["epoch"] for row in history] == [1.0, 2.0] and "val_acc" in columns


def test_older_runs_read_with_what_they_trained_with():
    """0.1 saved no pipeline, levers or cache size: it read photos the pil way, every lever off."""
    old = {"model": "alexnet_half", "epochs": 3, "image_size": 96, "lr": 1e-3, "data": "/photos",
           "layout": "class folders", "classes": ["a", "b"]}
    config, facts = settings_from_saved(old)
    assert (config.pipeline, config.cache_size, config.recipe, config.ema_decay) == ("pil", 110, "seed", 0.0)
    assert (config.lr, facts.classes) == (1e-3, ("a", "b"))
    record = RunRecord.from_dict({**old, "num_train": 9, "device": "cpu"})
    assert record.num_train == 9 and record.machine.device == "cpu" and record.machine.processes == 1
    with pytest.raises(UserError, match=r"x\.json does not hold a run's settings \('classes'"):
        settings_from_saved({k: v for k, v in old.items() if k != "classes"}, "x.json")


def test_a_checkpoint_says_how_it_came_to_be_as_far_as_it_knows(trained_run, tmp_path):
    summary = TrainingSummary.of(load_checkpoint(trained_run))
    assert (summary.recipe, summary.epochs, summary.pipeline) == ("seed", 2, "cache")
    assert summary.best_epoch in (1, 2) and 0 <= summary.val_acc <= 1


def test_what_is_not_a_run_folder_is_one_line(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.read_split() is None  # a train/val layout has no split.json
    with pytest.raises(UserError, match="is not a run folder: it has no config.json"):
        folder.read_record()
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match=r"config\.json is unreadable"):
        folder.read_record()
    with pytest.raises(UserError, match="nothing to resume: .*last.pt does not exist"):
        folder.unfinished_settings()
    (tmp_path / "split.json").write_text(json.dumps({"source": "/x", "classes": ["a"]}))
    with pytest.raises(UserError, match="the run's split is lost"):
        folder.read_split()


def test_prepare_clears_what_a_kill_left_and_check_refuses_to_clobber(tmp_path):
    folder = RunFolder(tmp_path / "run").prepare(overwrite=False)
    (folder / ".last.pt.abc.tmp").write_text("half a checkpoint")
    folder.check(resume=False, overwrite=False)  # only a temp file: nothing to clobber
    (folder / "metrics.csv").write_text("epoch,val_acc\n")
    with pytest.raises(UserError, match="already holds a run"):
        folder.check(resume=False, overwrite=False)
    folder.prepare(overwrite=True)
    assert list(folder.path.iterdir()) == []
