"""utils/fields.py: settings as typed dataclass fields, checked in one place, with their flags."""

import argparse
from dataclasses import dataclass

import pytest

from petalnet.errors import UserError
from petalnet.utils.fields import (SettingError, add_flags, check_choice, check_fields, check_number, check_setting,
                                   from_args, from_dict, given, on_off, setting, setting_like, to_dict)


@dataclass(frozen=True)
class Example:
    lr: float = setting(2e-4, "learning rate", above=0)
    epochs: int = setting(10, "number of epochs", at_least=1)
    optimizer: str = setting("adam", "adam or sgd", choices=("adam", "sgd"))
    crop: tuple[float, float] = setting((0.08, 1.0), "area range", above=0, at_most=1)
    size: int | None = setting(None, "optional size", at_least=16)
    flip: bool = setting(True, "flips: on or off")
    hidden: str = setting("x", "no flag", flag=False)


@pytest.mark.parametrize("values, name, says", [
    ({"lr": -1.0}, "lr", "{} must be greater than 0, got -1.0"),
    ({"lr": float("nan")}, "lr", "{} must be greater than 0, got nan"),
    ({"epochs": 0}, "epochs", "{} must be at least 1, got 0"),
    ({"epochs": "3"}, "epochs", "{} must be an integer, got '3'"),
    ({"epochs": True}, "epochs", "{} must be an integer, got True"),
    ({"optimizer": "rmsprop"}, "optimizer", "unknown {} 'rmsprop': choose from adam, sgd"),
    ({"crop": (0.5,)}, "crop", "{} must be a tuple of 2 numbers"),
    ({"crop": (0.0, 1.0)}, "crop", "{} must be in (0, 1], got 0.0"),
    ({"size": 8}, "size", "{} must be at least 16, got 8"),
    ({"flip": "on"}, "flip", "{} must be true or false"),
])
def test_check_fields_names_the_setting_for_python_and_its_flag_for_the_command_line(values, name, says):
    with pytest.raises(SettingError) as err:
        check_fields(Example(**values))
    assert isinstance(err.value, UserError) and err.value.exit_code == 2 and err.value.setting == name
    assert str(err.value).startswith(says.format(name))
    assert err.value.as_flag().startswith(says.format("--" + name))


def test_valid_values_pass_and_an_int_is_a_float():
    check_fields(Example())
    check_fields(Example(lr=1, size=16, crop=(1, 1), flip=False))


def test_function_arguments_are_checked_the_same_way():
    check_number("topk", 1, at_least=1)
    with pytest.raises(SettingError, match=r"^topk must be at least 1, got 0$"):
        check_number("topk", 0, at_least=1)
    with pytest.raises(SettingError, match=r"^val_fraction must be between 0 and 1, got 1.5$"):
        check_number("val_fraction", 1.5, above=0, below=1)
    with pytest.raises(SettingError) as err:
        check_number("batch_size", -2, at_least=0)
    assert err.value.as_flag() == "--batch-size must be 0 or more, got -2"
    with pytest.raises(SettingError, match="unknown format 'tflite': choose from onnx, torchscript"):
        check_choice("format", "tflite", ("onnx", "torchscript"))


def test_flags_come_from_the_fields():
    parser = argparse.ArgumentParser()
    add_flags(parser, Example)
    args = parser.parse_args(["--lr", "0.1", "--crop", "0.2", "0.9", "--flip", "off", "--size", "32"])
    assert (args.lr, args.crop, args.flip, args.size) == (0.1, [0.2, 0.9], False, 32)
    assert not hasattr(args, "epochs") and not hasattr(args, "hidden")  # not given: the field's default
    assert given(Example, args) == {"lr": 0.1, "crop": (0.2, 0.9), "flip": False, "size": 32}
    assert from_args(Example, args) == Example(lr=0.1, crop=(0.2, 0.9), flip=False, size=32)
    assert "[adam, sgd]" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--epochs", "three"])
    with pytest.raises(argparse.ArgumentTypeError, match="expected on or off, got 'yes'"):
        on_off("yes")


