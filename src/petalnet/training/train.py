"""`petalnet train`: photos -> batches -> model -> checkpoints, epoch by epoch, resumable.

    petalnet train --data ~/.cache/petalnet/flower_photos --out runs/seed --recipe seed
    petalnet train --out runs/seed --resume               # continue after a stop
    petalnet train --out runs/seed --resume --epochs 20   # or train longer
    petalnet train --data photos/ --out runs/cv --folds 5  # k-fold cross-validation (training/folds.py)
    torchrun --nproc_per_node=2 -m petalnet train --data DIR --out runs/ddp   # DDP (devices/distributed.py)

    from petalnet.training.train import train
    history = train("photos/", "runs/seed", recipe="seed", overrides={"epochs": 3})
    history = train("photos/", "runs/fast30", config=resolve_config("fast", {"epochs": 30}))

The structure follows torchvision's references/classification: load_data (photos.py), train_one_epoch
(engine.py), evaluate (inference/scoring.py). A request goes: train -> _train (the starting point: a new
run's settings or a resumed run's last.pt, read by rank 0; the photos; the model) -> fit (the epoch
loop: run_epoch, save_epoch). The run folder's files are written and read by config/run.py alone.
"""

import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import petalnet
from petalnet.config.run import Machine, RunFacts, RunFolder, RunRecord, saved_settings, settings_from_saved
from petalnet.config.sizes import eval_image_size, inference_spec
from petalnet.config.train import TrainConfig, TrainRequest, checked_config, resolve_config, resumed_config
from petalnet.data.download import default_data_dir
from petalnet.data.sources import DataSource, open_data
from petalnet.data.split import Split, left_out_title
from petalnet.devices import distributed
from petalnet.devices.select import describe, pick_device
from petalnet.devices.options import DeviceOptions
from petalnet.devices.settings import DeviceSettings, device_settings, grad_scaler
from petalnet.errors import StorageError, UserError, describe_os_error, one_line
from petalnet.inference.scoring import evaluate_batches
from petalnet.models.checkpoint import (Checkpoint, TrainingState, load_checkpoint, restore_rng_state, rng_state,
                                       save_checkpoint)
from petalnet.models.networks import architecture_has_depthwise_convs, count_parameters, for_inference
from petalnet.pipeline.loaders import epoch_seed, make_loaders, memory_budget
from petalnet.pipeline.sampling import balanced_weights
from petalnet.training.ema import WeightAverage
from petalnet.training.engine import Training, fit_to_photos, train_one_epoch
from petalnet.training.folds import folds_asked, run_folds
from petalnet.training.network import Network, prepare_model, wrap_for_training
from petalnet.training.optim import build_optimizer, build_scheduler
from petalnet.training.multilabel import multilabel_loss, resolve_task, with_masks, with_thresholds
from petalnet.training.photos import TrainData, check_same_photos, load_data, shared_split
from petalnet.training.ranklogs import RankLog, Terminated
from petalnet.utils.fields import check_fields, to_dict
from petalnet.utils.plots import plot_curves


@dataclass(frozen=True)
class Request:
    """What the caller of train() asked for."""
    asked: TrainRequest  # the photos (None: the resumed run's, else $PETALNET_DATA), run folder, recipe, ...
    overrides: dict  # TrainConfig setting name -> value; None means the recipe's
    config: TrainConfig | None  # a whole config instead of recipe + overrides
    options: DeviceOptions
    split: Split | None = None  # a new run's photos, split already (a fold of cross-validation)


@dataclass
class Session:
    """This process's part in a run: where it runs and what it may print."""
    processes: distributed.Processes
    device: torch.device
    settings: DeviceSettings | None
    progress: bool
    log: Callable[[str], None]


@dataclass(frozen=True)
class StartingPoint:
    """What rank 0 reads before a run starts, and sends to the other ranks."""
    config: TrainConfig
    data: str  # what --data named (or the resumed run's): a folder, a manifest or an archive
    previous: Checkpoint | None  # a resumed run's last.pt (None: the run starts at epoch 1)
    split: Split | None  # a resumed run's split.json


