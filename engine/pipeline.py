"""All stages from one TOML file, each cached by its inputs, its options and the hardaug version.

    oof -> mine -> random-sources (the control sample) -> label-model -> for every [augment.<method>]:
    augment the targeted (hard) and the random sources -> filter both -> kept (merged per arm) -> compare

With a [strategies] table, one mine-<name> stage per strategy takes the place of mine, and every strategy is
augmented and filtered like the targeted arm; the one random sample serves every strategy's control.

`load_config` checks the WHOLE file before any work: each table's keys become options of its `hardaug`
subcommand (`key = value` -> `--key value`, `true` -> `--key`, `false` -> `--no-key`, or nothing where false
is the option's default, a list -> a repeated option or one comma-separated value, as the option takes it),
and each table's command line is parsed by that subcommand's own parser, so a typo, a wrong type or a bad
value stops the run naming the table and the key. `plan` turns the config into the ordered list of stages;
`Runner` runs them, each in OUT/stages/<stage>-<key>, and skips a stage whose job (engine.jobs, in the
stage folder's `.stage/`) finished and whose output files are still what it wrote (their digests are in the
done marker: an output edited or deleted by hand makes the stage run again), so a rerun after changing only
the filter threshold reruns only the filters and compare. A killed stage resumes through the stage's own
resumability. `run_pipeline` holds a lock on OUT (OUT/.run/lock): a second run into it is refused, naming
the first.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import itertools
import json
import logging
import math
import os
import re
import shlex
import shutil
import sys
import time
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

import engine
from engine.errors import InputError
from engine.io import write_json, write_parquet
from engine.jobs import Job, file_digest, locked

log = logging.getLogger(__name__)

AUGMENTERS = ("eda", "backtranslate", "paraphrase")
STAGE_JOB = ".stage"  # the stage's job folder inside the stage folder (lock, done marker)
TABLES = ("data", "oof", "mine", "strategies", "random", "augment", "filter", "compare", "cluster")
# [cluster]: where stages run (Ray), given to every stage whose subcommand has the option; not in cache keys
CLUSTER_KEYS = ("ray", "replicas", "gpus_per_replica")
DATA_KEYS = ("train", "test", "predictions", "out", "sizes", "size-seeds")
DATA_FILES = ("train", "test", "predictions")
RANDOM_KEYS = ("factor", "seed")
LABEL_MODEL = "label_model.npz"
# selection steps whose value, in a pipeline's [strategies], names an earlier strategy: its hard.parquet
LIKE_FLAGS = ("--limit-like", "--limit-per-class-like")

# Options the pipeline sets on each subcommand itself (data files and stage folders); a table setting one
# is refused instead of silently competing with the pipeline's value.
OWNED = {
    "oof": ("--train", "--test", "--out-dir"),
    "mine": ("--input", "--out-dir"),
    "filter": ("--input", "--train", "--out", "--rejected", "--summary", "--oof"),
    "compare": ("--train", "--test", "--targeted", "--strategy", "--random", "--all", "--scores", "--out-dir"),
    **{method: ("--input", "--out") for method in AUGMENTERS},
}


@dataclass(frozen=True)
class Output:
    """The file `name` in the folder of the earlier stage `stage`; known once that stage's key is."""

    stage: str
    name: str
    prefix: str = ""  # written in front of the path on the command line, e.g. "NAME=" for compare --strategy


Arg = str | Path | Output


@dataclass(frozen=True)
class Stage:
    """One cached step: the `hardaug` subcommand `argv` (its Path and Output items are the input files), or
    an in-process `task(folder, input files)` over `inputs` with JSON-able `options`. `outputs` are the
    (option, file name) pairs the pipeline adds for the stage's own folder; "" names the folder itself."""

    name: str
    table: str = ""  # the TOML table its options come from, for messages
    argv: tuple[Arg, ...] = ()
    outputs: tuple[tuple[str, str], ...] = ()
    task: Callable[[Path, list[Path]], None] | None = None
    inputs: tuple[Path | Output, ...] = ()
    options: Any = None
    about: str = ""  # what a task does, for the plan
    where: tuple[str, ...] = ()  # [cluster] options: where it runs, not what it writes, so not in its cache key

    def files(self) -> list[Path | Output]:
        return [a for a in self.argv if not isinstance(a, str)] if self.task is None else list(self.inputs)


@dataclass(frozen=True)
class PipelineConfig:
    path: Path
    out: Path
    train: Path
    test: Path
    predictions: Path | None = None  # existing out-of-fold predictions: skip the oof stage
    # table ("oof", "mine", "augment.eda", "filter", "compare") -> its checked command-line options
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # the same options as the subcommand parsed them (placeholders for what the pipeline sets)
    parsed: dict[str, argparse.Namespace] = field(default_factory=dict)
    random_factor: float = 1.5
    random_seed: int = 13
    # table -> the [cluster] options its subcommand takes (--ray auto, --replicas 4, ...)
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # [strategies]: name -> its selection steps (empty: the one strategy "targeted", [mine] select)
    strategies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cleaning: bool = False  # [compare] cleaning: compare gets --scores, for the arms that add no text
    # [data] sizes: the whole pipeline once per training size (ints, "all") and subsample seed (engine.sizes)
    sizes: tuple[int | str, ...] = ()
    size_seeds: tuple[int, ...] = (0,)
    classes: Any = None  # engine.pipeline_data.Classes of the training data, read at load

    @property
    def augmenters(self) -> list[str]:
        return [table.split(".", 1)[1] for table in self.options if table.startswith("augment.")]


# ---------------------------------------------------------------------------------------------------------
# Loading and checking the TOML


