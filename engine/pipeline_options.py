"""What each stage's table of a pipeline TOML may hold, and its keys as the stage command's flags.

A table's keys are the flags of its `hardaug` subcommand without the dashes: the fields of the engine's
config classes (their flags come from `engine.options`) and a few options of the command itself, written out
here (`EXTRAS`: data columns, job and report switches, compare's arms). `table_argv` renders a table in its
own order, so a stage's command line, and with it the stage's cache key, is the table as written.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.augment.backtranslate import BacktranslateConfig
from engine.augment.eda import EdaConfig
from engine.augment.paraphrase import ParaphraseConfig
from engine.config import COMPARE_TRANSFORMER, AnalysisConfig, CompareConfig, OofConfig, TfidfConfig, TransformerConfig
from engine.errors import InputError
from engine.filters.config import FilterConfig
from engine.mine import STEP_FLAGS
from engine.options import flag_fields, flag_name, to_argv

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