@dataclass
class Run:
    """A run ready for its epoch loop."""
    folder: RunFolder
    config: TrainConfig
    facts: RunFacts
    photos: TrainData
    network: Network
    previous: Checkpoint | None  # resumed from this last.pt
    started: float  # time.perf_counter() when train() was called


@dataclass
class Progress:
    """The epochs done: what metrics.csv and last.pt record."""
    history: list = field(default_factory=list)  # one metrics row per epoch (config/run.py's METRIC_COLUMNS)
    best_acc: float = -1.0
    best_epoch: int = 0


def train(data=None, out="runs/seed", recipe=None, overrides=None, device="auto", resume=False, overwrite=False,
          progress=True, log=print, options=None, config=None, label_column=None, allow_paths_outside=False,
          exclude=None, folds=0, split=None):
    """Train a model into the run folder `out`; returns the list of per-epoch metric rows.

    data: class folders, a train/val layout, a manifest or an archive (data/sources.py; label_column and
    allow_paths_outside: how a manifest is read; exclude: a file of photos to leave out). recipe + overrides
    (TrainConfig setting name -> value; None: the recipe's), or config: a whole TrainConfig (config/train.py);
    options: DeviceOptions (how fast to run here). Under torchrun every process calls this; rank 0 alone writes
    and prints. folds=K (2 to 20) trains K runs, one per fold, in out/fold-1 .. out/fold-K and returns their
    config/folds.py FoldsRecord instead (training/folds.py; resume=True continues such a parent; refused under
    torchrun). split: a data/split.py Split that a new run takes as its photos instead of splitting them.
    """
    if config is not None and (recipe is not None or overrides or resume):
        raise UserError("config= is a whole run's settings: pass it alone, without recipe=, overrides= or "
                        "resume= (a resumed run keeps its own; overrides={'epochs': N} trains it longer)")
    asked = TrainRequest(data=None if data is None else str(data), out=str(out), recipe=recipe, device=device,
                         resume=resume, overwrite=overwrite, label_column=label_column,
                         allow_paths_outside=allow_paths_outside, exclude=None if exclude is None else str(exclude),
                         folds=folds)
    check_fields(asked)
    if folds_asked(asked):
        def train_one(**arguments):
            return train(device=device, progress=progress, log=log, options=options, **arguments)
        return run_folds(asked, dict(overrides or {}), config, train_one, progress, log)
    processes, device = distributed.start(pick_device(asked.device))
    rank_log = RankLog(processes)  # under torchrun: RUN/logs/rank-K.log, once the run folder exists
    log = _also_into(rank_log, log if processes.is_main else None)
    session = Session(processes, device, None, progress and processes.is_main, log)
    request = Request(asked, dict(overrides or {}), config, options or DeviceOptions(), split)
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
    started, processes, log = time.perf_counter(), session.processes, session.log
    start = distributed.on_rank0(lambda: starting_point(request, log), processes)
    config = start.config
    session.settings = device_settings(session.device, config.pipeline, request.options,
                                       depthwise=architecture_has_depthwise_convs(config.model))
    if config.pipeline == "cache":
        memory_budget(config, session.settings)  # a budget below one batch stops the run before it starts
    source = data_source(start, request.asked)
    split = start.split or shared_split(source, config, processes, session.progress)
    photos = load_data(source, config, split, session.progress)
    config = resolve_task(config, photos.multilabel, photos.classes)  # auto: multilabel when photos have label sets
    if config.task == "multilabel":
        photos = with_masks(photos)
    check_photos(photos, config, source.root, processes)
    if photos.left_out:
        log(left_out_title(photos.left_out, unreadable_only=source.kind != "manifest" and not source.exclude))
        for row in photos.left_out:
            log(f"  {row['path']}: {row['error']}")
    facts = RunFacts(data=str(Path(start.data).resolve()), layout=photos.layout, classes=tuple(photos.classes))
    network = prepare_model(config, photos.classes, session, fresh=start.previous is None)  # weights checked
    distributed.barrier(processes)  # every rank has checked everything before rank 0 writes
    asked = request.asked
    folder = RunFolder(asked.out).prepare(asked.overwrite) if processes.is_main else RunFolder(asked.out)
    rank_log.open(folder.path, asked.resume)
    log(f"device: {describe(session.device)} x {processes.world} process(es); {len(photos.train_paths)} train / "
        f"{len(photos.val_paths)} val photos, {len(photos.classes)} classes; run folder {folder}")
    settings = to_dict(session.settings)
    log("settings: " + ", ".join(f"{k} {v}" for k, v in settings.items() if k not in ("why", "cache_dir")))
    if processes.is_main:
        try:
            folder.write_record(run_record(config, facts, photos, session), photos.classes, photos.split)
        except OSError as err:
            raise StorageError(f"cannot write the run folder {folder}: {describe_os_error(err)}") from None
    return fit(Run(folder, config, facts, photos, network, start.previous, started), session)