def load_config(
    path: str | Path,
    *,
    parsers: Mapping[str, argparse.ArgumentParser],
    default_data: Path,
    overrides: Sequence[str] = (),
) -> PipelineConfig:
    """Read and check a whole pipeline TOML; `parsers` maps each hardaug subcommand to its parser.

    Data files are relative to the TOML file's folder (they travel with it); `out` is relative to the current
    folder, like every output option of hardaug, so the bundled configs (inside the installed package) write
    under ./runs. `overrides` are `TABLE.KEY=VALUE` (hardaug run --set), applied to the file before its
    checks; their [data] files are relative to the current folder, as on any command line. The training
    labels are read to check what depends on them (presets, class ids and names, sizes)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such pipeline file. Start from engine/data/pipelines/cpu.toml.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML ({exc}).") from exc
    for override in overrides:
        apply_override(raw, override)
    for name, value in raw.items():
        if name not in TABLES:
            raise InputError(f"{path}: unknown table [{name}]{_did_you_mean(name, TABLES)}; expected {list(TABLES)}.")
        if not isinstance(value, dict):
            raise InputError(f"{path}: '{name}' must be a table ([{name}]), not a value.")
    augment = raw.get("augment", {})
    if not augment:
        raise InputError(f"{path}: no [augment.<method>] table; add one of {list(AUGMENTERS)}, e.g. [augment.eda].")
    for method, table in augment.items():
        if method not in AUGMENTERS:
            hint = _did_you_mean(method, AUGMENTERS)
            raise InputError(f"{path}: unknown augmenter [augment.{method}]{hint}; expected one of {list(AUGMENTERS)}.")
        if not isinstance(table, dict):
            raise InputError(f"{path}: 'augment.{method}' must be a table ([augment.{method}]), not a value.")

    from engine import sizes as sz

    data_table = dict(raw.get("data", {}))
    sizes, size_seeds = sz.parse_sizes(path, data_table.pop("sizes", None), data_table.pop("size-seeds", None))
    data = _data(data_table, path, default_data)
    if sizes and data["predictions"] is not None:
        raise InputError(
            f"{path}: [data] sizes needs the oof stage (out-of-fold predictions on each subsample); [data] "
            "predictions skips it: remove one of the two."
        )
    factor, seed = _random(raw.get("random", {}), path)
    if data["predictions"] is not None and raw.get("oof"):
        log.warning("%s: [oof] is not used: [data] predictions gives the out-of-fold predictions", path)

    tables = {"mine": "mine", "filter": "filter", "compare": "compare"}
    if data["predictions"] is None:
        tables = {"oof": "oof", **tables}
    tables.update({f"augment.{method}": method for method in augment})
    cluster = _cluster(raw.get("cluster", {}), path)
    options: dict[str, tuple[str, ...]] = {}
    parsed: dict[str, argparse.Namespace] = {}
    placed: dict[str, tuple[str, ...]] = {}
    named = raw.get("strategies")
    cleaning = False
    for where, command in tables.items():
        source = raw.get(where, {}) if "." not in where else augment[command]
        table = dict(source)
        select = table.pop("select", "--preset notebook") if command == "mine" else None
        if command == "mine" and named is not None:
            if "select" in source:
                raise InputError(
                    f"{path}: [mine] select and [strategies] both name selection steps; with [strategies] every "
                    "strategy names its own: move select into [strategies] (e.g. notebook = '--preset notebook')."
                )
            select = None
        if command == "compare" and isinstance(table.get("cleaning"), bool):
            cleaning = table.pop("cleaning")  # true: all three arms; a list of arms is compare's --cleaning
        if command == "compare" and ("weights" in table or "combine" in table) and "cleaning" not in table:
            # the weight arms need the scores; the cleaning arms come with them only when asked for (true)
            table = table if cleaning else {**table, "cleaning": ["none"]}
        argv, keys = table_options(path, where, table, parsers[command], OWNED[command])
        if command == "compare" and "cleaning" in table:
            cleaning = True
        if command == "mine":
            # Selection steps apply in the order given; keys of a table have no order that means anything.
            step_flags = {flag for a in parsers["mine"]._actions if a.dest == "steps" for flag in a.option_strings}
            into = "select = '...'" if named is None else "each strategy of [strategies]"
            for flag in step_flags & keys.keys():
                raise InputError(
                    f"{path}: [mine] {keys[flag]}: a selection step; put it in {into} with the other steps, in "
                    "the order they apply."
                )
        if select is not None:
            steps = selection_steps(path, "[mine] select", select)
            keys.update({word: "select" for word in steps if word.startswith("--")})
            argv += steps
        flags = {flag for action in parsers[command]._actions for flag in action.option_strings}
        usable = {key: value for key, value in cluster.items() if "--" + key.replace("_", "-") in flags}
        on, cluster_keys = table_options(path, "cluster", usable, parsers[command], OWNED[command])
        keys = {**keys, **cluster_keys}
        parsed[where] = check_command(path, where, command, [*argv, *on], keys, {**source, **usable}, parsers[command])
        options[where], placed[where] = tuple(argv), tuple(on)
    strategies: dict[str, tuple[str, ...]] = {}
    selections = {"mine": "[mine] select"}
    if named is not None:
        strategies, by_name = _strategies(path, named, options["mine"], parsers["mine"])
        parsed.update({f"strategies.{name}": args for name, args in by_name.items()})
        selections = {f"strategies.{name}": f"[strategies] {name}" for name in strategies}
    elif any(word in LIKE_FLAGS for word in options["mine"]):
        raise InputError(
            f"{path}: [mine] select: {'/'.join(LIKE_FLAGS)} name an earlier strategy of [strategies]; with one "
            "selection there is none (use --limit N)."
        )
    _check_compare(path, parsed["compare"], list(strategies) or ["targeted"])
    if cleaning and parsed["mine"].no_label_issues:
        raise InputError(
            f"{path}: [compare] cleaning needs the suspected label errors, which [mine] no-label-issues = true "
            "turns off; remove one of the two."
        )
    from engine.pipeline_data import check_with_data, read_classes

    classes = read_classes(path, train=data["train"], predictions=data["predictions"], parsed=parsed)
    check_with_data(path, classes, parsed, selections)
    if sizes:
        sz.check_sizes(path, sizes, classes, folds=parsed["oof"].folds, train=data["train"])
    return PipelineConfig(
        path=path,
        out=data["out"],
        train=data["train"],
        test=data["test"],
        predictions=data["predictions"],
        options=options,
        parsed=parsed,
        random_factor=factor,
        random_seed=seed,
        where=placed,
        strategies=strategies,
        cleaning=cleaning,
        sizes=sizes,
        size_seeds=size_seeds,
        classes=classes,
    )


def apply_override(raw: dict, override: str) -> None:
    """`TABLE.KEY=VALUE` (the table may be dotted: augment.eda.n=2) into the parsed TOML `raw`. VALUE is read
    as a TOML value (2, 0.5, true, [0, 1], "x"), else as a string; [data] files become absolute from the
    current folder, where the person typing the command is."""
    name, eq, text = override.partition("=")
    table, dot, key = name.strip().rpartition(".")
    if not eq or not dot or not table or not key:
        raise InputError(f"--set {override!r}: expected TABLE.KEY=VALUE, e.g. --set oof.folds=3 or data.train=x.csv.")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare word or path: a string
    if table == "data" and key in DATA_FILES and isinstance(value, str):
        value = str(Path(value).expanduser().absolute())
    where = raw
    for part in table.split("."):
        where = where.setdefault(part, {})
        if not isinstance(where, dict):
            raise InputError(f"--set {override!r}: {table!r} is a value in the file, not a table.")
    where[key] = value


def selection_steps(path: Path, at: str, value: Any) -> list[str]:
    """`hardaug mine` selection options, given as one string (or a list of words), as a list of words."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{path}: {at} must be a string of selection options, e.g. '--preset notebook'.")
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise InputError(f"{path}: {at} = {value!r}: {exc}.") from exc


