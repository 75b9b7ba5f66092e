"""`petalnet train`: photos -> batches -> model -> checkpoints, epoch by epoch, resumable.

    petalnet train --data ~/.cache/petalnet/flower_photos --out runs/seed --recipe seed
    petalnet train --out runs/seed --resume               # continue after a stop
    petalnet train --out runs/seed --resume --epochs 20   # or train longer
    torchrun --nproc_per_node=2 -m petalnet train --data DIR --out runs/ddp   # DDP (devices/distributed.py)

    from petalnet.training.train import train
    history = train("photos/", "runs/seed", recipe="seed", overrides={"epochs": 3})

The structure follows torchvision's references/classification: load_data (photos.py), train_one_epoch
(engine.py), evaluate (inference/scoring.py).
"""

import json
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import petalnet
from petalnet.config.sizes import eval_image_size, inference_spec
from petalnet.config.train import TrainConfig, resolve_config, resumed_config
from petalnet.data.download import default_data_dir
from petalnet.devices import distributed
from petalnet.devices.select import describe, pick_device
from petalnet.devices.options import DeviceOptions
from petalnet.devices.settings import DeviceSettings, device_settings, grad_scaler
from petalnet.errors import StorageError, UserError, describe_os_error, one_line
from petalnet.inference.scoring import evaluate_batches
from petalnet.models.checkpoint import (load_checkpoint, load_starting_point, restore_rng_state, rng_state,
                                       save_checkpoint, starting_point)
from petalnet.models.networks import architecture_has_depthwise_convs, build_model, count_parameters, for_inference
from petalnet.models.names import model_source
from petalnet.models.weights import find_weights, load_pretrained, read_weights
from petalnet.pipeline.loaders import epoch_seed, make_loaders, memory_budget
from petalnet.pipeline.sampling import balanced_weights
from petalnet.training import runs
from petalnet.training.ema import WeightAverage
from petalnet.training.engine import Training, fit_to_photos, train_one_epoch
from petalnet.training.layers import Layers
from petalnet.training.optim import build_optimizer, build_scheduler
from petalnet.training.photos import check_same_photos, load_data, shared_split
from petalnet.training.ranklogs import RankLog, Terminated
from petalnet.utils.fields import to_dict
from petalnet.utils.fileio import write_json
from petalnet.utils.plots import plot_curves


@dataclass(frozen=True)
class RunFacts:
    """What a run found, beside what it was told: kept with the config in config.json and checkpoints."""
    data: str  # the photos' folder, absolute
    layout: str  # "class folders" (split by petalnet) or "train/val"
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Request:
    """What the caller of train() asked for."""
    data: str | None  # None: the resumed run's, else $PETALNET_DATA
    out: str
    recipe: str | None
    overrides: dict  # TrainConfig setting name -> value; None means the recipe's
    options: DeviceOptions
    resume: bool
    overwrite: bool


@dataclass
class Session:
    """This process's part in a run: where it runs and what it may print."""
    processes: distributed.Processes
    device: torch.device
    settings: DeviceSettings
    progress: bool
    log: Callable[[str], None]


def train(data=None, out="runs/seed", recipe=None, overrides=None, device="auto", resume=False, overwrite=False,
          progress=True, log=print, options=None):
    """Train a model into the run folder `out`; returns the list of per-epoch metric rows.

    overrides: TrainConfig setting name -> value (None: the recipe's); options: DeviceOptions (how fast to
    run here). Under torchrun every process calls this; rank 0 alone writes and prints.
    """
    processes, device = distributed.start(pick_device(device))
    rank_log = RankLog(processes)  # under torchrun: RUN/logs/rank-K.log, once the run folder exists
    log = _also_into(rank_log, log if processes.is_main else None)
    session = Session(processes, device, None, progress and processes.is_main, log)
    request = Request(data, out, recipe, dict(overrides or {}), options or DeviceOptions(), resume, overwrite)
    try:
        return _train(request, session, rank_log)
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