def starting_point(request, log):
    """The settings of a new run, or of the run being resumed with its last.pt and split (rank 0 alone
    reads the run folder)."""
    asked = request.asked
    folder, data = RunFolder(asked.out), asked.data
    folder.check(asked.resume, asked.overwrite)
    previous = load_checkpoint(folder.last) if asked.resume and folder.last.is_file() else None
    if previous:
        saved, facts = settings_from_saved(previous.config, str(folder.last))
        config, data = resumed_config(saved, request.overrides, log), data or facts.data
    elif asked.resume:  # stopped before its first epoch ended: start again with the saved settings
        saved, facts = folder.unfinished_settings()
        config, data = resumed_config(saved, request.overrides, log), data or facts.data
        log(f"no finished epoch in {folder} yet: starting it again from epoch 1 with its saved settings")
    elif request.config is not None:
        config, data = checked_config(request.config), data or default_data_dir()
    else:
        config, data = resolve_config(asked.recipe, request.overrides), data or default_data_dir()
    if data is None:
        raise UserError("no dataset: pass --data DIR, set $PETALNET_DATA, or run 'petalnet data get'")
    return StartingPoint(config, str(data), previous, folder.read_split() if asked.resume else request.split)


def data_source(start, asked):
    """The run's photos (data/sources.py); a resumed run from a manifest finds them through its split.json,
    which names each photo, unless --data names them anew."""
    split = start.split
    if split is not None and split.manifest and not asked.data:
        return DataSource(kind="manifest", root=Path(split.source), given=start.data)
    return open_data(start.data, asked.label_column, asked.allow_paths_outside, asked.exclude)


def check_photos(photos, config, data, processes):
    """What stops a run before it starts: a class without train photos to weigh (--class-weights balanced),
    machines that list other photos, fewer photos than processes."""
    if config.class_weights == "balanced":
        balanced_weights(photos.train_labels, len(photos.classes), photos.classes)
    check_same_photos(photos, data, processes)
    for part, paths in (("train", photos.train_paths), ("val", photos.val_paths)):
        if len(paths) < processes.world:
            raise UserError(f"{len(paths)} {part} photos cannot be shared by {processes.world} processes")


def run_record(config, facts, photos, session):
    """config.json's RunRecord for this run (config/run.py)."""
    machine = Machine(device=describe(session.device), processes=session.processes.world,
                      device_settings=to_dict(session.settings), petalnet=petalnet.__version__,
                      torch=torch.__version__, torchvision=package_version("torchvision"),
                      python=platform.python_version(),
                      written=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return RunRecord(config=config, facts=facts, num_train=len(photos.train_paths), num_val=len(photos.val_paths),
                     left_out=tuple(photos.left_out), machine=machine)


def prepare_training(config, network, session, steps_per_epoch, photos):
    """Optimizer, schedule, loss (weighted per class with --class-weights balanced), scaler and weight
    average for the network, as the config and device settings say."""
    device, settings, model = session.device, session.settings, network.model
    optimizer = build_optimizer(network.layers.param_groups(model, config), config, settings.fused_optimizer)
    weight = None
    if config.class_weights == "balanced":
        weight = balanced_weights(photos.train_labels, len(photos.classes), photos.classes).to(device)
    criterion = (multilabel_loss(config) if config.task == "multilabel"
                 else nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing))
    return Training(model=model, optimizer=optimizer, scheduler=build_scheduler(optimizer, config, steps_per_epoch),
                    scaler=grad_scaler(device, settings), device=device, settings=settings, criterion=criterion,
                    ema=WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None)


