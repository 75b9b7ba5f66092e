"""The `petalnet` command line. Each subcommand is a thin layer over a module's function.

    petalnet data get [--source URL|FILE.tgz] [--dest DIR]
    petalnet data check [DIR] [--json]
    petalnet data split [SRC] --out DIR [--val-fraction 0.1] [--seed 0]
    petalnet data issues DATA --out DIR [--folds 5] [--from RUN | --recipe R] [--show 30]
    petalnet models [--json]
    petalnet train [--data DIR] --out RUN [--recipe seed] [--epochs N] ... [--resume | --overwrite]
    petalnet evaluate MODEL [--data DIR] [--json] [--out DIR]
    petalnet predict MODEL PATH... [--topk 3] [--json] [--plot OUT.png] [--explain OUT_DIR] [--csv FILE]
                     [--overwrite] [--sort-into DIR [--min-prob P]]
    petalnet export MODEL --format onnx|torchscript --out FILE [--quantize int8]
    petalnet serve MODEL [--host 127.0.0.1] [--port 8000] [--token-file FILE [--generate-token]] [--tls-cert C
                   --tls-key K] [--max-pending 64] [--request-timeout 30] [--log-format text] ...
    petalnet compare RUN... [--json] [--plot OUT.png [--overwrite]]

Errors a user can cause print one line on stderr and exit 2 (3 when a file cannot be written: disk full,
read-only folder; 4 when another process of a torchrun run died); Ctrl-C exits 130. docs/commands.md lists
every exit code.
"""

import argparse
import dataclasses
import json
import os
import sys

import petalnet
from petalnet.errors import StorageError, UserError, describe_os_error
from petalnet.data.images import UnreadableImage
from petalnet.utils.fields import SettingError, add_flags, from_args, given


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag prints one line (not the usage block) and exits 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def cmd_data_get(args):
    from petalnet.data.download import run_get
    from petalnet.data.settings import GetSettings

    return run_get(from_args(GetSettings, args))


def cmd_data_check(args):
    from petalnet.data.check import run_check
    from petalnet.data.settings import CheckSettings

    return run_check(from_args(CheckSettings, args))


def cmd_data_split(args):
    from petalnet.data.settings import SplitSettings
    from petalnet.data.split import run_split

    return run_split(from_args(SplitSettings, args))


def cmd_data_issues(args):
    from petalnet.inference.label_issues import run_issues
    from petalnet.inference.settings import IssuesSettings

    settings = from_args(IssuesSettings, args)
    if settings.recipe is not None:
        settings = dataclasses.replace(settings, from_run=train_folds_for_issues(settings))
    return run_issues(settings)


def train_folds_for_issues(settings):
    """`data issues --recipe R`: K folds of the recipe trained into DIR/folds (resumed when there); the folder."""
    from pathlib import Path

    from petalnet.training.train import train

    if settings.from_run is not None:
        raise UserError("--recipe trains the folds that --from would name: give one of them")
    run = Path(settings.out) / "folds"
    resume = (run / "folds.json").is_file()
    print(f"training {settings.folds} folds of recipe {settings.recipe} into {run}"
          + (" (resumed)" if resume else ""), file=sys.stderr)
    train(settings.data, run, recipe=None if resume else settings.recipe, device=settings.device, resume=resume,
          overrides=None if resume else {"seed": settings.seed}, folds=0 if resume else settings.folds,
          label_column=settings.label_column, allow_paths_outside=settings.allow_paths_outside)
    return str(run)


def cmd_train(args):
    from petalnet.config.train import TrainConfig, TrainRequest
    from petalnet.devices.options import DeviceOptions
    from petalnet.training.train import train

    try:
        train(**dataclasses.asdict(from_args(TrainRequest, args)), overrides=given(TrainConfig, args),
              options=from_args(DeviceOptions, args))
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every process gets Ctrl-C: rank 0 speaks
            folds = getattr(args, "folds", 0) or os.path.isfile(os.path.join(args.out, "folds.json"))
            held = "each fold's last.pt holds its" if folds else f"{args.out}/last.pt holds the"
            print(f"\ninterrupted: {held} last finished epoch; continue with "
                  f"'petalnet train --out {args.out} --resume'", file=sys.stderr)
        return 130


def cmd_predict(args):
    from petalnet.inference.predict import run_predict
    from petalnet.inference.settings import PredictSettings

    return run_predict(from_args(PredictSettings, args))


def cmd_evaluate(args):
    from petalnet.inference.evaluate import run_evaluate
    from petalnet.inference.settings import EvaluateSettings

    return run_evaluate(from_args(EvaluateSettings, args))


def cmd_export(args):
    from petalnet.inference.export import run_export
    from petalnet.inference.settings import ExportSettings

    return run_export(from_args(ExportSettings, args))


def cmd_serve(args):
    from petalnet.serving.server import run_server
    from petalnet.serving.settings import ServeSettings

    return run_server(args.model, from_args(ServeSettings, args))