def _strategies(
    path: Path, table: dict, mine: tuple[str, ...], parser: argparse.ArgumentParser
) -> tuple[dict[str, tuple[str, ...]], dict[str, argparse.Namespace]]:
    """[strategies] name = "selection steps": each checked by hardaug mine's parser after the [mine] options;
    returns the steps and the parsed options of each. `--limit-like NAME` names an earlier strategy."""
    from engine.arms import check_strategy_name

    if not table:
        raise InputError(f"{path}: [strategies] is empty; name at least one, e.g. notebook = '--preset notebook'.")
    strategies: dict[str, tuple[str, ...]] = {}
    parsed: dict[str, argparse.Namespace] = {}
    for name, value in table.items():
        at = f"[strategies] {name}"
        try:
            check_strategy_name(name)
        except InputError as exc:
            raise InputError(f"{path}: {at}: {exc}") from None
        steps = selection_steps(path, at, value)
        stray = [word for word in steps if word.startswith("--") and word.split("=", 1)[0] in OWNED["mine"]]
        if stray:
            raise InputError(f"{path}: {at}: {stray[0]} is set by the pipeline; give only selection steps.")
        steps = [part for word in steps for part in _split_like(word)]
        for flag, target in itertools.pairwise(steps):
            if flag in LIKE_FLAGS and target not in strategies:
                earlier = list(strategies) or "none: this is the first"
                raise InputError(
                    f"{path}: {at}: {flag} {target}: expected the name of an earlier strategy (as many rows as its "
                    f"selection); the earlier strategies are {earlier}."
                )
        keys = {word.split("=", 1)[0]: name for word in steps if word.startswith("--")}
        parsed[name] = check_command(path, "strategies", "mine", [*mine, *steps], keys, table, parser)
        strategies[name] = tuple(steps)
    return strategies, parsed


def _split_like(word: str) -> list[str]:
    """`--limit-like=NAME` as two words, so that the pipeline finds NAME to make it a file; others as they are."""
    flag, eq, value = word.partition("=")
    return [flag, value] if eq and flag in LIKE_FLAGS else [word]


def _check_compare(path: Path, args: argparse.Namespace, strategies: list[str]) -> None:
    """What compare would refuse only after every stage ran: a budget for no strategy, unknown cleaning arms."""
    from engine.arms import CLEANING_ARMS

    for name in args.budget:
        if name not in strategies:
            raise InputError(f"{path}: [compare] budget = {name!r}: no such strategy; the strategies are {strategies}.")
    unknown = [arm for arm in args.cleaning or () if arm not in (*CLEANING_ARMS, "none")]
    if unknown:
        raise InputError(f"{path}: [compare] cleaning: unknown arms {unknown}; expected {list(CLEANING_ARMS)}.")
    for pair in args.combine or ():
        if pair.partition("=")[0].strip() not in strategies:
            raise InputError(
                f"{path}: [compare] combine = {pair!r}: no such strategy; the strategies are {strategies}."
            )


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _data(table: dict, path: Path, default_data: Path) -> dict[str, Path | None]:
    for key, value in table.items():
        if key not in DATA_KEYS:
            hint = _did_you_mean(key, DATA_KEYS)
            raise InputError(f"{path}: unknown key '{key}' in [data]{hint}; expected {list(DATA_KEYS)}.")
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{path}: [data] {key} = {value!r}: expected a path in quotes.")
    here = path.parent

    def data_file(key: str, default: Path | None) -> Path | None:
        if key not in table:
            return default
        file = here / Path(table[key]).expanduser()
        if not file.is_file():
            raise InputError(
                f"{path}: [data] {key} = {table[key]!r} is {file}, which does not exist. Paths in [data] are "
                f"relative to the TOML file's folder ({here})."
            )
        return file

    return {
        "train": data_file("train", default_data / "train.csv"),
        "test": data_file("test", default_data / "test.csv"),
        "predictions": data_file("predictions", None),
        "out": Path(table.get("out", "runs/pipeline")).expanduser(),
    }


def _cluster(table: dict, path: Path) -> dict:
    for key in table:
        if key.replace("-", "_") not in CLUSTER_KEYS:
            hint = _did_you_mean(key.replace("-", "_"), CLUSTER_KEYS)
            raise InputError(f"{path}: unknown key '{key}' in [cluster]{hint}; expected {list(CLUSTER_KEYS)}.")
    return dict(table)


