"""An engine's frozen config dataclass as the one place its options are written: default, help text and
command-line flag per field, validation in `__post_init__`.

    @dataclass(frozen=True)
    class Config:
        temperature: float = option(0.9, help="sampling temperature; 0 = greedy", group="sampling")

`add_options(parser, Config)` adds one argparse flag per field (`--temperature`, in the argument group
`sampling`, its help ending in "(default: 0.9)"), `config_from_args(Config, args)` builds the config from
the parsed flags, and `from_dict(Config, mapping, where=...)` builds it from a TOML table or a dict, refusing
unknown keys with a suggestion. vLLM generates its flags from its engine-args dataclasses the same way
(`EngineArgs.add_cli_args`).

Why not tyro, jsonargparse or simple-parsing: each would bring its own help layout and flag conventions
(the `hardaug` flags, their metavars and groups are fixed by the pipeline TOMLs, scripts and the README),
and an import cost that `hardaug --help` pays for every subcommand; this module is plain argparse and
`dataclasses`, and the help reads as before.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from engine.errors import InputError

CLI = "hardaug.cli"  # the metadata key of a field's command-line description
SAME = "<the field's default>"  # Flag.cli_default: the flag's default is the field's


@dataclasses.dataclass(frozen=True)
class Flag:
    """How a config field shows on the command line. `help` gets " (default: X)" appended unless it says
    its default itself, the default is None, or the flag is an off-by-default switch. `convert` maps the
    parsed value to the field's (e.g. a prompt file to its text); `cli_default` is the flag's own default
    where it differs from the field's (None = "not given", resolved by `convert`)."""

    help: str
    flag: str | None = None  # default: --field-name
    dest: str | None = None  # the parsed namespace's attribute; default: the field's name
    group: str | None = None  # argparse argument group title; None = the command's main options
    type: Callable[[str], Any] | None = None  # default: the field's int / float / str / Path
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    action: str | None = None  # "append" for a repeatable flag collected into a tuple
    negatable: bool = False  # a bool field gets --x/--no-x instead of an --x switch
    cli_default: Any = SAME
    convert: Callable[[Any], Any] | None = None
    cli: bool = True  # False: a library/benchmark-only field, no flag


def option(default: Any = dataclasses.MISSING, *, help: str, **flag: Any) -> Any:
    """A config field with its command-line flag (`Flag`'s arguments as keywords)."""
    meta = {CLI: Flag(help=help, **flag)}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _flags(config_cls: type) -> list[tuple[dataclasses.Field, Flag]]:
    return [(f, f.metadata[CLI]) for f in dataclasses.fields(config_cls) if CLI in f.metadata and f.metadata[CLI].cli]


def _base_type(config_cls: type, field: dataclasses.Field) -> Any:
    """int for `int | None`, str for `str`, ...: what argparse converts the flag's text to."""
    hint = typing.get_type_hints(config_cls)[field.name]
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return hint  # tuple[int, ...] stays whole: such a field names its own `type`
    return next(a for a in typing.get_args(hint) if a is not type(None))


def add_options(
    parser: argparse.ArgumentParser,
    config_cls: type,
    groups: dict[str, argparse._ArgumentGroup] | None = None,
    *,
    fields: tuple[str, ...] | None = None,
) -> dict[str, argparse._ArgumentGroup]:
    """One flag per field of `config_cls`, in field order, or only the `fields` named, in that order (for a
    command whose --help places a config's flags among its own, or in an order the field order cannot take
    because a saved config's key order fixes it). Groups are made on first use, or taken from `groups` (those
    of an earlier call, or made by the command), so several calls can fill one group. Returns the groups by
    title, so the command can add its own options to one, or new groups after them."""
    groups = {} if groups is None else groups
    flags = {field.name: (field, spec) for field, spec in _flags(config_cls)}
    for field, spec in flags.values() if fields is None else [flags[name] for name in fields]:
        where = parser if spec.group is None else groups.get(spec.group)
        if where is None:
            where = groups[spec.group] = parser.add_argument_group(spec.group)
        flag = spec.flag or "--" + field.name.replace("_", "-")
        default = field.default if spec.cli_default is SAME else spec.cli_default
        kwargs: dict[str, Any] = {"dest": spec.dest or field.name}
        kind = _base_type(config_cls, field)
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if spec.negatable else "store_true"
            kwargs["default"] = default
        else:
            if spec.action is not None:
                kwargs["action"] = spec.action
            else:
                kwargs["type"] = spec.type or kind
            if field.default is dataclasses.MISSING and spec.cli_default is SAME:
                kwargs["required"] = True
            else:
                kwargs["default"] = default
            if spec.choices is not None:  # argparse shows {a,b,c} as the metavar
                kwargs["choices"] = list(spec.choices)
            if spec.metavar is not None or spec.choices is None:
                kwargs["metavar"] = spec.metavar or flag[2:].replace("-", "_").upper()
        kwargs["help"] = _help(spec, flag, default, kind)
        where.add_argument(flag, **kwargs)
    return groups