def fit(run, session):
    """The epoch loop: train, validate, checkpoint (best.pt when val accuracy improves, last.pt always)."""
    s, log, config, layers = session, session.log, run.config, run.network.layers
    log(f"model {config.model}: {count_parameters(run.network.model):,} parameters; recipe {config.recipe}; "
        f"pipeline {config.pipeline}")
    loaders = make_loaders(config, run.photos, s.device, s.settings, s.processes.rank, s.processes.world,
                           s.progress, log)
    if not run.previous and not config.init and config.pretrained == "none":
        fit_to_photos(run.network.model, loaders[0])
    training = prepare_training(config, run.network, s, len(loaders[0]), run.photos)
    progress = Progress()
    if run.previous:
        progress = restore(run.previous, training)
        if run.previous.epoch >= config.epochs:
            log(f"{run.folder} already finished {run.previous.epoch} epochs: pass --epochs N to train longer")
            return progress.history
        log(f"resuming at epoch {run.previous.epoch + 1}/{config.epochs} (best {score_name(config)} "
            f"{progress.best_acc:.4f} "
            f"at epoch {progress.best_epoch})")
    eval_model = for_inference(training.ema.model if training.ema else training.model,
                               inference_spec(config, run.facts.classes))
    elapsed_before = progress.history[-1].get("elapsed_s", 0.0) if progress.history else 0.0
    for epoch in range(run.previous.epoch + 1 if run.previous else 1, config.epochs + 1):
        if layers.set_trainable(training.model, config, epoch) or training.step_model is None:
            training.step_model = wrap_for_training(training.model, s.device, s.settings, s.processes)
        training.frozen_norms = layers.frozen_norms(training.model, config, epoch)
        row, result = run_epoch(epoch, config, training, loaders, eval_model, session)
        row["elapsed_s"] = elapsed_before + time.perf_counter() - run.started
        progress.history.append(row)
        improved = row[score_name(config)] > progress.best_acc
        if improved:
            progress.best_acc, progress.best_epoch = row[score_name(config)], epoch
        if s.processes.is_main:
            spec = inference_spec(config, run.facts.classes, row["eval_image_size"])
            try:
                save_epoch(run, with_thresholds(spec, result) if config.task == "multilabel" else spec, progress,
                           training)
            except OSError as err:
                kept = f"{run.folder.last} holds epoch {epoch - 1}" if epoch > 1 else "no epoch was saved"
                raise StorageError(f"cannot save epoch {epoch}: {describe_os_error(err)}; {kept}") from None
        log(format_epoch(row, config.epochs, improved))
    log(f"best {score_name(config)} {progress.best_acc:.4f} at epoch {progress.best_epoch}; weights in "
        f"{run.folder.best}")
    return progress.history


def score_name(config):
    """The val metric that picks best.pt: accuracy, or for a multi-label run macro mean average precision."""
    return "val_map" if config.task == "multilabel" else "val_acc"


