"""`petalnet train`: photos -> batches -> model -> checkpoints, epoch by epoch, resumable.

    petalnet train --data ~/.cache/petalnet/flower_photos --out runs/seed --recipe seed
    petalnet train --out runs/seed --resume               # continue after a stop
    petalnet train --out runs/seed --resume --epochs 20   # or train longer
    torchrun --nproc_per_node=2 -m petalnet train --data DIR --out runs/ddp   # DDP (distributed.py)

The structure follows torchvision's references/classification: load_data, train_one_epoch, evaluate.
"""

import json
from importlib.metadata import version as package_version
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

import petalnet
from petalnet import distributed, runs
from petalnet.ranklogs import RankLog, Terminated
from petalnet.check import scan_photos
from petalnet.checkpoint import load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from petalnet.config import resolve_config, resumed_config
from petalnet.device import describe, pick_device
from petalnet.download import default_data_dir
from petalnet.engine import evaluate, train_one_epoch
from petalnet.errors import StorageError, UserError, describe_os_error
from petalnet.fileio import write_json
from petalnet.folders import find_classes, is_split_layout, require_folder
from petalnet.images import one_line
from petalnet.ema import WeightAverage
from petalnet.models import build_model, count_parameters, for_inference
from petalnet.pipeline import epoch_seed, make_loaders
from petalnet.schedules import build_scheduler, eval_image_size
from petalnet.plots import plot_curves
from petalnet.split import make_split, split_paths
from petalnet.tuning import device_settings, grad_scaler


@dataclass
class TrainData:
    classes: list
    train_paths: list
    train_labels: list
    val_paths: list
    val_labels: list
    layout: str
    left_out: list = field(default_factory=list)  # [{"path", "error"}] unreadable photos
    split: dict = None  # the split record when petalnet split a folder of class folders


def load_data(root, config, saved_split=None, progress=True):
    """Find the photos: a train/val layout as is, or a folder of class folders split on the fly."""
    root = require_folder(root)
    if is_split_layout(root):
        return _load_split_layout(root, progress)
    split = saved_split or make_split(root, config["val_fraction"], config["seed"], progress=progress)
    train_paths, val_paths = split_paths(split, "train", root), split_paths(split, "val", root)
    return TrainData(classes=split["classes"], train_paths=train_paths, val_paths=val_paths,
                     train_labels=[label for _, label in split["train"]],
                     val_labels=[label for _, label in split["val"]],
                     layout="class folders", left_out=split["left_out"], split=split)


def _load_split_layout(root, progress):
    classes = find_classes(root / "train")
    extra = sorted(set(find_classes(root / "val")) - set(classes))
    if extra:
        raise UserError(f"val has classes that train lacks: {', '.join(extra)} (train has {', '.join(classes)})")
    train_scan = scan_photos(root / "train", classes, progress=progress, desc="checking train photos")
    val_scan = scan_photos(root / "val", classes, progress=progress, desc="checking val photos")
    train_paths, train_labels, _ = train_scan.readable()
    val_paths, val_labels, _ = val_scan.readable()
    if not val_paths:
        raise UserError(f"no readable photos in {root / 'val'}")
    left_out = [{"path": str(p.relative_to(root)), "error": why}
                for scan in (train_scan, val_scan) for p, why in scan.unreadable.items()]
    return TrainData(classes=classes, train_paths=train_paths, train_labels=train_labels, val_paths=val_paths,
                     val_labels=val_labels, layout="train/val", left_out=left_out)