def _random(table: dict, path: Path) -> tuple[float, int]:
    for key in table:
        if key not in RANDOM_KEYS:
            hint = _did_you_mean(key, RANDOM_KEYS)
            raise InputError(f"{path}: unknown key '{key}' in [random]{hint}; expected {list(RANDOM_KEYS)}.")
    factor = table.get("factor", PipelineConfig.random_factor)  # the defaults are written once, on PipelineConfig
    seed = table.get("seed", PipelineConfig.random_seed)
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not math.isfinite(factor) or factor <= 0:
        raise InputError(f"{path}: [random] factor = {factor!r}: expected a finite number > 0, e.g. 1.5.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"{path}: [random] seed = {seed!r}: expected a whole number >= 0, e.g. 13.")
    return float(factor), seed


def table_options(
    path: Path, where: str, table: dict, parser: argparse.ArgumentParser, owned: Sequence[str]
) -> tuple[list[str], dict[str, str]]:
    """[where] -> command-line options of `parser`, and which key each option came from.

    `key = value` -> `--key value`; `true` -> `--key`; `false` -> `--no-key` for an option that has both
    forms, nothing for a switch that is off by default, refused where false cannot be said; a list -> the
    option repeated where it collects values, one comma-separated value where the option splits one, refused
    elsewhere (so `seeds = [0, 1]` means seeds 0 and 1, never only the last)."""
    by_flag = {flag: action for action in parser._actions for flag in action.option_strings}
    command = parser.prog.split()[-1]
    argv: list[str] = []
    keys: dict[str, str] = {}
    for key, value in table.items():
        flag = "--" + key.replace("_", "-")
        at = f"{path}: [{where}] {key}"
        if flag in owned:
            raise InputError(
                f"{at}: set by the pipeline ({flag} is a data file from [data] or the stage's own folder); remove it."
            )
        action = by_flag.get(flag)
        if action is None or isinstance(action, argparse._HelpAction | argparse._VersionAction):
            choices = [f[2:] for f, a in by_flag.items() if f.startswith("--") and f not in owned and a.help]
            hint = _did_you_mean(key.replace("_", "-"), choices) or f"; see hardaug {command} --help"
            raise InputError(f"{path}: unknown key '{key}' in [{where}]{hint}")
        keys.update({f: key for f in action.option_strings})
        argv += _option(at, key, flag, value, action)
    return argv, keys


def _option(at: str, key: str, flag: str, value: Any, action: argparse.Action) -> list[str]:
    if isinstance(value, bool):
        if isinstance(action, argparse.BooleanOptionalAction):
            positive = next(f for f in action.option_strings if not f.startswith("--no-"))
            negative = "--no-" + positive[2:]
            # `guided = false` and `no-guided = true` both mean --no-guided
            return [positive if value == (flag == positive) else negative]
        if action.nargs == 0:
            if value:
                return [flag]
            if isinstance(action, argparse._StoreTrueAction) and action.default is False:
                return []  # false is the switch's default: nothing to pass
            raise InputError(f"{at} = false: {flag} cannot be turned off; remove the key.")
        raise InputError(f"{at} = {str(value).lower()}: {flag} takes a value, not true/false.")
    if action.nargs == 0:
        raise InputError(f"{at} = {value!r}: {flag} is a switch; write {key} = true (or remove the key).")
    if isinstance(value, dict):
        raise InputError(f"{at}: a table; expected a value for {flag}.")
    if isinstance(value, list):
        if not value or any(isinstance(v, bool | list | dict) for v in value):
            raise InputError(f"{at} = {value!r}: expected a non-empty list of numbers or strings.")
        items = [_text(v) for v in value]
        if isinstance(action, argparse._AppendAction | argparse._ExtendAction):
            return [part for item in items for part in (flag, item)]
        if action.nargs in ("+", "*") or isinstance(action.nargs, int):
            return [flag, *items]
        joined = ",".join(items)
        if action.type is not None and _splits(action.type, joined, len(items)):
            return [flag, joined]
        raise InputError(f"{at} = {value!r}: {flag} takes one value, not a list.")
    return [flag, _text(value)]


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _splits(parse: Callable[[str], Any], joined: str, n: int) -> bool:
    """Whether the option's type reads `joined` as a list of the n items (a comma-separated option)."""
    try:
        parsed = parse(joined)
    except (argparse.ArgumentTypeError, ValueError, TypeError):
        return False
    return isinstance(parsed, list | tuple) and len(parsed) == n


class _ParseError(Exception):
    pass


def check_command(
    path: Path,
    where: str,
    command: str,
    argv: list[str],
    keys: Mapping[str, str],
    table: Mapping[str, Any],
    parser: argparse.ArgumentParser,
) -> argparse.Namespace:
    """Parse `argv` (with placeholders for what the pipeline sets) as the subcommand will, and build its
    engine config where the subcommand has a `build_config`; a refusal names the table and the key."""

    def fail(message: str) -> None:
        raise _ParseError(message)

    def leave(status: int = 0, message: str | None = None) -> None:  # --help: print nothing, stop
        fail("--help is no option for a stage")

    # The subcommand's parser reports through .error(), which prints usage and exits; here it raises.
    parser.error = fail  # type: ignore[method-assign]
    parser.print_help = lambda file=None: None  # type: ignore[method-assign]
    parser.exit = leave  # type: ignore[method-assign]
    placeholders = [part for flag in OWNED[command] for part in (flag, f"<{flag[2:]}>")]
    placeholders = ["strategy=<strategy>" if p == "<strategy>" else p for p in placeholders]  # reads NAME=FILE
    try:
        namespace = parser.parse_args([*placeholders, *argv])
    except _ParseError as exc:
        message = str(exc)
        found = re.search(r"argument (--[\w-]+)", message) or re.search(r"(--[\w-]+)", message)
        key = keys.get(found.group(1)) if found else None
        at = f"[{where}] {key} = {table[key]!r}" if key in table else f"[{where}] {key}" if key else f"[{where}]"
        raise InputError(f"{path}: {at}: {message} (see hardaug {command} --help).") from None
    build = getattr(sys.modules.get(getattr(namespace.func, "__module__", "")), "build_config", None)
    if build is not None:
        try:
            build(namespace)
        except InputError as exc:  # a config refusing a value; anything else is a bug and keeps its traceback
            raise InputError(f"{path}: [{where}]: {exc}") from None
    return namespace


# ---------------------------------------------------------------------------------------------------------
# The stages


def plan(config: PipelineConfig, emptied: Collection[str] = ()) -> list[Stage]:
    """The stages in the order they run. An arm is a set of sources augmented and filtered alike: the
    targeted arm (the hard samples), or one per [strategies] entry, and the random control.

    One random sample serves every strategy: compare draws each strategy's control from its kept rows, as
    many per method as the strategy kept, so the sample is sized to the largest selection; one random
    augment + filter per method instead of one per strategy.

    `emptied` names the stages whose output had no rows (a mine stage's selection, an augmenter's output, a
    filter's kept rows): what would read that output is left out, and an arm left with no kept rows is not
    compared (`not_compared`)."""
    train, test, opts = config.train, config.test, config.options
    stages: list[Stage] = []
    if config.predictions is None:
        oof = ("oof", "--train", train, "--test", test, *opts["oof"])
        stages.append(Stage("oof", "oof", oof, outputs=(("--out-dir", ""),), where=config.where["oof"]))
        predictions: Path | Output = Output("oof", "oof.parquet")
    else:  # out-of-fold predictions made elsewhere (e.g. the notebook's CSV)
        predictions = config.predictions
    hards: dict[str, Output] = {}
    for name, steps, mine, table in mine_stages(config):
        # The first strategy's stage writes the report and the overlap check; they do not depend on the selection
        # but for its own section, and cost most of mine's time on large data.
        quiet = ("--no-report", "--no-test-overlap") if hards else ()
        # --limit-like NAME: the earlier strategy's selection, a file only that strategy's stage makes
        named = [
            Output(f"mine-{w}", "hard.parquet") if i and steps[i - 1] in LIKE_FLAGS else w for i, w in enumerate(steps)
        ]
        argv = ("mine", "--input", predictions, *opts["mine"], *named, *quiet)
        stages.append(Stage(mine, table, argv, outputs=(("--out-dir", ""),)))
        hards[name] = Output(mine, "hard.parquet")
    scores = Output(next(iter(hards.values())).stage, "scores.parquet")
    stages.append(
        Stage(
            "random-sources",
            "random",
            task=partial(draw_random_sources, factor=config.random_factor, seed=config.random_seed),
            inputs=(scores, *hards.values()),
            options={"factor": config.random_factor, "seed": config.random_seed},
            outputs=(("", "sources.parquet"),),
            about=f"draw {config.random_factor}x as many random training rows as the largest hard.parquet has "
            f"(seed {config.random_seed})",
        )
    )
    arms = {**hards, "random": Output("random-sources", "sources.parquet")}
    arms = {arm: sources for arm, sources in arms.items() if sources.stage not in emptied}

    filter_options: list[Arg] = list(opts["filter"])
    # With the oof stage's folds, each augmentation is judged by the fold model that held its source out.
    folds = predictions if config.predictions is None else None
    label_model = shared_label_model(config.parsed["filter"], train, oof=folds)
    if label_model is not None:
        stages.append(label_model)
        filter_options += ["--label-model", Output(label_model.name, LABEL_MODEL)]
        if folds is not None:
            filter_options += ["--oof", folds]
    kept: dict[str, list[Output]] = {arm: [] for arm in arms}
    for method in config.augmenters:
        for arm, sources in arms.items():
            augment = (method, "--input", sources, *opts[f"augment.{method}"])
            on = config.where[f"augment.{method}"]
            stages.append(
                Stage(f"{method}-{arm}", f"augment.{method}", augment, (("--out", "augmented.parquet"),), where=on)
            )
            if f"{method}-{arm}" in emptied:
                continue
            filtered = ("filter", "--input", Output(f"{method}-{arm}", "augmented.parquet"), "--train", train)
            outputs = (("--out", "kept.parquet"), ("--rejected", "rejected.parquet"))
            filtering = (*filtered, *filter_options)
            stages.append(Stage(f"filter-{method}-{arm}", "filter", filtering, outputs, where=config.where["filter"]))
            if f"filter-{method}-{arm}" not in emptied:
                kept[arm].append(Output(f"filter-{method}-{arm}", "kept.parquet"))

    kept = {arm: paths for arm, paths in kept.items() if paths}
    counts = {arm: len(paths) for arm, paths in kept.items()}
    stages.append(
        Stage(
            "kept",
            task=partial(merge_kept, counts=counts),
            inputs=tuple(path for paths in kept.values() for path in paths),
            options=counts,
            outputs=tuple(("", f"{arm}.parquet") for arm in kept),
            about="merge the kept rows of every method, per arm",
        )
    )
    compared = [arm for arm in kept if arm != "random"]
    if not compared and not config.cleaning:
        return stages  # nothing left to compare: the results say why (not_compared)
    compare: tuple[Arg, ...] = ("compare", "--train", train, "--test", test)
    if config.strategies:
        for name in compared:
            compare += ("--strategy", Output("kept", f"{name}.parquet", prefix=f"{name}="))
    elif compared:
        compare += ("--targeted", Output("kept", "targeted.parquet"))
    if "random" in kept:
        compare += ("--random", Output("kept", "random.parquet"))
    if config.cleaning:
        compare += ("--scores", scores)
    options = _without_budgets(opts["compare"], [name for name in config.strategies if name not in compared])
    stages.append(Stage("compare", "compare", (*compare, *options), outputs=(("--out-dir", ""),)))
    return stages


def _without_budgets(argv: Sequence[str], names: Sequence[str]) -> tuple[str, ...]:
    """compare's options less `--budget NAME` for the strategies not compared."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--budget" and i + 1 < len(argv) and argv[i + 1] in names:
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return tuple(out)


def not_compared(config: PipelineConfig, emptied: Collection[str]) -> dict[str, list[str]]:
    """The arms left with no kept rows, each with the stages that emptied it (a mine stage, or for every
    method the augmenter or filter stage that ended with no rows)."""
    reasons: dict[str, list[str]] = {}
    for arm, _, mine, _ in mine_stages(config):
        if mine in emptied:
            reasons[arm] = [mine]
            continue
        chains = [[f"{method}-{arm}", f"filter-{method}-{arm}"] for method in config.augmenters]
        stops = [next((s for s in chain if s in emptied), None) for chain in chains]
        if all(stops):
            reasons[arm] = [stop for stop in stops if stop is not None]
    return reasons


def empty_output(stage: Stage, folder: Path) -> bool:
    """Whether `stage` made a selection, augmentations or kept rows with no rows (the stages after it would
    refuse an empty file)."""
    names = {"mine": "hard.parquet", "augment": "augmented.parquet", "filter": "kept.parquet"}
    kind = "mine" if stage.name.startswith("mine") else stage.table.split(".", 1)[0]
    if kind not in names or stage.task is not None:
        return False
    return pl.scan_parquet(folder / names[kind]).select(pl.len()).collect().item() == 0


def mine_stages(config: PipelineConfig) -> list[tuple[str, tuple[str, ...], str, str]]:
    """(strategy, its selection steps, stage name, TOML table) of every mine stage: `mine` for the one
    strategy of [mine] select (its steps are in the [mine] options), `mine-<name>` per [strategies] entry."""
    if not config.strategies:
        return [("targeted", (), "mine", "mine")]
    return [(name, steps, f"mine-{name}", "strategies") for name, steps in config.strategies.items()]


def draw_random_sources(folder: Path, inputs: list[Path], *, factor: float, seed: int) -> None:
    """The control sample: `factor` x as many rows as the largest hard set, uniformly from all training rows,
    so that after filtering the random arm can still match every strategy's count per method."""
    scores, *hards = inputs
    n_hard = max(pl.scan_parquet(hard).select(pl.len()).collect().item() for hard in hards)
    every = pl.read_parquet(scores)
    n = max(1, round(min(n_hard * factor, every.height)))  # min first: a huge factor is every row, not inf
    sample = every.sample(n=n, seed=seed, shuffle=True).select("id", "text", "label", "hardness")
    write_parquet(sample, folder / "sources.parquet")


def merge_kept(folder: Path, inputs: list[Path], *, counts: dict[str, int]) -> None:
    """One file of kept rows per arm, over every method, for compare."""
    start = 0
    for arm, n in counts.items():
        frames = [pl.read_parquet(p) for p in inputs[start : start + n]]
        write_parquet(pl.concat(frames, how="diagonal_relaxed"), folder / f"{arm}.parquet")
        start += n


def shared_label_model(args: argparse.Namespace, train: Path, *, oof: Output | None = None) -> Stage | None:
    """The filters' default label model (TF-IDF), trained once, as the "label-model" stage, for every filter
    stage instead of once per stage (on 275k reviews: 142 s with lbfgs, 37 CPU s with saga), times methods x
    arms. With `oof` (the oof stage's oof.parquet): the K fold models refitted on its folds, in one .npz, so
    the filters judge each augmentation out of fold. None when the [filter] options turn the check off or
    name their own model. `args` are the filter options as `hardaug filter` parsed them."""
    from engine.filters.config import FilterConfig
    from engine.options import config_from_args

    config = config_from_args(FilterConfig, args)  # the config `hardaug filter` builds from these options
    if not config.label_check or config.label_model != "tfidf" or args.save_label_model is not None:
        return None
    from engine.oof.tfidf import FIT

    columns = {"text_col": args.text_col, "label_col": args.label_col, "id_col": args.id_col}
    tfidf = config.tfidf  # what `hardaug filter` trains (no flags: FilterConfig's default)
    what = "the K fold models of the oof stage's folds" if oof is not None else "the model"
    return Stage(
        "label-model",
        "filter",
        task=partial(_train_label_model, tfidf=tfidf, columns=columns, processes=config.processes),
        inputs=(train,) if oof is None else (train, oof),
        options=[asdict(tfidf), FIT, columns] + (["folds"] if oof is not None else []),
        outputs=(("", LABEL_MODEL),),
        about=f"train the filters' TF-IDF label model ({what}) on the training set, once for every filter stage",
    )


def _train_label_model(folder: Path, inputs: list[Path], *, tfidf: Any, columns: dict, processes: int = 1) -> None:
    from engine.filters import load_dataset
    from engine.filters.label import LabelModel

    frame, names = load_dataset(inputs[0], **columns)
    if len(inputs) == 1:
        log.info("label model: training TF-IDF on %d texts, shared by every filter stage", frame.height)
        LabelModel.train_tfidf(frame["text"].to_list(), frame["label"].to_numpy(), len(names), tfidf).save(
            folder / LABEL_MODEL
        )
        return
    from engine.filters.judge import expected_markers, read_folds, save_fold_models
    from engine.io import atomic_path
    from engine.oof.refit import refit_tfidf_folds

    folds = read_folds(inputs[1], frame, names)
    log.info("label model: refitting %d TF-IDF fold models on %d texts", int(folds.max()) + 1, frame.height)
    fitted = refit_tfidf_folds(tfidf, frame["text"].to_list(), frame["label"].to_numpy(), folds, processes=processes)
    models = [LabelModel("tfidf", m, len(names)) for m in fitted]
    with atomic_path(folder / LABEL_MODEL) as tmp:
        save_fold_models(tmp, models, expected_markers(frame, folds, names))


# ---------------------------------------------------------------------------------------------------------
# Running them


class StageFailed(Exception):
    """A stage's command ended with a non-zero exit code; it has already said why."""

    def __init__(self, stage: str, code: int, folder: Path):
        self.stage, self.code, self.folder = stage, code, folder
        super().__init__(
            f"stage {stage} failed (exit code {code}); its partial output is in {folder}. Fix the cause and run "
            "the same command again: finished stages are reused."
        )


def stage_record(folder: Path) -> dict | None:
    """What a finished stage recorded (stage, argv or options, inputs, version, seconds, peak_mb), as its
    done marker holds it; None if it has none. It does not check the outputs (the Runner does)."""
    try:
        return json.loads((folder / STAGE_JOB / "done.json").read_text(encoding="utf-8"))["summary"]
    except (OSError, ValueError, KeyError):
        return None


def stage_outputs(folder: Path) -> list[Path]:
    """The files a stage left in its folder, which its done marker vouches for: the regular files at the top
    (not job folders or temporary files, whose names start with a dot, nor kept checkpoints below)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


@dataclass
class Runner:
    """Runs stages in order, skipping finished ones: commands through `run_command(argv)`, which returns the
    exit code or an object with `code` and `peak_mb`, and tasks in this process. With `dry_run` it runs and
    writes nothing and records in `plan_lines` what it would do."""

    out: Path
    run_command: Callable[[list[str]], Any]
    dry_run: bool = False
    version: str = field(default_factory=lambda: engine.__version__)
    folders: dict[str, Path | None] = field(default_factory=dict)
    log_lines: list[dict] = field(default_factory=list)
    plan_lines: list[dict] = field(default_factory=list)
    _digests: dict[tuple, str] = field(default_factory=dict)

    def path(self, arg: Path | Output) -> Path | None:
        if isinstance(arg, Path):
            return arg
        folder = self.folders.get(arg.stage)
        return None if folder is None else folder / arg.name

    def shown(self, arg: Arg) -> str:
        if isinstance(arg, str):
            return arg
        path = self.path(arg)
        if isinstance(arg, Path):
            return str(path)
        return arg.prefix + str(path if path is not None else self.out / "stages" / f"{arg.stage}-<key>" / arg.name)

    def key(self, stage: Stage, inputs: list[Path]) -> str:
        # Input files by content, not by path: moving the data or OUT keeps the cache.
        argv = [a if isinstance(a, str) else getattr(a, "prefix", "") + "<file>" for a in stage.argv]
        digest = hashlib.sha256(json.dumps([self.version, stage.name, argv, stage.options]).encode())
        for path in inputs:
            stat = path.stat()
            memo = (str(path), stat.st_size, stat.st_mtime_ns)
            if memo not in self._digests:
                self._digests[memo] = file_digest(path)
            digest.update(self._digests[memo].encode())
        return digest.hexdigest()[:12]

    def command(self, stage: Stage, folder: Path | None) -> list[str]:
        argv = [self.shown(a) for a in stage.argv] + list(stage.where)
        base = folder if folder is not None else self.out / "stages" / f"{stage.name}-<key>"
        for flag, name in stage.outputs:
            argv += [flag, str(base / name) if name else str(base)]
        return argv

    def run(self, stage: Stage) -> Path | None:
        """Run `stage` unless it finished in its folder and its outputs are unchanged; returns the folder (None
        in a dry run when the stage waits for an earlier one)."""
        inputs = [self.path(p) for p in stage.files()]
        if any(p is None or not p.exists() for p in inputs):
            if not self.dry_run:  # an earlier stage's output deleted by hand, its marker left
                missing = [str(p) for p in inputs if p is not None and not p.exists()]
                raise InputError(
                    f"stage {stage.name}: its input {missing} is missing; delete the folder of the stage that made "
                    "it, and run again to make it anew."
                )
            self.folders[stage.name] = None
            self._plan(stage, None, "waits")
            return None
        key = self.key(stage, inputs)
        folder = self.out / "stages" / f"{stage.name}-{key}"
        self.folders[stage.name] = folder
        job = Job(folder / STAGE_JOB, key, what=f"stage {stage.name}")
        if self.dry_run:  # a look at the done marker, without the lock: nothing is written
            self._plan(stage, folder, "cached" if job.finished() is not None else "runs")
            return folder
        with job:
            done = job.finished()
            if done is not None:
                log.info("stage %s: cached (%s)", stage.name, folder)
                self._plan(stage, folder, "cached")
                # The cost when it ran, so pipeline.json always gives the cost of every stage.
                self._record(stage, folder, True, done.get("seconds"), done.get("peak_mb"))
                return folder
            self._plan(stage, folder, "runs")
            started = time.perf_counter()
            peak = None
            if stage.task is None:
                command = self.command(stage, folder)
                log.info("stage %s: hardaug %s", stage.name, shlex.join(command))
                result = self.run_command(command)
                code, peak = (result, None) if isinstance(result, int) else (result.code, result.peak_mb)
                if code != 0:
                    raise StageFailed(stage.name, code, folder)
                extra: dict = {"argv": command}
            else:
                log.info("stage %s: %s", stage.name, stage.about)
                stage.task(folder, inputs)
                extra = {"options": stage.options}
            seconds = round(time.perf_counter() - started, 1)
            done = {"stage": stage.name, **extra, "inputs": [str(p) for p in inputs], "version": self.version}
            job.outputs = stage_outputs(folder)
            job.finish({**done, "seconds": seconds, "peak_mb": peak})
        self._record(stage, folder, False, seconds, peak)
        return folder

    def _record(self, stage: Stage, folder: Path, cached: bool, seconds: Any, peak: Any) -> None:
        line = {"stage": stage.name, "folder": str(folder), "cached": cached, "seconds": seconds, "peak_mb": peak}
        self.log_lines.append(line)

    def _plan(self, stage: Stage, folder: Path | None, status: str) -> None:
        if stage.task is None:
            what = "hardaug " + shlex.join(self.command(stage, folder))
        else:
            what = f"in-process: {stage.about}"
        where = str(folder) if folder is not None else str(self.out / "stages" / f"{stage.name}-<key>")
        self.plan_lines.append({"stage": stage.name, "status": status, "folder": where, "command": what})


def run_pipeline(config: PipelineConfig, run_command: Callable[[list[str]], Any], *, dry_run: bool = False) -> dict:
    """Run every stage of `plan(config)`; returns where each result is. With `dry_run`, runs and writes
    nothing and returns {"plan": [...]}: each stage, whether it is cached, runs, or waits for an earlier
    stage's output to know its key, and its command."""
    if config.sizes:
        from engine.sizes import run_sizes

        return run_sizes(config, run_command, dry_run=dry_run)
    runner = Runner(config.out, run_command, dry_run=dry_run)
    if dry_run:
        for stage in plan(config):
            runner.run(stage)
        return {"plan": runner.plan_lines}
    with locked(config.out / ".run", config.out):  # two runs into one OUT: the second is refused
        emptied = run_stages(config, runner)
        return _finish(config, runner, plan(config, emptied), emptied)


def run_stages(config: PipelineConfig, runner: Runner) -> set[str]:
    """Run the plan stage by stage; a stage whose output has no rows takes what would read it out of the
    plan (an empty selection stops its strategy, not the run). Returns the stages that emptied something."""
    emptied: set[str] = set()
    ran: set[str] = set()
    while (stage := next((s for s in plan(config, emptied) if s.name not in ran), None)) is not None:
        folder = runner.run(stage)
        ran.add(stage.name)
        if folder is not None and empty_output(stage, folder):
            log.warning("stage %s: no rows; what would read its output is left out", stage.name)
            emptied.add(stage.name)
    return emptied


def _finish(config: PipelineConfig, runner: Runner, stages: list[Stage], emptied: Collection[str] = ()) -> dict:

    folders = {name: folder for name, folder in runner.folders.items() if folder is not None}
    filters = [s.name for s in stages if s.table == "filter" and s.task is None]
    mines = {name: mine for name, _, mine, _ in mine_stages(config)}
    first = next(iter(mines.values()))
    results = collect_results(config.out / "results", folders, filters, mines=list(mines.values()))
    skipped = not_compared(config, emptied)
    if skipped:
        write_not_compared(results["comparison.md"], results["comparison.json"], skipped)
    kept = {
        arm: [
            str(folders[f"filter-{method}-{arm}"] / "kept.parquet")
            for method in config.augmenters
            if f"filter-{method}-{arm}" in folders
        ]
        for arm in [*mines, "random"]
    }
    summary = {
        "config": str(config.path),
        "version": runner.version,
        "results": str(config.out / "results"),
        "report": str(results["report.html"]),
        "hard": str(folders[first] / "hard.parquet"),
        # every strategy's selection (the one of [mine] select is "targeted")
        "strategies": {name: str(folders[mine] / "hard.parquet") for name, mine in mines.items()},
        "kept": kept,
        "rejected": {f: str(folders[f] / "rejected.parquet") for f in filters},
        "comparison": str(results["comparison.md"]),
        # strategies with no kept rows: not compared, and the stages that emptied them
        "not_compared": skipped,
        "stages": runner.log_lines,
    }
    write_json(summary, config.out / "pipeline.json")
    return summary


def collect_results(
    folder: Path, folders: Mapping[str, Path], filters: Sequence[str], mines: Sequence[str] = ("mine",)
) -> dict[str, Path]:
    """Gather what people read into one folder: the miner's report (of the first mine stage), every
    strategy's mine summary, every filter summary and rejected rows, the comparison. Copies of the small
    files; hard links to the Parquet files where the file system allows (the rejected rows can be large; a
    link is a real file, so the folder stays readable when zipped or moved)."""
    compared = folders.get("compare", folder / ".none")  # no compare stage when no arm had rows
    wanted = {
        "report.html": folders[mines[0]] / "report.html",
        "mine_summary.json": folders[mines[0]] / "summary.json",
        "comparison.md": compared / "results.md",
        "comparison.json": compared / "results.json",
        "comparison.svg": compared / "results.svg",
    }
    for stage in mines if len(mines) > 1 else ():  # mine-<strategy>
        wanted[f"{stage}.summary.json"] = folders[stage] / "summary.json"
    for stage in filters:  # filter-<method>-<arm>
        wanted[f"{stage}.summary.json"] = folders[stage] / "kept.summary.json"
        wanted[f"{stage}.rejected.parquet"] = folders[stage] / "rejected.parquet"
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in wanted.items():
        target = folder / name
        if not source.exists():
            target.unlink(missing_ok=True)  # a comparison of an earlier run into OUT is not this run's
            continue
        target.unlink(missing_ok=True)
        try:
            if name.endswith(".parquet"):
                os.link(source, target)
                continue
        except OSError:  # another file system, or links not allowed
            pass
        shutil.copyfile(source, target)
    return {name: folder / name for name in wanted}


def write_not_compared(md: Path, js: Path, skipped: Mapping[str, list[str]]) -> None:
    """Add the strategies that kept no rows to the gathered comparison (.md and .json): each is a row
    "0 kept, not compared" naming the stages that emptied it."""
    from engine.io import write_text

    lines = ["", "| strategy | kept | emptied by |", "|---|---|---|"]
    lines += [f"| {arm} | 0 kept, not compared | {', '.join(stages)} |" for arm, stages in skipped.items()]
    text = md.read_text(encoding="utf-8") if md.exists() else "No arm had rows to compare.\n"
    write_text(text.rstrip("\n") + "\n" + "\n".join(lines) + "\n", md)
    results = json.loads(js.read_text(encoding="utf-8")) if js.exists() else {}
    results["not_compared"] = {arm: {"kept": 0, "emptied_by": stages} for arm, stages in skipped.items()}
    write_json(results, js)