def _help(spec: Flag, flag: str, default: Any, kind: Any) -> str:
    if "default" in spec.help or default is None or default is dataclasses.MISSING:
        return spec.help
    if kind is bool:
        return f"{spec.help} (default: {flag if default else '--no-' + flag[2:]})" if spec.negatable else spec.help
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    return f"{spec.help} (default: {shown})"


def config_from_args(config_cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """The config from parsed flags (each `convert`ed); `values` set the fields that have no flag."""
    for field, spec in _flags(config_cls):
        value = getattr(args, spec.dest or field.name)
        values[field.name] = spec.convert(value) if spec.convert is not None else value
    return config_cls(**values)


def from_dict(config_cls: type, mapping: Mapping[str, Any], *, where: str | None = None) -> Any:
    """The config from a TOML table or a dict keyed by field name (dashes read as underscores). Unknown keys
    and values of the wrong kind are refused with the table named; `__post_init__` checks the rest."""
    at = f" in [{where}]" if where else f" for {config_cls.__name__}"
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    values: dict[str, Any] = {}
    for key, value in mapping.items():
        name = key.replace("-", "_")
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(fields)}"
            raise InputError(f"unknown key '{key}'{at}{hint}")
        values[name] = _checked(config_cls, fields[name], key, value, where)
    return config_cls(**values)


def _checked(config_cls: type, field: dataclasses.Field, key: str, value: Any, where: str | None) -> Any:
    """`value` as the field's type: ints are floats too, lists are tuples, strings are paths; anything
    else must match."""
    at = f" in [{where}]" if where else f" for {config_cls.__name__}"
    hint = typing.get_type_hints(config_cls)[field.name]
    kinds = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for kind in kinds:
        origin = typing.get_origin(kind) or kind
        if kind is type(None) and value is None:
            return None
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if origin is tuple and isinstance(value, list | tuple) and all(map(_item_of(kind), value)):
            return tuple(value)
        if origin is str and isinstance(value, str):
            return value
        if origin is Path and isinstance(value, str | Path):
            return Path(value)
        if dataclasses.is_dataclass(origin) and isinstance(value, Mapping):  # a nested table
            return from_dict(origin, value, where=f"{where}.{key}" if where else key)
        if origin not in (bool, int, float, str, tuple) and isinstance(origin, type) and isinstance(value, origin):
            return value  # a config object, a Path
    wanted = " or ".join(_kind_name(k) for k in kinds)
    raise InputError(f"'{key}'{at} must be {wanted}, got {value!r} ({type(value).__name__})")


def _kind_name(kind: Any) -> str:
    if kind is type(None):
        return "None"
    if typing.get_origin(kind) is tuple:
        items = typing.get_args(kind)
        return f"a list of {items[0].__name__}" if len(items) == 2 and items[1] is Ellipsis else "a list"
    return getattr(kind, "__name__", str(kind))


def _item_of(kind: Any) -> Callable[[Any], bool]:
    """Whether a list item fits `tuple[int, ...]`, `tuple[str, ...]`, ... (bools are no numbers here)."""
    items = typing.get_args(kind)
    item = items[0] if len(items) == 2 and items[1] is Ellipsis else None
    if item is int:
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    if item is float:
        return lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    if item is str:
        return lambda v: isinstance(v, str)
    return lambda v: True


def flag_name(field: dataclasses.Field, spec: Flag) -> str:
    """The field's command-line flag: `--folds` for n_folds, `--top-p` for top_p."""
    return spec.flag or "--" + field.name.replace("_", "-")


def flag_fields(config_cls: type) -> dict[str, tuple[dataclasses.Field, Flag]]:
    """Every flag of `config_cls` (with `--no-X` for a negatable X) -> its field and spec."""
    out = {}
    for field, spec in _flags(config_cls):
        flag = flag_name(field, spec)
        out[flag] = (field, spec)
        if spec.negatable:
            out["--no-" + flag[2:]] = (field, spec)
    return out


