"""What each stage's table of a pipeline TOML may hold, and its keys as the stage command's flags.

A table's keys are the flags of its `hardaug` subcommand without the dashes: the fields of the engine's
config classes (their flags come from `engine.options`) and a few options of the command itself, written out
here (`EXTRAS`: data columns, job and report switches, compare's arms). `table_argv` renders a table in its
own order, so a stage's command line, and with it the stage's cache key, is the table as written.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.augment.backtranslate import BacktranslateConfig
from engine.augment.eda import EdaConfig
from engine.augment.paraphrase import ParaphraseConfig
from engine.config import COMPARE_TRANSFORMER, AnalysisConfig, CompareConfig, OofConfig, TfidfConfig, TransformerConfig
from engine.errors import InputError
from engine.experiment_cells import only_cells
from engine.filters.config import FilterConfig
from engine.mine import PRESETS, STEP_FLAGS, steps_from_flags
from engine.options import SAME, _base_type, comma_list, flag_fields, flag_name, positive_int, to_argv
from engine.weights import SCHEMES

# How a command option that no config holds takes a TOML value: VALUE one value (`--x 3`), LIST one
# comma-separated value (a list or a string), SWITCH an off-by-default switch (true -> `--x`, false ->
# nothing), APPEND the flag once per list item.
VALUE, LIST, SWITCH, APPEND = "value", "list", "switch", "append"
STEP = "step"  # a selection step without a value: true -> `--x`; false cannot be said
COLUMNS = {"text-col": VALUE, "label-col": VALUE, "id-col": VALUE}
JOB = {"restart": SWITCH}
# Where a stage runs ([cluster]); each command takes the ones it has a use for
RAY, REPLICAS, GPUS = {"ray": VALUE}, {"replicas": VALUE}, {"gpus-per-replica": VALUE}
# compare's transformers cells use the oof recipe's flags (max_grad_norm has none); as engine/cli/compare.py
COMPARE_TRANSFORMER_FLAGS = tuple(name for name in COMPARE_TRANSFORMER if name != "max_grad_norm")


@dataclasses.dataclass(frozen=True)
class Command:
    """A stage's `hardaug` subcommand as a table sees it: its config classes (each with the fields that
    have flags on this command, None = all), its other options, and the [cluster] options it takes."""

    configs: tuple[tuple[type, tuple[str, ...] | None], ...]
    extras: Mapping[str, str]
    cluster: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def flags(self) -> dict[str, tuple[type, Any]]:
        """Every flag of a config field -> (its config class, (field, spec))."""
        out = {}
        for cls, names in self.configs:
            for flag, (field, spec) in flag_fields(cls).items():
                if names is None or field.name in names:
                    out[flag] = (cls, (field, spec))
        return out


_AUGMENTER = {**COLUMNS, **JOB}
COMMANDS: dict[str, Command] = {
    "oof": Command(
        ((OofConfig, ("backend", "n_folds", "seed")), (TfidfConfig, None), (TransformerConfig, None)),
        {**COLUMNS, "processes": VALUE, **JOB, "only-folds": LIST},
        RAY,
    ),
    "mine": Command(
        ((AnalysisConfig, ("tokenizer", "n_examples")),),
        {
            **COLUMNS,
            "prob-cols": LIST,
            "class-names": LIST,
            "renormalize": SWITCH,
            "no-label-issues": SWITCH,
            "weights": VALUE,
            "per-class": SWITCH,
            "test": VALUE,
            "no-test-overlap": SWITCH,
            "report": VALUE,
            "no-report": SWITCH,
        },
    ),
    "filter": Command(
        ((FilterConfig, None),),
        {"sources": VALUE, **COLUMNS, "save-label-model": VALUE, **JOB},
        {**RAY, **REPLICAS, **GPUS},
    ),
    "compare": Command(
        (
            (
                CompareConfig,
                (
                    "budget_share",
                    "relabel_confidence",
                    "weights",
                    "combine",
                    "seeds",
                    "bootstrap",
                    "confident_threshold",
                    "backend",
                ),
            ),
            (TransformerConfig, COMPARE_TRANSFORMER_FLAGS),
        ),
        {
            "budget": APPEND,
            "cleaning": LIST,
            "class-names": LIST,
            "drop-test-overlap": SWITCH,
            "text-col": VALUE,
            "label-col": VALUE,
            "only-cells": VALUE,  # `0,3,5` or `i/N`: a string
        },
        {**RAY, **REPLICAS},
    ),
    "eda": Command(
        ((EdaConfig, None),), {**COLUMNS, "threads": VALUE, "chunk-size": VALUE, **JOB}, {**RAY, **REPLICAS}
    ),
    "backtranslate": Command(
        ((BacktranslateConfig, None),), {**COLUMNS, "chunk-size": VALUE, **JOB}, {**RAY, **REPLICAS, **GPUS}
    ),
    "paraphrase": Command(
        ((ParaphraseConfig, None),), {**COLUMNS, "chunk-size": VALUE, **JOB}, {**RAY, **REPLICAS, **GPUS}
    ),
}
# mine's selection steps (and --preset, which names a chain of them) -> whether the flag takes a value; given
# in `select` or [strategies], in the order they apply: a key of [mine] naming one is refused at load
STEP_OPTIONS = {"--preset": True, **{step.flag: step.type is not None for step in STEP_FLAGS}}


def table_argv(
    path: Path, where: str, table: Mapping[str, Any], command: str, owned: Sequence[str]
) -> tuple[list[str], dict[str, str]]:
    """[where] -> the flags of `hardaug COMMAND`, in the table's order, and which key each flag came from.

    `key = value` -> `--key value`; `true` -> `--key`; `false` -> `--no-key` for an option that has both
    forms, nothing for a switch that is off by default, refused where false cannot be said; a list -> the
    option repeated where it collects values, one comma-separated value where the option takes a list,
    refused elsewhere (so `seeds = [0, 1]` means seeds 0 and 1, never only the last)."""
    spec = COMMANDS[command]
    by_flag = spec.flags()
    extras = {**spec.extras, **spec.cluster}
    argv: list[str] = []
    keys: dict[str, str] = {}
    for key, value in table.items():
        flag = "--" + key.replace("_", "-")
        at = f"{path}: [{where}] {key}"
        if flag in owned:
            raise InputError(
                f"{at}: set by the pipeline ({flag} is a data file from [data] or the stage's own folder); remove it."
            )
        if flag in by_flag:
            cls, (field, flagged) = by_flag[flag]
            try:
                argv += to_argv(cls, {key: value}, where=where)
            except InputError as exc:
                raise InputError(f"{path}: {exc}") from None
            positive = flag_name(field, flagged)
            keys.update({positive: key, **({"--no-" + positive[2:]: key} if flagged.negatable else {})})
        elif flag[2:] in extras:
            argv += _extra_argv(at, key, flag, value, extras[flag[2:]])
            keys[flag] = key
        elif command == "mine" and flag in STEP_OPTIONS:
            argv += _extra_argv(at, key, flag, value, VALUE if STEP_OPTIONS[flag] else STEP)
            keys[flag] = key
        else:
            choices = [f[2:] for f in by_flag if f not in owned] + list(extras)
            if command == "mine":
                choices += [f[2:] for f in STEP_OPTIONS]  # refused at load, as a selection step
            close = difflib.get_close_matches(key.replace("_", "-"), choices, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; see hardaug {command} --help"
            raise InputError(f"{path}: unknown key '{key}' in [{where}]{hint}")
    return argv, keys


def _extra_argv(at: str, key: str, flag: str, value: Any, kind: str) -> list[str]:
    if isinstance(value, bool):
        if kind not in (SWITCH, STEP):
            raise InputError(f"{at} = {str(value).lower()}: {flag} takes a value, not true/false.")
        if kind == STEP and not value:
            raise InputError(f"{at} = false: {flag} cannot be turned off; remove the key.")
        return [flag] if value else []  # false is the switch's default: nothing to pass
    if kind in (SWITCH, STEP):
        raise InputError(f"{at} = {value!r}: {flag} is a switch; write {key} = true (or remove the key).")
    if isinstance(value, dict):
        raise InputError(f"{at}: a table; expected a value for {flag}.")
    if isinstance(value, list):
        if not value or any(isinstance(v, bool | list | dict) for v in value):
            raise InputError(f"{at} = {value!r}: expected a non-empty list of numbers or strings.")
        items = [_text(v) for v in value]
        if kind == APPEND:
            return [part for item in items for part in (flag, item)]
        if kind == LIST and not any("," in item for item in items):
            return [flag, ",".join(items)]
        raise InputError(f"{at} = {value!r}: {flag} takes one value, not a list.")
    return [flag, _text(value)]


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------------------------
# A table's flags as the values the stage will run with: its engine config and its command's other options


def _fold_ids(value: str) -> tuple[int, ...]:
    try:
        ids = tuple(int(v) for v in comma_list(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fold ids like 0,4,8, got {value!r}") from None
    return ids


# the other options' types, as each command reads them (default: the text as it is)
EXTRA_TYPES: dict[str, Callable[[str], Any]] = {
    "processes": positive_int,
    "threads": positive_int,
    "chunk-size": positive_int,
    "replicas": positive_int,
    "gpus-per-replica": positive_int,
    "only-folds": _fold_ids,
    "only-cells": only_cells,
    "prob-cols": comma_list,
    "class-names": comma_list,
    "cleaning": comma_list,
    "test": Path,
    "report": Path,
    "sources": Path,
    "save-label-model": Path,
}
EXTRA_CHOICES = {"weights": SCHEMES}


@dataclasses.dataclass(frozen=True)
class StageOptions:
    """A stage table read as its command will read it: `config` the engine's config (mine: its report's),
    `given` the command's other options the table set (by their attribute name: text_col, class_names, ...;
    `get` gives the default the pipeline assumes for the rest), and for mine the selection `steps` made from
    select or a strategy (engine.mine.steps_from_flags) and the presets they name."""

    config: Any
    given: Mapping[str, Any]
    steps: tuple = ()
    presets: tuple[str, ...] = ()

    def get(self, name: str) -> Any:
        return self.given.get(name, DEFAULTS.get(name))


# what the pipeline reads of the other options, where a table leaves them out
DEFAULTS = {"text_col": "text", "label_col": "label", "id_col": "id", "budget": []}


def _invalid(flag: str, text: str, parse: Any, exc: Exception) -> str:
    if isinstance(exc, argparse.ArgumentTypeError):
        return f"argument {flag}: {exc}"
    return f"argument {flag}: invalid {getattr(parse, '__name__', 'value')} value: {text!r}"


def _read(flag: str, text: str, parse: Callable[[str], Any], choices: Sequence[str] | None = None) -> Any:
    """One flag's text as its command reads it; _Refused, in argparse's words, where the command refuses it."""
    try:
        value = parse(text)
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise _Refused(_invalid(flag, text, parse, exc)) from None
    if choices is not None and value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise _Refused(f"argument {flag}: invalid choice: {text!r} (choose from {shown})")
    return value


class _Refused(Exception):
    """A flag's value its command would refuse (the message names the flag)."""