def _train(request, session, rank_log):
    started, processes, log, out = time.perf_counter(), session.processes, session.log, request.out
    found = _read_run_folder(request, log) if processes.is_main else None
    config, previous, data, saved_split = distributed.from_rank0(found, processes)
    session.settings = device_settings(session.device, config.pipeline, request.options,
                                       depthwise=architecture_has_depthwise_convs(config.model))
    if config.pipeline == "cache":
        memory_budget(config, session.settings)  # a budget below one batch stops the run before it starts
    saved_split = saved_split or shared_split(data, config, processes, session.progress)
    photos = load_data(data, config, saved_split, session.progress)
    if config.class_weights == "balanced":  # a class without train photos stops the run before it starts
        balanced_weights(photos.train_labels, len(photos.classes), photos.classes)
    check_same_photos(photos, data, processes)
    for part, paths in (("train", photos.train_paths), ("val", photos.val_paths)):
        if len(paths) < processes.world:
            raise UserError(f"{len(paths)} {part} photos cannot be shared by {processes.world} processes")
    if photos.left_out:
        log(f"left out {len(photos.left_out)} unreadable file(s):")
        for row in photos.left_out:
            log(f"  {row['path']}: {row['error']}")
    facts = RunFacts(data=str(Path(data).resolve()), layout=photos.layout, classes=tuple(photos.classes))
    built = prepare_model(config, photos.classes, session, fresh=not previous)  # weights checked before
    distributed.barrier(processes)  # every rank has checked everything before rank 0 writes
    run = runs.start_run_folder(out, request.overwrite) if processes.is_main else Path(out)
    rank_log.open(run, request.resume)
    log(f"device: {describe(session.device)} x {processes.world} process(es); {len(photos.train_paths)} train / "
        f"{len(photos.val_paths)} val photos, {len(photos.classes)} classes; run folder {run}")
    settings = to_dict(session.settings)
    log("settings: " + ", ".join(f"{k} {v}" for k, v in settings.items() if k not in ("why", "cache_dir")))
    if processes.is_main:
        try:
            _write_run_description(run, config, facts, photos, session)
        except OSError as err:
            raise StorageError(f"cannot write the run folder {run}: {describe_os_error(err)}") from None
    return fit(run, config, facts, photos, session, previous, started, built)


def _read_run_folder(request, log):
    """(config, last.pt's contents or None, data folder, saved split or None), or the UserError that stops
    the run: rank 0 alone reads the run folder, the other processes get this from it (from_rank0)."""
    try:
        runs.check_run_folder(request.out, request.resume, request.overwrite)
        config, previous, data = _config_of(request, log)
        return config, previous, data, _saved_split(request.out) if request.resume else None
    except Exception as err:  # noqa: BLE001 - raised on every rank (from_rank0), not on rank 0 alone
        return err


def _config_of(request, log):
    """(config, last.pt's contents or None, data folder) of a new run or of the run being resumed."""
    last, data, overrides = Path(request.out) / "last.pt", request.data, request.overrides
    previous = load_checkpoint(last) if request.resume and last.is_file() else None
    if previous:
        config, data = resumed_config(previous["config"], overrides, log), data or previous["config"]["data"]
    elif request.resume:  # stopped before its first epoch ended: start again with the saved settings
        saved = runs.unfinished_config(request.out)
        config, data = resumed_config(saved, overrides, log), data or saved["data"]
        log(f"no finished epoch in {request.out} yet: starting it again from epoch 1 with its saved settings")
    else:
        config, data = resolve_config(request.recipe, overrides), data or default_data_dir()
    if data is None:
        raise UserError("no dataset: pass --data DIR, set $PETALNET_DATA, or run 'petalnet data get'")
    return config, previous, data


def _saved_split(out):
    path = Path(out) / "split.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} ({one_line(err, 120)}): the run's split is lost") from None


def saved_config(config, facts):
    """The config as config.json and checkpoints keep it: one flat JSON object (0.2.0's format)."""
    return {**to_dict(config), **to_dict(facts)}