def build_optimizer(model, config, fused=False):
    """The recipe's optimizer; `fused` (tuning.py) updates every parameter in one kernel, same arithmetic."""
    params, lr, wd = model.parameters(), config["lr"], config["weight_decay"]
    fused = fused or None  # None, not False: torch then picks its foreach implementation
    if config["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config["momentum"], weight_decay=wd, nesterov=True, fused=fused)
    if config["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=fused)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=fused)


def checkpoint_meta(config, classes):
    """What predict, evaluate, export and serve need: the model, its classes and how to show it a photo."""
    keys = ("model", "eval_resize", "mean", "std", "tta_flip")
    return {"classes": list(classes), "image_size": eval_image_size(config), **{k: config[k] for k in keys}}


def train(data=None, out="runs/seed", recipe=None, overrides=None, device="auto", resume=False, overwrite=False,
          progress=True, log=print, **tuning):
    """Train a model into the run folder `out`; returns the list of per-epoch metric rows.

    `tuning` holds tuning.device_settings' options (workers, amp, channels_last, compile, eval_batch_size,
    cache_dir, fused_optimizer). Under torchrun every process calls this; rank 0 alone writes and prints.
    """
    processes, device = distributed.start(pick_device(device))
    rank_log = RankLog(processes)  # under torchrun: RUN/logs/rank-K.log, once the run folder exists
    log = _also_into(rank_log, log if processes.is_main else None)
    progress = progress and processes.is_main
    try:
        return _train(data, out, recipe, overrides, device, resume, overwrite, progress, log, processes, tuning,
                      rank_log)
    except (Exception, Terminated) as err:
        stop = rank_log.stopped(err)  # another process of the run died first: say which, in one line
        if stop is None:
            raise
        raise stop from None
    finally:
        rank_log.close()
        distributed.stop(processes)


def _also_into(rank_log, log):
    """`log` (None: print nothing) that also writes each line to this process's rank log."""
    def both(line):
        if log is not None:
            log(line)
        rank_log.write(line)
    return both


def _train(data, out, recipe, overrides, device, resume, overwrite, progress, log, processes, tuning, rank_log):
    started = time.perf_counter()
    runs.check_run_folder(out, resume, overwrite)
    previous = load_checkpoint(Path(out) / "last.pt") if resume and (Path(out) / "last.pt").is_file() else None
    if previous:
        config = resumed_config(previous["config"], overrides, log)
        data = data or config["data"]
    elif resume:  # stopped before its first epoch ended: start again with the saved settings
        config = resumed_config(runs.unfinished_config(out), overrides, log)
        data = data or config["data"]
        log(f"no finished epoch in {out} yet: starting it again from epoch 1 with its saved settings")
    else:
        config = resolve_config(recipe, overrides)
        data = data or default_data_dir()
    if data is None:
        raise UserError("no dataset: pass --data DIR, set $PETALNET_DATA, or run 'petalnet data get'")
    settings = device_settings(device, config["pipeline"], **tuning)
    photos = load_data(data, config, _saved_split(out) if resume else None, progress)
    if len(photos.val_paths) < processes.world:
        raise UserError(f"{len(photos.val_paths)} val photos cannot be shared by {processes.world} processes")
    if photos.left_out:
        log(f"left out {len(photos.left_out)} unreadable file(s):")
        for row in photos.left_out:
            log(f"  {row['path']}: {row['error']}")
    config.update(data=str(Path(data).resolve()), layout=photos.layout, classes=photos.classes)
    distributed.barrier(processes)  # every rank has checked everything before rank 0 writes
    run = runs.start_run_folder(out, overwrite) if processes.is_main else Path(out)
    rank_log.open(run, resume)
    log(f"device: {describe(device)} x {processes.world} process(es); {len(photos.train_paths)} train / "
        f"{len(photos.val_paths)} val photos, {len(photos.classes)} classes; run folder {run}")
    log("settings: " + ", ".join(f"{k} {v}" for k, v in settings.items() if k not in ("why", "cache_dir")))
    if processes.is_main:
        try:
            _write_run_description(run, config, photos, device, settings, processes)
        except OSError as err:
            raise StorageError(f"cannot write the run folder {run}: {describe_os_error(err)}") from None
    return fit(run, config, photos, device, settings, previous, processes, progress, log, started)


def _saved_split(out):
    path = Path(out) / "split.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _write_run_description(run, config, photos, device, settings, processes):
    runs.write_class_indices(run, photos.classes)
    if photos.split is not None:
        write_json(run / "split.json", photos.split)
    description = {**config, "num_train": len(photos.train_paths), "num_val": len(photos.val_paths),
                   "left_out": photos.left_out, "device": describe(device), "processes": processes.world,
                   "device_settings": settings, "config_keys": sorted(config), "petalnet": petalnet.__version__,
                   "torch": torch.__version__,
                   "torchvision": package_version("torchvision"), "python": platform.python_version(),
                   "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json(run / "config.json", description)


def prepare_model(config, num_classes, device, settings):
    """The model on `device` in the settings' memory format (the same weights on every rank)."""
    torch.manual_seed(config["seed"])
    model = build_model(config["model"], num_classes, config["dropout"]).to(device)
    return model.to(memory_format=torch.channels_last) if settings["channels_last"] else model


def wrap_for_training(model, device, settings, processes):
    """What the training step calls: DDP under torchrun, torch.compile with --compile."""
    if processes.active:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(model) if settings["compile"] else model


def fit(run, config, photos, device, settings, previous, processes, progress, log, started=None):
    """The epoch loop: train, validate, checkpoint (best.pt when val accuracy improves, last.pt always)."""
    started = started or time.perf_counter()
    model = prepare_model(config, len(photos.classes), device, settings)
    log(f"model {config['model']}: {count_parameters(model):,} parameters; recipe {config['recipe']}; "
        f"pipeline {config['pipeline']}")
    train_loader, val_loader = make_loaders(config, photos, device, settings, processes.rank, processes.world,
                                            progress, log)
    criterion = nn.CrossEntropyLoss(label_smoothing=config["label_smoothing"])
    optimizer = build_optimizer(model, config, settings.get("fused_optimizer", False))
    scheduler = build_scheduler(optimizer, config, len(train_loader))
    scaler = grad_scaler(device, settings)
    ema = WeightAverage(model, config["ema_decay"]) if config["ema_decay"] > 0 else None
    training = Training(model, optimizer, scheduler, scaler, ema)
    history, best_acc, best_epoch, start = [], -1.0, 0, 1
    if previous:
        history, best_acc, best_epoch, start = restore(previous, training)
        if start > config["epochs"]:
            log(f"{run} already finished {previous['epoch']} epochs: pass --epochs N to train longer")
            return history
        log(f"resuming at epoch {start}/{config['epochs']} (best val_acc {best_acc:.4f} at epoch {best_epoch})")
    step_model, meta = wrap_for_training(model, device, settings, processes), checkpoint_meta(config, photos.classes)
    eval_model = for_inference(ema.model if ema else model, meta)
    elapsed_before = history[-1].get("elapsed_s", 0.0) if history else 0.0
    for epoch in range(start, config["epochs"] + 1):
        train_loader.set_epoch(epoch)
        val_loader.set_epoch(epoch)
        torch.manual_seed(epoch_seed(config["seed"], epoch, 500 + processes.rank))  # dropout, augmentation
        epoch_start, lr = time.perf_counter(), optimizer.param_groups[0]["lr"]
        desc = f"epoch {epoch}/{config['epochs']}"
        stats = train_one_epoch(step_model, train_loader, criterion, optimizer, scheduler, device, desc, progress,
                                settings, scaler, ema)
        loss_sum, images = distributed.sum_over_ranks([stats["loss_sum"], stats["images"]], processes, device)
        result = evaluate(eval_model, val_loader, device, "val", progress, settings, processes)
        row = {"epoch": epoch, "train_loss": loss_sum / max(images, 1), "val_loss": result.loss,
               "val_acc": result.accuracy, "lr": lr, **loader_sizes(train_loader, val_loader, config),
               "epoch_seconds": time.perf_counter() - epoch_start,
               "train_images_per_s": images / max(stats["seconds"], 1e-9),
               "elapsed_s": elapsed_before + time.perf_counter() - started}
        history.append(row)
        improved = result.accuracy > best_acc
        if improved:
            best_acc, best_epoch = result.accuracy, epoch
        if processes.is_main:
            try:
                save_epoch(run, config, {**meta, "image_size": row["eval_image_size"]}, history, training, best_acc,
                           best_epoch)
            except OSError as err:
                kept = f"{run / 'last.pt'} holds epoch {epoch - 1}" if epoch > 1 else "no epoch was saved"
                raise StorageError(f"cannot save epoch {epoch}: {describe_os_error(err)}; {kept}") from None
        log(format_epoch(row, config["epochs"], improved))
    log(f"best val_acc {best_acc:.4f} at epoch {best_epoch}; weights in {run / 'best.pt'}")
    return history


def loader_sizes(train_loader, val_loader, config):
    """This epoch's training and val image sizes (they change with progressive resizing)."""
    return {"image_size": getattr(train_loader, "size", config["image_size"]),
            "eval_image_size": getattr(val_loader, "size", eval_image_size(config))}


@dataclass
class Training:
    """What changes at every step and what --resume restores."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: object
    ema: WeightAverage = None


def restore(previous, training):
    """Load last.pt's state; returns (history, best_acc, best_epoch, first epoch to run)."""
    try:
        training.model.load_state_dict(previous["model"])
        training.optimizer.load_state_dict(previous["optimizer"])
        training.scheduler.load_state_dict(previous["scheduler"])
        if training.ema is not None:
            training.ema.load_state_dict(previous["ema"])
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise UserError(f"last.pt does not fit this run's model and settings ({one_line(err)[:160]})") from None
    if previous.get("scaler") and training.scaler.is_enabled():
        training.scaler.load_state_dict(previous["scaler"])
    restore_rng_state(previous["rng"])
    return previous["history"], previous["best_acc"], previous["best_epoch"], previous["epoch"] + 1


def save_epoch(run, config, meta, history, training, best_acc, best_epoch):
    """best.pt when this epoch is the best so far, then last.pt, metrics.csv and curves.png.

    best.pt's weights are the ones val scored: the averaged ones when the recipe keeps an average.
    """
    t, row = training, history[-1]
    weights = {"meta": meta, "epoch": row["epoch"], "val_acc": row["val_acc"], "config": config}
    if best_epoch == row["epoch"]:
        save_checkpoint(run / "best.pt", {**weights, "model": (t.ema.model if t.ema else t.model).state_dict()})
    save_checkpoint(run / "last.pt", {**weights, "model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
                                      "scheduler": t.scheduler.state_dict(), "rng": rng_state(),
                                      "scaler": t.scaler.state_dict() if t.scaler.is_enabled() else None,
                                      "ema": t.ema.state_dict() if t.ema else None,
                                      "history": history, "best_acc": best_acc, "best_epoch": best_epoch})
    runs.write_metrics(run, history)
    plot_curves(history, run / "curves.png", title=f"{run.name}: {config['model']}, recipe {config['recipe']}")


def format_epoch(row, epochs, improved):
    return (f"epoch {row['epoch']:>3}/{epochs}  train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
            f"val_acc {row['val_acc']:.4f}  lr {row['lr']:.3g}  {row['epoch_seconds']:.1f} s  "
            f"{row['train_images_per_s']:.1f} img/s" + ("  *best" if improved else ""))