def build_stage(path: Path, where: str, table: Mapping[str, Any], command: str, argv: Sequence[str]) -> StageOptions:
    """The stage's options from `argv` (the table's flags, as `table_argv` rendered them), its engine
    config built and checked: a refusal names [where] and the key."""
    spec = COMMANDS[command]
    by_flag = spec.flags()
    extras = {**spec.extras, **spec.cluster}
    values: dict[type, dict[str, Any]] = {cls: {} for cls, _ in spec.configs}
    given: dict[str, Any] = {}
    words = list(argv)
    i = 0
    while i < len(words):
        flag = words[i]
        key = flag[2:]
        try:
            if flag in by_flag:
                cls, (field, flagged) = by_flag[flag]
                kind = _base_type(cls, field)
                if kind is bool:
                    value: Any = not (
                        flagged.negatable and flag.startswith("--no-") and flag != flag_name(field, flagged)
                    )
                    i += 1
                else:
                    parse = str if flagged.action is not None else flagged.type or kind  # as add_options
                    value = _read(flag, words[i + 1], parse, flagged.choices)
                    if flagged.action == "append":
                        value = [*values[cls].get(field.name, []), value]
                    i += 2
                values[cls][field.name] = value
                continue
            kind = extras[key]
            name = key.replace("-", "_")
            if kind == SWITCH:
                given[name] = True
                i += 1
                continue
            value = _read(flag, words[i + 1], EXTRA_TYPES.get(key, str), EXTRA_CHOICES.get(key))
            given[name] = [*given.get(name, []), value] if kind == APPEND else value
            i += 2
        except _Refused as exc:
            at = next((k for k in table if "--" + k.replace("_", "-") in (flag, "--no-" + key)), None)
            shown = f"[{where}] {at} = {table[at]!r}" if at is not None else f"[{where}]"
            raise InputError(f"{path}: {shown}: {exc} (see hardaug {command} --help).") from None
    try:
        config = _config(command, spec, values)
    except InputError as exc:  # a config refusing a value; anything else is a bug and keeps its traceback
        raise InputError(f"{path}: [{where}]: {exc}") from None
    return StageOptions(config, given)