def _write_run_description(run, config, facts, photos, session):
    runs.write_class_indices(run, photos.classes)
    if photos.split is not None:
        write_json(run / "split.json", photos.split)
    saved = saved_config(config, facts)
    description = {**saved, "num_train": len(photos.train_paths), "num_val": len(photos.val_paths),
                   "left_out": photos.left_out, "device": describe(session.device),
                   "processes": session.processes.world, "device_settings": to_dict(session.settings),
                   "config_keys": sorted(saved), "petalnet": petalnet.__version__, "torch": torch.__version__,
                   "torchvision": package_version("torchvision"), "python": platform.python_version(),
                   "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json(run / "config.json", description)


def prepare_model(config, classes, session, fresh=True):
    """The model on its device in the settings' memory format (the same weights on every rank), with its
    starting weights (--pretrained, --init) when `fresh` (not resumed), and its Layers (training/layers.py)."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, len(classes), config.dropout)
    layers = Layers.of(model, len(classes))
    if fresh and (config.init or config.pretrained != "none"):
        load_starting_weights(model, config, classes, layers, session)
    if sync_batch_norm(model, config, session):
        model = convert_sync_batch_norm(model, config.model)
    model = model.to(session.device)
    return (model.to(memory_format=torch.channels_last) if session.settings.channels_last else model), layers


def load_starting_weights(model, config, classes, layers, session):
    """--init (all the weights) or --pretrained (all but the head); one process per machine downloads
    before the others read."""
    if config.init:
        state, spec = starting_point(config.init)
        if spec is not None and tuple(spec.classes) != tuple(classes):
            raise UserError(f"--init {config.init} was trained on the classes {', '.join(spec.classes)}, not "
                            f"{', '.join(classes)} (in this order): --pretrained WEIGHTS_FILE trains a new head")
        load_starting_point(model, state, len(classes), config.init)
        session.log(f"started from the weights of {config.init}")
        return
    weights, processes = find_weights(config.model, config.pretrained), session.processes
    if processes.local_rank == 0:
        state = read_weights(weights, session.progress)
    distributed.barrier(processes)
    if processes.local_rank != 0:
        state = read_weights(weights, progress=False)
    loaded = load_pretrained(model, state, set(layers.head), weights.source)
    for module in {model.get_submodule(name.rsplit(".", 1)[0]) for name in layers.head}:
        if isinstance(module, nn.Linear):  # zeros: every class starts equally likely, whatever the features'
            nn.init.zeros_(module.weight)  # scale (not a conv head followed by a ReLU: it would never learn)
            nn.init.zeros_(module.bias)
    session.log(f"pretrained: {weights.source}, {len(loaded)} tensors; new head {', '.join(sorted(layers.head))}")


def sync_batch_norm(model, config, session):
    """SyncBatchNorm under torchrun on CUDA when each process's batch is under 32 photos: BatchNorm's
    statistics over so few photos are noisy. PyTorch synchronizes BatchNorm on GPUs only."""
    small = config.batch_size < 32 and session.processes.active and session.device.type == "cuda"
    return small and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def convert_sync_batch_norm(model, name):
    """timm's converter for timm's networks: it keeps the activation timm fuses into its BatchNormAct2d."""
    if model_source(name) == "timm":
        from timm.layers import convert_sync_batchnorm

        return convert_sync_batchnorm(model)
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap_for_training(model, device, settings, processes):
    """What the training step calls: DDP under torchrun, torch.compile with --compile."""
    if processes.active:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(model) if settings.compile else model


def prepare_training(config, model, layers, session, steps_per_epoch, photos):
    """Optimizer, schedule, loss (weighted per class with --class-weights balanced), scaler and weight
    average for `model`, as the config and device settings say."""
    device, settings = session.device, session.settings
    optimizer = build_optimizer(layers.param_groups(model, config), config, settings.fused_optimizer)
    weight = None
    if config.class_weights == "balanced":
        weight = balanced_weights(photos.train_labels, len(photos.classes), photos.classes).to(device)
    return Training(model=model, optimizer=optimizer, scheduler=build_scheduler(optimizer, config, steps_per_epoch),
                    scaler=grad_scaler(device, settings), device=device, settings=settings,
                    criterion=nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing),
                    ema=WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None)


def fit(run, config: TrainConfig, facts: RunFacts, photos, session, previous, started, built):
    """The epoch loop: train, validate, checkpoint (best.pt when val accuracy improves, last.pt always).
    `built`: prepare_model's (model, layers)."""
    s, log = session, session.log
    model, layers = built
    log(f"model {config.model}: {count_parameters(model):,} parameters; recipe {config.recipe}; "
        f"pipeline {config.pipeline}")
    loaders = make_loaders(config, photos, s.device, s.settings, s.processes.rank, s.processes.world, s.progress,
                           log)
    if not previous and not config.init and config.pretrained == "none":
        fit_to_photos(model, loaders[0])
    training = prepare_training(config, model, layers, s, len(loaders[0]), photos)
    history, best_acc, best_epoch, start = [], -1.0, 0, 1
    if previous:
        history, best_acc, best_epoch, start = restore(previous, training)
        if start > config.epochs:
            log(f"{run} already finished {previous['epoch']} epochs: pass --epochs N to train longer")
            return history
        log(f"resuming at epoch {start}/{config.epochs} (best val_acc {best_acc:.4f} at epoch {best_epoch})")
    spec = inference_spec(config, facts.classes)
    eval_model = for_inference(training.ema.model if training.ema else training.model, spec)
    elapsed_before = history[-1].get("elapsed_s", 0.0) if history else 0.0
    for epoch in range(start, config.epochs + 1):
        if layers.set_trainable(training.model, config, epoch) or training.step_model is None:
            training.step_model = wrap_for_training(training.model, s.device, s.settings, s.processes)
        training.frozen_norms = layers.frozen_norms(training.model, config, epoch)
        row = run_epoch(epoch, config, training, loaders, eval_model, session)
        row["elapsed_s"] = elapsed_before + time.perf_counter() - started
        history.append(row)
        improved = row["val_acc"] > best_acc
        if improved:
            best_acc, best_epoch = row["val_acc"], epoch
        if s.processes.is_main:
            try:
                save_epoch(run, saved_config(config, facts), inference_spec(config, facts.classes,
                           row["eval_image_size"]), history, training, best_acc, best_epoch)
            except OSError as err:
                kept = f"{run / 'last.pt'} holds epoch {epoch - 1}" if epoch > 1 else "no epoch was saved"
                raise StorageError(f"cannot save epoch {epoch}: {describe_os_error(err)}; {kept}") from None
        log(format_epoch(row, config.epochs, improved))
    log(f"best val_acc {best_acc:.4f} at epoch {best_epoch}; weights in {run / 'best.pt'}")
    return history


def run_epoch(epoch, config, training, loaders, eval_model, session):
    """One epoch: train, then validate; the metrics row (without elapsed_s)."""
    (train_loader, val_loader), processes = loaders, session.processes
    train_loader.set_epoch(epoch)
    val_loader.set_epoch(epoch)
    torch.manual_seed(epoch_seed(config.seed, epoch, 500 + processes.rank))  # dropout, augmentation
    epoch_start, lr = time.perf_counter(), training.optimizer.param_groups[-1]["lr"]  # the head's: --lr
    stats = train_one_epoch(training, train_loader, f"epoch {epoch}/{config.epochs}", session.progress)
    loss_sum, images = distributed.sum_over_ranks([stats["loss_sum"], stats["images"]], processes, session.device)
    result = evaluate_batches(eval_model, val_loader, session.device, "val", session.progress, session.settings,
                              processes)
    return {"epoch": epoch, "train_loss": loss_sum / max(images, 1), "val_loss": result.loss,
            "val_acc": result.accuracy, "lr": lr, **loader_sizes(train_loader, val_loader, config),
            "epoch_seconds": time.perf_counter() - epoch_start,
            "train_images_per_s": images / max(stats["seconds"], 1e-9)}


def loader_sizes(train_loader, val_loader, config):
    """This epoch's training and val image sizes (they change with progressive resizing)."""
    return {"image_size": getattr(train_loader, "size", config.image_size),
            "eval_image_size": getattr(val_loader, "size", eval_image_size(config))}


def restore(previous, training):
    """Load last.pt's state; returns (history, best_acc, best_epoch, first epoch to run)."""
    try:
        training.model.load_state_dict(previous["model"])
        training.optimizer.load_state_dict(previous["optimizer"])
        training.scheduler.load_state_dict(previous["scheduler"])
        if training.ema is not None:
            training.ema.load_state_dict(previous["ema"])
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise UserError(f"last.pt does not fit this run's model and settings ({one_line(err, 160)})") from None
    if previous.get("scaler") and training.scaler.is_enabled():
        training.scaler.load_state_dict(previous["scaler"])
    restore_rng_state(previous["rng"])
    return previous["history"], previous["best_acc"], previous["best_epoch"], previous["epoch"] + 1


def save_epoch(run, config, spec, history, training, best_acc, best_epoch):
    """best.pt when this epoch is the best so far, then last.pt, metrics.csv and curves.png.

    best.pt's weights are the ones val scored: the averaged ones when the recipe keeps an average.
    `config` is saved_config's plain dict; `spec` the InferenceSpec at this epoch's val size.
    """
    t, row = training, history[-1]
    weights = {"meta": spec.to_dict(), "epoch": row["epoch"], "val_acc": row["val_acc"], "config": config}
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