@dataclass(frozen=True)
class Command:
    """A command's settings: positional arguments, a switch, a flag that may say None, a shared field."""
    model: str = setting(None, "the model", positional=1)
    paths: tuple[str, ...] = setting((), "photos", positional="+", metavar="PATH")
    json: bool = setting(False, "print JSON", switch=True)
    limit: float | None = setting(0.9, "a limit or off", above=0, at_most=1,
                                  parse=lambda text: None if text == "off" else float(text))
    out: str = setting(None, "where to write", required=True)
    rate: float = setting_like(Example, "lr", help="a rate like lr")


def test_positionals_switches_and_flags_that_give_none():
    parser = argparse.ArgumentParser()
    add_flags(parser, Command, default_text=None)
    args = parser.parse_args(["m.pt", "a.jpg", "b.jpg", "--json", "--limit", "off", "--out", "x"])
    assert from_args(Command, args) == Command(model="m.pt", paths=("a.jpg", "b.jpg"), json=True, limit=None, out="x")
    plain = from_args(Command, parser.parse_args(["m.pt", "a.jpg", "--out", "x"]))
    assert (plain.json, plain.limit, plain.rate) == (False, 0.9, 2e-4)  # the fields' defaults
    with pytest.raises(SystemExit):
        parser.parse_args(["m.pt", "a.jpg"])  # --out is required
    text = parser.format_help()
    assert "(default: 0.9)" in text and "PATH [PATH ...]" in text
    with pytest.raises(SettingError, match=r"^rate must be greater than 0, got 0$"):  # lr's bound, declared once
        check_fields(Command(model="m", paths=("a",), out="x", rate=0))
    with pytest.raises(SettingError, match=r"^limit must be in \(0, 1\], got 2$"):
        check_setting(Command, "limit", 2)
    check_setting(Command, "limit", None)
    with pytest.raises(SettingError, match="paths must be a tuple"):
        check_fields(Command(model="m", paths="a.jpg", out="x"))


def test_plain_json_and_back():
    saved = {"lr": 0.1, "crop": [0.2, 0.9], "unknown": 1}
    example = from_dict(Example, saved)
    assert example == Example(lr=0.1, crop=(0.2, 0.9))  # lists become tuples, unknown keys are ignored
    assert from_dict(Example, {}, defaults=Example(epochs=3)).epochs == 3  # missing keys from `defaults`
    assert to_dict(example) == {"lr": 0.1, "epochs": 10, "optimizer": "adam", "crop": [0.2, 0.9], "size": None,
                                "flip": True, "hidden": "x"}
    assert list(to_dict(example)) == [name for name in Example.__dataclass_fields__]


def test_every_command_settings_take_paths_and_lists_as_a_caller_has_them(tmp_path):
    """The Python API takes Path objects and lists; the settings keep str and tuples, the fields' types."""
    from petalnet.data.settings import CheckSettings, SplitSettings
    from petalnet.inference.settings import PredictSettings
    from petalnet.serving.settings import ServeSettings
    from petalnet.training.compare import CompareSettings

    made = [CompareSettings(runs=[tmp_path / "a", "b"]), CheckSettings(dir=tmp_path),
            SplitSettings(src=tmp_path, out=tmp_path / "out"), ServeSettings(tls_cert=tmp_path / "c.pem"),
            PredictSettings(model=tmp_path, paths=[tmp_path / "x.jpg"])]
    for settings in made:
        check_fields(settings)
    assert made[0].runs == (str(tmp_path / "a"), "b") and made[1].dir == str(tmp_path)
    assert made[4].paths == (str(tmp_path / "x.jpg"),) and made[3].tls_cert == str(tmp_path / "c.pem")


def test_every_field_of_a_command_settings_is_one_of_its_arguments():
    """A field the command line should give but that no flag gives is a setting documented yet unreachable
    (train's --exclude, --label-column and --allow-paths-outside once were)."""
    from petalnet.cli import build_parser
    from petalnet.config.train import TrainConfig, TrainRequest
    from petalnet.devices.options import DeviceOptions
    from petalnet.inference.settings import IssuesSettings
    from petalnet.utils.fields import arguments

    def subparsers(parser):
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    commands = subparsers(build_parser())
    for parser, classes in ((commands["train"], (TrainRequest, TrainConfig, DeviceOptions)),
                            (subparsers(commands["data"])["issues"], (IssuesSettings,))):
        dests = {action.dest for action in parser._actions}
        for cls in classes:
            assert set(arguments(cls)) <= dests, (cls.__name__, set(arguments(cls)) - dests)
    assert "--from" in subparsers(commands["data"])["issues"].format_help()