def run_epoch(epoch, config, training, loaders, eval_model, session):
    """One epoch: train, then validate; the metrics row (without elapsed_s) and val's EvalResult."""
    (train_loader, val_loader), processes = loaders, session.processes
    train_loader.set_epoch(epoch)
    val_loader.set_epoch(epoch)
    torch.manual_seed(epoch_seed(config.seed, epoch, 500 + processes.rank))  # dropout, augmentation
    epoch_start, lr = time.perf_counter(), training.optimizer.param_groups[-1]["lr"]  # the head's: --lr
    stats = train_one_epoch(training, train_loader, f"epoch {epoch}/{config.epochs}", session.progress)
    loss_sum, images = distributed.sum_over_ranks([stats["loss_sum"], stats["images"]], processes, session.device)
    distributed.share_buffers(eval_model, processes)
    result = evaluate_batches(eval_model, val_loader, session.device, "val", session.progress, session.settings,
                              processes, multilabel=config.task == "multilabel")
    row = {"epoch": epoch, "train_loss": loss_sum / max(images, 1), "val_loss": result.loss,
           "val_acc": result.accuracy, "lr": lr, **loader_sizes(train_loader, val_loader, config),
           "epoch_seconds": time.perf_counter() - epoch_start,
           "train_images_per_s": images / max(stats["seconds"], 1e-9)}
    if config.task == "multilabel":
        row["val_map"] = result.map or 0.0
    return row, result


def loader_sizes(train_loader, val_loader, config):
    """This epoch's training and val image sizes (they change with progressive resizing)."""
    return {"image_size": getattr(train_loader, "size", config.image_size),
            "eval_image_size": getattr(val_loader, "size", eval_image_size(config))}


def restore(previous, training):
    """Load a last.pt Checkpoint's state into `training`; the Progress it had made."""
    state = previous.state
    try:
        if state is None:
            raise KeyError("optimizer, scheduler, rng, history")
        training.model.load_state_dict(previous.weights)
        training.optimizer.load_state_dict(state.optimizer)
        training.scheduler.load_state_dict(state.scheduler)
        if training.ema is not None:
            training.ema.load_state_dict(state.ema)
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
        raise UserError(f"last.pt does not fit this run's model and settings ({one_line(err, 160)})") from None
    if state.scaler and training.scaler.is_enabled():
        training.scaler.load_state_dict(state.scaler)
    restore_rng_state(state.rng)
    return Progress(history=list(state.history), best_acc=state.best_acc, best_epoch=state.best_epoch)


def save_epoch(run, spec, progress, training):
    """best.pt when this epoch is the best so far, then last.pt, metrics.csv and curves.png.

    best.pt's weights are the ones val scored: the averaged ones when the recipe keeps an average.
    `spec` is the InferenceSpec at this epoch's val size.
    """
    t, row, folder = training, progress.history[-1], run.folder
    saved = saved_settings(run.config, run.facts)
    if progress.best_epoch == row["epoch"]:
        save_checkpoint(folder.best, Checkpoint(spec=spec, weights=(t.ema.model if t.ema else t.model).state_dict(),
                                                epoch=row["epoch"], val_acc=row["val_acc"], config=saved))
    state = TrainingState(optimizer=t.optimizer.state_dict(), scheduler=t.scheduler.state_dict(), rng=rng_state(),
                          history=progress.history, best_acc=progress.best_acc, best_epoch=progress.best_epoch,
                          scaler=t.scaler.state_dict() if t.scaler.is_enabled() else None,
                          ema=t.ema.state_dict() if t.ema else None)
    save_checkpoint(folder.last, Checkpoint(spec=spec, weights=t.model.state_dict(), epoch=row["epoch"],
                                            val_acc=row["val_acc"], config=saved, state=state))
    folder.write_metrics(progress.history)
    plot_curves(progress.history, folder / "curves.png",
                title=f"{folder.path.name}: {run.config.model}, recipe {run.config.recipe}")


def format_epoch(row, epochs, improved):
    return (f"epoch {row['epoch']:>3}/{epochs}  train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
            f"val_acc {row['val_acc']:.4f}  " + (f"val_map {row['val_map']:.4f}  " if "val_map" in row else "")
            + f"lr {row['lr']:.3g}  {row['epoch_seconds']:.1f} s  "
            f"{row['train_images_per_s']:.1f} img/s" + ("  *best" if improved else ""))