def cmd_compare(args):
    from petalnet.training.compare import CompareSettings, run_compare

    return run_compare(from_args(CompareSettings, args))


def cmd_models(args):
    from petalnet.models.catalog import format_table, model_rows

    rows = model_rows()
    print(json.dumps([dataclasses.asdict(r) for r in rows]) if args.json else format_table(rows))


def add_data_commands(sub):
    from petalnet.data.settings import CheckSettings, GetSettings, SplitSettings
    from petalnet.inference.settings import IssuesSettings

    data = sub.add_parser("data", help="get, check and split photos; find wrong labels")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=OneLineParser)
    commands = [("get", GetSettings, cmd_data_get, "download (or unpack) flower_photos and check it"),
                ("check", CheckSettings, cmd_data_check, "count photos, find unreadable files and duplicates"),
                ("split", SplitSettings, cmd_data_split, "write a train/val layout of hard links"),
                ("issues", IssuesSettings, cmd_data_issues, "find wrong labels, outliers and copies given different "
                 "labels; write a corrected manifest")]
    for name, settings, function, text in commands:
        command = data_sub.add_parser(name, help=text)
        add_flags(command, settings, default_text=None)
        command.set_defaults(func=function)


def add_train_command(sub):
    """The train flags: TrainRequest's fields, TrainConfig's (what a run learns) and DeviceOptions' (how fast
    it runs here)."""
    from petalnet.config.train import TrainConfig, TrainRequest
    from petalnet.devices.options import DeviceOptions

    train = sub.add_parser("train", help="train a model into a run folder")
    add_flags(train, TrainRequest, default_text=None, only=("data", "label_column", "allow_paths_outside", "exclude",
                                                            "out", "recipe", "folds", "resume", "overwrite"))
    add_flags(train.add_argument_group("what the run learns (a recipe's values)"), TrainConfig)
    device = train.add_argument_group("how fast it runs on this device (measured defaults, see config.json)")
    add_flags(device, TrainRequest, default_text=None, only=("device",))
    add_flags(device, DeviceOptions, default_text="auto")
    train.set_defaults(func=cmd_train)


def add_use_commands(sub):
    from petalnet.inference.settings import EvaluateSettings, PredictSettings

    predict = sub.add_parser("predict", help="classify photos with a trained model")
    add_flags(predict, PredictSettings, default_text=None)
    predict.set_defaults(func=cmd_predict)
    evaluate = sub.add_parser("evaluate", help="accuracy, per-class metrics, confusion matrix, mistakes")
    add_flags(evaluate, EvaluateSettings, default_text=None)
    evaluate.set_defaults(func=cmd_evaluate)


def add_share_commands(sub):
    from petalnet.inference.settings import ExportSettings
    from petalnet.serving.settings import ServeSettings

    export = sub.add_parser("export", help="write the model as ONNX or TorchScript, checked against PyTorch")
    add_flags(export, ExportSettings, default_text=None)
    export.set_defaults(func=cmd_export)
    serve = sub.add_parser("serve", help="an HTTP API and a web page for a model")
    serve.add_argument("model", help="run folder (uses its best.pt) or checkpoint file")
    add_flags(serve, ServeSettings, default_text=None)
    serve.set_defaults(func=cmd_serve)


def add_compare_command(sub):
    from petalnet.training.compare import CompareSettings

    compare = sub.add_parser("compare", help="runs side by side: best val accuracy, epochs, wall time, speed")
    add_flags(compare, CompareSettings, default_text=None)
    compare.set_defaults(func=cmd_compare)


def build_parser():
    parser = OneLineParser(prog="petalnet", description="Train, evaluate and use image classifiers.")
    parser.add_argument("--version", action="version", version=f"petalnet {petalnet.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_data_commands(sub)
    models = sub.add_parser("models", help="list the networks: parameters, GFLOPs, weights offline or not")
    models.add_argument("--json", action="store_true", help="print the rows as JSON")
    models.set_defaults(func=cmd_models)
    add_train_command(sub)
    add_use_commands(sub)
    add_share_commands(sub)
    add_compare_command(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except UserError as err:
        if not getattr(err, "quiet", False):  # quiet: a torchrun process that leaves the word to a lower rank
            text = err.as_flag() if isinstance(err, SettingError) else err  # the flag, not the API's name
            print(f"petalnet: error: {text}", file=sys.stderr)
        return err.exit_code
    except UnreadableImage as err:  # a photo that broke after it was checked (pil pipeline, mid-epoch)
        print(f"petalnet: error: a photo became unreadable: {err} (run 'petalnet data check')", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\npetalnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `petalnet predict ... | head`
        sys.stderr.close()
        return 1
    except OSError as err:  # disk full, read-only folder, permission: never a traceback
        print(f"petalnet: error: cannot read or write a file: {describe_os_error(err)}", file=sys.stderr)
        return StorageError.exit_code


if __name__ == "__main__":
    sys.exit(main())
