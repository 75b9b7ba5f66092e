"""The `petalnet` command line. Each subcommand is a thin layer over a module's function.

    petalnet data get [--source URL|FILE.tgz] [--dest DIR]
    petalnet data check [DIR] [--json]
    petalnet data split [SRC] --out DIR [--val-fraction 0.1] [--seed 0]
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
from petalnet.config.recipes import DEFAULT_RECIPE, RECIPES
from petalnet.data.images import UnreadableImage
from petalnet.utils.fields import SettingError, add_flags, from_args, given


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag prints one line (not the usage block) and exits 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def cmd_data_get(args):
    from petalnet.data.download import get_dataset

    path = get_dataset(args.source, args.dest)
    print(f"dataset: {path}")
    print(f"use it with: petalnet train --data {path} --out runs/seed   (or export PETALNET_DATA={path})")


def cmd_data_check(args):
    from petalnet.data.check import check_dataset, check_near_threshold, draw_near_pairs, format_report
    from petalnet.utils.plots import picture_format

    check_near_threshold(args.near_threshold)  # bad settings are said before every photo is read
    if args.pairs_picture:
        picture_format(args.pairs_picture)  # a suffix it cannot draw: said before reading every photo
    report = check_dataset(_data_dir(args.dir), near_threshold=args.near_threshold)
    print(json.dumps(report) if args.json else format_report(report))
    if args.pairs_picture:
        shown = draw_near_pairs(report, args.pairs_picture)
        said = (f"near-duplicate pairs: {args.pairs_picture} ({shown} shown)" if shown
                else f"no near-duplicate pairs: {args.pairs_picture} not written")
        print(said, file=sys.stderr if args.json else sys.stdout)
    return 1 if report["unreadable"] else 0


def cmd_data_split(args):
    from petalnet.data.check import check_near_threshold
    from petalnet.data.split import make_split, summarize, write_split_folders

    check_near_threshold(args.near_threshold)
    split = make_split(_data_dir(args.src), args.val_fraction, args.seed, near_threshold=args.near_threshold)
    copied = write_split_folders(split, args.out)
    print(summarize(split))
    how = f"copied {copied} file(s) where hard links failed" if copied else "hard links, no copies"
    print(f"wrote {args.out}/train and {args.out}/val ({how})")


def cmd_train(args):
    from petalnet.config.train import TrainConfig
    from petalnet.devices.options import DeviceOptions
    from petalnet.training.train import train

    try:
        train(data=args.data, out=args.out, recipe=args.recipe, overrides=given(TrainConfig, args), device=args.device,
              resume=args.resume, overwrite=args.overwrite, options=from_args(DeviceOptions, args))
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every process gets Ctrl-C: rank 0 speaks
            print(f"\ninterrupted: {args.out}/last.pt holds the last finished epoch; continue with "
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
    from petalnet.training.compare import run_compare

    return run_compare(args.runs, as_json=args.json, plot=args.plot, overwrite=args.overwrite)


def cmd_models(args):
    from petalnet.models.catalog import format_table, model_rows

    rows = model_rows()
    print(json.dumps([dataclasses.asdict(r) for r in rows]) if args.json else format_table(rows))


def _data_dir(path):
    from petalnet.data.download import default_data_dir

    path = path or default_data_dir()
    if path is None:
        raise UserError("no dataset: pass a folder, set $PETALNET_DATA, or run 'petalnet data get'")
    return path


def add_data_commands(sub):
    data = sub.add_parser("data", help="get, check and split photos")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=OneLineParser)
    get = data_sub.add_parser("get", help="download (or unpack) flower_photos and check it")
    get.add_argument("--source", help="URL or local .tgz (default: the official archive)")
    get.add_argument("--dest", help="folder to put it in (default: $PETALNET_HOME or ~/.cache/petalnet)")
    get.set_defaults(func=cmd_data_get)
    check = data_sub.add_parser("check", help="count photos, find unreadable files and duplicates")
    check.add_argument("dir", nargs="?", help="folder of class folders or train/val (default: $PETALNET_DATA)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    add_near_threshold(check)
    check.add_argument("--pairs-picture", metavar="FILE", help="draw the near-duplicate pairs found (.png, .jpg, "
                       ".pdf, .svg), the least similar first")
    check.set_defaults(func=cmd_data_check)
    split = data_sub.add_parser("split", help="write a train/val layout of hard links")
    split.add_argument("src", nargs="?", help="folder of class folders (default: $PETALNET_DATA)")
    split.add_argument("--out", required=True, help="new folder for train/ and val/")
    split.add_argument("--val-fraction", type=float, default=0.1)
    split.add_argument("--seed", type=int, default=0)
    add_near_threshold(split)
    split.set_defaults(func=cmd_data_split)


def add_near_threshold(parser):
    from petalnet.data.near_duplicates import DEFAULT_THRESHOLD

    parser.add_argument("--near-threshold", type=_threshold_or_off, default=DEFAULT_THRESHOLD, metavar="T",
                        help="photos this similar (0-1] are near-duplicates: resized, recompressed, cropped by a few "
                        f"percent, flipped or grey copies score ~0.95-1 (default: {DEFAULT_THRESHOLD}); off: do not "
                        "look for them (byte-identical copies only)")


def _threshold_or_off(text):
    """A number (its bounds: data/check.py's check_near_threshold) or None for "off"."""
    if text == "off":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a similarity in (0, 1] nor off") from None


def add_train_command(sub):
    """The train flags: TrainConfig's fields (what a run learns) and DeviceOptions' (how fast it runs here)."""
    from petalnet.config.train import TrainConfig
    from petalnet.devices.options import DeviceOptions

    train = sub.add_parser("train", help="train a model into a run folder")
    train.add_argument("--data", help="class folders or train/val layout (default: $PETALNET_DATA)")
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument("--recipe", help=f"one of {', '.join(RECIPES)} (default {DEFAULT_RECIPE})")
    add_flags(train.add_argument_group("what the run learns (a recipe's values)"), TrainConfig)
    device = train.add_argument_group("how fast it runs on this device (measured defaults, see config.json)")
    device.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    add_flags(device, DeviceOptions, default_text="auto")
    train.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run")
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
    compare = sub.add_parser("compare", help="runs side by side: best val accuracy, epochs, wall time, speed")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run folders (each with config.json and metrics.csv)")
    compare.add_argument("--json", action="store_true", help="print the rows as JSON")
    compare.add_argument("--plot", metavar="OUT.png",
                         help="save val accuracy against epochs and wall time here (default: no picture)")
    compare.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
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