def to_argv(config_cls: type, values: Any, *, where: str | None = None) -> list[str]:
    """The flags that reproduce `values`, the inverse of `add_options` + `config_from_args`.

    `values` is a config (every flagged field that differs from its default, in field order; a nested
    config field without a flag of its own contributes its flags) or a mapping keyed by flag name without
    the dashes or field name (a pipeline TOML table), rendered in its order: `true` -> `--key`, `false` ->
    `--no-key` or nothing where false is the switch's default, a list -> the flag repeated where it collects
    values, else one comma-separated value. A value that no flag can say is refused naming [where] and the
    key."""
    if dataclasses.is_dataclass(values) and not isinstance(values, type):
        return _config_argv(config_cls, values)
    by_flag = flag_fields(config_cls)
    by_name = {field.name: flag_name(field, spec) for field, spec in _flags(config_cls)}
    argv: list[str] = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if flag not in by_flag:
            flag = by_name.get(key.replace("-", "_"), flag)
        if flag not in by_flag:
            close = difflib.get_close_matches(key.replace("_", "-"), [f[2:] for f in by_flag], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise InputError(f"unknown key '{key}'{f' in [{where}]' if where else ''}{hint}")
        field, spec = by_flag[flag]
        argv += _value_argv(config_cls, field, spec, flag, key, value, f"[{where}] {key}" if where else key)
    return argv


def _value_argv(config_cls: type, field: dataclasses.Field, spec: Flag, flag: str, key: str, value: Any, at: str):
    kind = _base_type(config_cls, field)
    if isinstance(value, bool):
        if kind is not bool:
            raise InputError(f"{at} = {str(value).lower()}: {flag} takes a value, not true/false.")
        if spec.negatable:
            positive = flag_name(field, spec)
            # `guided = false` and `no-guided = true` both mean --no-guided
            return [positive if value == (flag == positive) else "--no-" + positive[2:]]
        if value:
            return [flag]
        if (field.default if spec.cli_default is SAME else spec.cli_default) is False:
            return []  # false is the switch's default: nothing to pass
        raise InputError(f"{at} = false: {flag} cannot be turned off; remove the key.")
    if kind is bool:
        raise InputError(f"{at} = {value!r}: {flag} is a switch; write {key} = true (or remove the key).")
    if isinstance(value, dict):
        raise InputError(f"{at}: a table; expected a value for {flag}.")
    if isinstance(value, list | tuple):
        if not value or any(isinstance(v, bool | list | tuple | dict) for v in value):
            raise InputError(f"{at} = {value!r}: expected a non-empty list of numbers or strings.")
        items = [_text(v) for v in value]
        if spec.action == "append":
            return [part for item in items for part in (flag, item)]
        if typing.get_origin(kind) is tuple or kind is tuple:  # its type reads one comma-separated value
            return [flag, ",".join(items)]
        raise InputError(f"{at} = {value!r}: {flag} takes one value, not a list.")
    return [flag, _text(value)]


def _config_argv(config_cls: type, config: Any) -> list[str]:
    argv: list[str] = []
    for field in dataclasses.fields(config_cls):
        value = getattr(config, field.name)
        spec = field.metadata.get(CLI)
        if spec is None or not spec.cli:
            if dataclasses.is_dataclass(value) and CLI not in field.metadata:
                argv += _config_argv(type(value), value)  # oof's tfidf and transformer: flags of their own
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = dataclasses.MISSING  # required: always given
        if value == default:
            continue
        flag = flag_name(field, spec)
        if spec.convert is not None and _base_type(config_cls, field) is bool:
            # a switch read through convert (--no-dedup-train -> dedup_train=False): given where it gives value
            if spec.convert(True) != value:
                raise ValueError(f"{config_cls.__name__}.{field.name} = {value!r}: no flag says it")
            argv.append(flag)
            continue
        if spec.convert is not None and spec.action != "append":
            raise ValueError(f"{config_cls.__name__}.{field.name}: {flag} is read through a file; no flag says it")
        argv += _value_argv(config_cls, field, spec, flag, field.name, value, field.name)
    return argv


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


# argparse types shared by the engines' flags and the CLI's own options (argparse shows their message)
def positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return n


def non_negative_int(value: str) -> int:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return n


def positive_float(value: str) -> float:
    x = float(value)
    if x <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return x


def comma_list(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, got an empty value")
    return items


def seed_list(value: str) -> tuple[int, ...]:
    """Comma-separated random seeds, integers >= 0 (one flag holds the whole list: --seeds 0,1,2)."""
    try:
        seeds = tuple(int(v) for v in comma_list(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2 (integers >= 0), got {value!r}") from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be integers >= 0, got {value!r}")
    return seeds


def class_ids(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in comma_list(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected class ids like 1,3, got {value!r}") from None


def fraction(value: str) -> float:
    q = float(value)
    if not 0 < q <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value}")
    return q
