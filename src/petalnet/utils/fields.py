"""Typed settings: each one a dataclass field that carries its help, its allowed values and its range.

    @dataclass(frozen=True)
    class Example:
        lr: float = setting(2e-4, "learning rate", above=0)
        optimizer: str = setting("adam", "adam or sgd", choices=("adam", "sgd"))

    check_fields(Example(lr=-1.0))   # SettingError: lr must be greater than 0, got -1.0
    add_flags(parser, Example)       # --lr, --optimizer: type, help and choices from the fields
    from_dict(Example, saved)        # known keys only, lists back to tuples

A SettingError names the setting as the Python API spells it (`lr`); the command line prints it as its
flag (`--lr`). Settings are checked here, in one place, and nowhere else.
"""

import argparse
import dataclasses
import types
import typing

from petalnet.errors import UserError


class SettingError(UserError):
    """A setting outside its allowed values. `sentence` holds {} where the setting's name goes: the Python
    API shows the name (`batch_size`), the command line its flag (`--batch-size`)."""

    def __init__(self, setting, sentence):
        super().__init__(sentence.format(setting))
        self.setting, self.sentence = setting, sentence

    def __reduce__(self):  # pickled (torchrun: sent from rank 0 to the others) with both arguments
        return type(self), (self.setting, self.sentence)

    def as_flag(self):
        return self.sentence.format("--" + self.setting.replace("_", "-"))


def setting(default, help, choices=None, at_least=None, above=None, at_most=None, below=None, flag=True):
    """A dataclass field with its help text, allowed values or range (None: no bound), and whether the
    command line has a flag for it."""
    bounds = {"at_least": at_least, "above": above, "at_most": at_most, "below": below}
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "flag": flag,
                                                        "bounds": {k: v for k, v in bounds.items() if v is not None}})


def check_number(name, value, at_least=None, above=None, at_most=None, below=None):
    """Raise SettingError unless `value` is within the bounds (a function argument's check)."""
    _check_bounds(name, value, {"at_least": at_least, "above": above, "at_most": at_most, "below": below})


def check_choice(name, value, choices):
    if value not in choices:
        raise SettingError(name, f"unknown {{}} '{value}': choose from {', '.join(map(str, choices))}")


def check_fields(obj):
    """Check every field of a settings dataclass against its declared choices and bounds."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, meta = getattr(obj, f.name), f.metadata
        _check_type(f.name, value, hints[f.name])
        if meta.get("choices") is not None and value is not None:
            check_choice(f.name, value, meta["choices"])
        if meta.get("bounds") and value is not None:
            for item in value if isinstance(value, tuple) else (value,):
                _check_bounds(f.name, item, meta["bounds"])


def _check_type(name, value, hint):
    """`value` is of the field's type: int, float (an int will do), str, bool, a tuple of n numbers, or
    any of these or None (Optional)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None:
            return
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        kinds = typing.get_args(hint)
        if not (isinstance(value, tuple) and len(value) == len(kinds) and all(map(_is_a, value, kinds))):
            raise SettingError(name, f"{{}} must be a tuple of {len(kinds)} numbers, got {value!r}")
    elif not _is_a(value, hint):
        kind = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}.get(hint, hint)
        raise SettingError(name, f"{{}} must be {kind}, got {value!r}")


def _is_a(value, kind):
    if kind in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if kind is float else kind)


def _shown(value):
    return list(value) if isinstance(value, tuple) else value


_TESTS = {"at_least": lambda v, b: v >= b, "above": lambda v, b: v > b, "at_most": lambda v, b: v <= b,
          "below": lambda v, b: v < b}


def _check_bounds(name, value, bounds):
    bounds = {kind: bound for kind, bound in bounds.items() if bound is not None}
    if any(not _TESTS[kind](value, bound) for kind, bound in bounds.items()) or value != value:  # NaN
        raise SettingError(name, f"{{}} must be {_range_text(bounds)}, got {value}")


def _range_text(bounds):
    """"at least 1", "0 or more", "greater than 0", "in [0, 1)", "between 0 and 1" (both ends open)."""
    low = ("[", bounds["at_least"]) if "at_least" in bounds else ("(", bounds["above"]) if "above" in bounds else None
    high = ("]", bounds["at_most"]) if "at_most" in bounds else (")", bounds["below"]) if "below" in bounds else None
    if low and high:
        return f"between {low[1]} and {high[1]}" if (low[0], high[0]) == ("(", ")") else \
            f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"{low[1]} or more" if low == ("[", 0) else f"at least {low[1]}" if low[0] == "[" else \
            f"greater than {low[1]}"
    return f"at most {high[1]}" if high[0] == "]" else f"less than {high[1]}"


def from_dict(cls, values, defaults=None):
    """An instance of `cls` from plain JSON values: unknown keys ignored, lists made tuples, missing keys
    from `defaults` (an instance) or the class's defaults."""
    base = dataclasses.asdict(defaults) if defaults is not None else {}
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            value = values[f.name]
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
        elif f.name in base:
            kwargs[f.name] = base[f.name]
    return cls(**kwargs)


def to_dict(obj):
    """Plain JSON values (tuples become lists), in field order."""
    return {f.name: _shown(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def on_off(text):
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got '{text}'")
    return text == "on"


def add_flags(parser, cls, default_text="the recipe's"):
    """One flag per field of `cls` that has one: --name-with-dashes, typed, its help and choices shown,
    default None (the caller fills what was not given). `default_text` None: each help shows its field's
    default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("flag", False):
            continue
        kind, nargs = _flag_type(hints[f.name])
        choices = f.metadata.get("choices")
        text = f.metadata["help"] + (f" [{', '.join(map(str, choices))}]" if choices else "")
        shown = default_text if default_text is not None else _shown(f.default)
        text += f" (default: {shown})" if shown not in (None, "") else ""
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, nargs=nargs, help=text.replace("%", "%%"))


def _flag_type(hint):
    """(argparse type, nargs) for a field's type: int, float, str, bool (on/off), tuple of numbers,
    Optional of any of these."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        return args[0], len(args)
    return (on_off if hint is bool else hint), None
