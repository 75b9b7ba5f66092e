"""Typed settings: each one a dataclass field that carries its help, its allowed values and its range.

    @dataclass(frozen=True)
    class Example:
        lr: float = setting(2e-4, "learning rate", above=0)
        optimizer: str = setting("adam", "adam or sgd", choices=("adam", "sgd"))

    check_fields(Example(lr=-1.0))   # SettingError: lr must be greater than 0, got -1.0
    add_flags(parser, Example)       # --lr, --optimizer: type, help and choices from the fields
    from_args(Example, args)         # the parsed command line -> a checked Example (not given: the default)
    from_dict(Example, saved)        # known keys only, lists back to tuples

A field is a flag (--name-with-dashes), a positional argument (`positional="?"`, `"+"` or `1`), a switch
(`switch=True`: a bool flag without a value, such as --json) or none of these (`flag=False`). A field
declared with `setting(dataclasses.MISSING, ...)` has no default: the API must give it, and its flag is required.

A SettingError names the setting as the Python API spells it (`lr`); the command line prints it as its
flag (`--lr`). Settings are checked here, in one place, and nowhere else.
"""

import argparse
import dataclasses
import os
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


class PlainValues:
    """Base of a settings dataclass that the Python API fills with what a caller has at hand: Path objects
    are kept as str, lists as tuples (the fields' types)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _plain(getattr(self, f.name)))


def _plain(value):
    if isinstance(value, list | tuple):
        return tuple(_plain(item) for item in value)
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def setting(default, help, choices=None, at_least=None, above=None, at_most=None, below=None, flag=True,
            positional=None, switch=False, metavar=None, parse=None, required=False, aliases=()):
    """A dataclass field with its help text, allowed values or range (None: no bound), and how the command
    line gives it: a flag (`parse`: the function that reads its text, default its type's; `required`: the
    command needs it), a positional argument (`positional`: its nargs, 1 for exactly one), a switch (a bool
    flag without a value), or nothing (`flag=False`); `aliases`: other spellings of the flag."""
    bounds = {"at_least": at_least, "above": above, "at_most": at_most, "below": below}
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "flag": flag, "positional": positional, "switch": switch,
        "metavar": metavar, "parse": parse, "required": required, "aliases": tuple(aliases),
        "bounds": {k: v for k, v in bounds.items() if v is not None}})


def setting_like(cls, name, **changes):
    """A field declared as `cls`'s field `name` is (default, help, bounds, ...), with `changes`: one
    setting shared by two settings classes is declared once."""
    f = cls.__dataclass_fields__[name]
    meta = {**f.metadata, "bounds": dict(f.metadata["bounds"])}
    default = changes.pop("default", f.default)
    for key, value in changes.items():
        if key in ("at_least", "above", "at_most", "below"):
            meta["bounds"][key] = value
        else:
            meta[key] = value
    return dataclasses.field(default=default, metadata=meta)


def check_setting(cls, name, value):
    """Check one value against the declaration of field `name` of the settings class `cls` (for an API
    that takes the value as an argument): the same check, in the same words, as check_fields."""
    f = cls.__dataclass_fields__[name]
    _check_type(name, value, typing.get_type_hints(cls)[name])
    if f.metadata.get("choices") is not None and value is not None:
        check_choice(name, value, f.metadata["choices"])
    if f.metadata.get("bounds") and value is not None:
        for item in value if isinstance(value, tuple) else (value,):
            _check_bounds(name, item, f.metadata["bounds"])


def check_number(name, value, at_least=None, above=None, at_most=None, below=None):
    """Raise SettingError unless `value` is within the bounds (a function argument's check)."""
    _check_bounds(name, value, {"at_least": at_least, "above": above, "at_most": at_most, "below": below})


def check_choice(name, value, choices):
    if value not in choices:
        raise SettingError(name, f"unknown {{}} '{value}': choose from {', '.join(map(str, choices))}")


def check_fields(obj):
    """Check every field of a settings dataclass against its declared type, choices and bounds."""
    for f in dataclasses.fields(obj):
        check_setting(type(obj), f.name, getattr(obj, f.name))


def _check_type(name, value, hint):
    """`value` is of the field's type: int, float (an int will do), str, bool, a tuple of n numbers, or
    any of these or None (Optional)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None:
            return
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        kinds = typing.get_args(hint)
        if len(kinds) == 2 and kinds[1] is Ellipsis:  # tuple[str, ...]: any number of one kind
            if not (isinstance(value, tuple) and all(_is_a(item, kinds[0]) for item in value)):
                raise SettingError(name, f"{{}} must be a tuple, got {value!r}")
        elif not (isinstance(value, tuple) and len(value) == len(kinds) and all(map(_is_a, value, kinds))):
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


def add_flags(parser, cls, default_text="the recipe's", only=None):
    """One argument per field of `cls` that has one (of the names in `only`, when given): --name-with-dashes
    (typed, its help and choices shown; absent from the parsed namespace unless given), a positional
    argument, or a switch. `default_text` None: each help shows its field's default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not (meta.get("flag") or meta.get("positional") or meta.get("switch")) or (only and f.name not in only):
            continue
        kind, nargs = _flag_type(hints[f.name])
        kind = meta.get("parse") or kind
        choices = meta.get("choices")
        text = (meta["help"] + (f" [{', '.join(map(str, choices))}]" if choices else "")).replace("%", "%%")
        name = "--" + f.name.replace("_", "-")
        if meta.get("positional"):
            parser.add_argument(f.name, type=kind, nargs=None if meta["positional"] == 1 else meta["positional"],
                                metavar=meta.get("metavar"), help=text)
        elif meta.get("switch"):
            parser.add_argument(name, action="store_true", default=argparse.SUPPRESS, help=text)
        else:  # absent from the parsed namespace unless given: a flag may give None (--near-threshold off)
            required = bool(meta.get("required")) or f.default is dataclasses.MISSING  # no default: must be given
            shown = None if required else default_text if default_text is not None else _shown(f.default)
            text += f" (default: {shown})" if shown not in (None, "") else ""
            parser.add_argument(name, *meta.get("aliases", ()), dest=f.name, type=kind, nargs=nargs,
                                metavar=meta.get("metavar"), help=text, required=required, default=argparse.SUPPRESS)


def arguments(cls):
    """The names of the fields of `cls` that the command line gives (flags, positionals, switches)."""
    return [f.name for f in dataclasses.fields(cls)
            if f.metadata.get("flag") or f.metadata.get("positional") or f.metadata.get("switch")]


def given(cls, args):
    """{name: value} of the arguments of `cls` that the parsed command line `args` holds: the flags and
    switches given, the positional arguments not left out."""
    positional = {f.name for f in dataclasses.fields(cls) if f.metadata.get("positional")}
    return {name: _typed(getattr(args, name)) for name in arguments(cls)
            if hasattr(args, name) and (name not in positional or getattr(args, name) is not None)}


def from_args(cls, args, **extra):
    """An instance of `cls` from the parsed command line (a value not given keeps the field's default) and
    `extra` values; unchecked: the function that takes it checks it (check_fields), for the command line and
    the Python API alike."""
    return cls(**{**given(cls, args), **extra})


def _typed(value):
    return tuple(value) if isinstance(value, list) else value


def _flag_type(hint):
    """(argparse type, nargs) for a field's type: int, float, str, bool (on/off), a tuple of n numbers or
    of any number of one kind, Optional of any of these."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        return args[0], "+" if len(args) == 2 and args[1] is Ellipsis else len(args)
    return (on_off if hint is bool else hint), None