def _config(command: str, spec: Command, values: Mapping[type, Mapping[str, Any]]) -> Any:
    """The engine config the command builds from these flag values (what each command's build_config does)."""
    built = {}
    for cls, names in spec.configs:
        fields = {}
        for flag, (field, flagged) in flag_fields(cls).items():
            if (names is not None and field.name not in names) or (flag.startswith("--no-") and flagged.negatable):
                continue
            default = field.default if flagged.cli_default is SAME else flagged.cli_default
            value = values[cls].get(field.name, default)
            if value is dataclasses.MISSING:
                raise InputError(f"{flag} is required: set {flag[2:]} = ...")
            fields[field.name] = flagged.convert(value) if flagged.convert is not None else value
        built[cls] = fields
    if command == "oof":
        tfidf, transformer = TfidfConfig(**built[TfidfConfig]), TransformerConfig(**built[TransformerConfig])
        return OofConfig(**built[OofConfig], tfidf=tfidf, transformer=transformer)
    if command == "compare":
        transformer = TransformerConfig(**built[TransformerConfig])
        return CompareConfig(**built[CompareConfig], tfidf=CompareConfig().tfidf, transformer=transformer)
    ((cls, _),) = spec.configs
    return cls(**built[cls])


def build_selection(path: Path, at: str, words: Sequence[str], mine: StageOptions) -> StageOptions:
    """mine's selection steps (`words`: flags of engine.mine.STEP_FLAGS, --preset and --per-class), read in
    their order as `hardaug mine` reads them, onto the [mine] options `mine`; `at` names where they are
    written ("[mine] select", "[strategies] NAME")."""
    makers = {step.flag: step for step in STEP_FLAGS}
    made: list = []
    presets: list[str] = []
    per_class = bool(mine.get("per_class"))
    i = 0
    try:
        while i < len(words):
            flag, eq, text = words[i].partition("=")
            if flag == "--per-class" and not eq:
                per_class, i = True, i + 1
                continue
            if flag not in STEP_OPTIONS:
                what = "not a selection step; set it as a key of [mine]" if flag.startswith("--") else "not an option"
                raise _Refused(f"unrecognized arguments: {words[i]} ({what})")
            if not STEP_OPTIONS[flag]:
                made.append(makers[flag].make(None))
                i += 1
                continue
            if not eq:
                if i + 1 >= len(words) or words[i + 1].startswith("--"):
                    raise _Refused(f"argument {flag}: expected one argument")
                text, i = words[i + 1], i + 1
            i += 1
            if flag == "--preset":
                _read(flag, text, str, sorted(PRESETS))
                made += list(PRESETS[text])
                presets.append(text)
                continue
            value = _read(flag, text, makers[flag].type)
            try:
                step = makers[flag].make(value)
            except InputError as exc:  # a step that checks its own values
                raise _Refused(f"{flag}: {exc}") from None
            made += step if isinstance(step, list) else [step]
    except _Refused as exc:
        raise InputError(f"{path}: {at} = {' '.join(words)!r}: {exc} (see hardaug mine --help).") from None
    given = {**mine.given, "per_class": per_class}
    return StageOptions(mine.config, given, tuple(steps_from_flags(made, per_class=per_class)), tuple(presets))
