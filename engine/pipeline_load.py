"""Loading a pipeline TOML: every table checked, with the data, before any stage runs (engine.pipeline).

Each table's keys become options of its `hardaug` subcommand (`key = value` -> `--key value`, `true` ->
`--key`, `false` -> `--no-key`, or nothing where false is the option's default, a list -> a repeated option
or one comma-separated value, as the option takes it; engine.pipeline_options), and each stage's engine config
is built from them and checked, so a typo, a wrong type or a bad value stops the run naming the table and the
key.
"""

from __future__ import annotations

import difflib
import itertools
import logging
import math
import shlex
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import sizes as sz
from engine.arms import CLEANING_ARMS, check_strategy_name
from engine.errors import InputError
from engine.pipeline_data import check_with_data, read_classes
from engine.pipeline_options import COMMANDS, STEP_OPTIONS, StageOptions, build_selection, build_stage, table_argv

log = logging.getLogger(__name__)

AUGMENTERS = ("eda", "backtranslate", "paraphrase")
TABLES = ("data", "oof", "mine", "strategies", "random", "augment", "filter", "compare", "cluster")
# [cluster]: where stages run (Ray), given to every stage whose subcommand has the option; not in cache keys
CLUSTER_KEYS = ("ray", "replicas", "gpus_per_replica")
DATA_KEYS = ("train", "test", "predictions", "out", "sizes", "size-seeds")
DATA_FILES = ("train", "test", "predictions")
RANDOM_KEYS = ("factor", "seed")
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
class PipelineConfig:
    path: Path
    out: Path
    train: Path
    test: Path
    predictions: Path | None = None  # existing out-of-fold predictions: skip the oof stage
    # table ("oof", "mine", "augment.eda", "filter", "compare") -> its checked command-line options
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # the same options as the subcommand parsed them (placeholders for what the pipeline sets)
    parsed: dict[str, StageOptions] = field(default_factory=dict)
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


def load_config(
    path: str | Path,
    *,
    default_data: Path,
    overrides: Sequence[str] = (),
) -> PipelineConfig:
    """Read and check a whole pipeline TOML.

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
    parsed: dict[str, StageOptions] = {}
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
        argv, keys = table_argv(path, where, table, command, OWNED[command])
        if command == "compare" and "cleaning" in table:
            cleaning = True
        if command == "mine":
            # Selection steps apply in the order given; keys of a table have no order that means anything.
            into = "select = '...'" if named is None else "each strategy of [strategies]"
            for flag in STEP_OPTIONS.keys() & keys.keys():
                raise InputError(
                    f"{path}: [mine] {keys[flag]}: a selection step; put it in {into} with the other steps, in "
                    "the order they apply."
                )
        takes = COMMANDS[command].cluster
        usable = {key: value for key, value in cluster.items() if key.replace("_", "-") in takes}
        on, _ = table_argv(path, "cluster", usable, command, OWNED[command])
        parsed[where] = build_stage(path, where, {**table, **usable}, command, [*argv, *on])
        if select is not None:
            steps = selection_steps(path, "[mine] select", select)
            stray = [word for word in steps if word.startswith("--") and word.split("=", 1)[0] in OWNED["mine"]]
            if stray:
                raise InputError(
                    f"{path}: [mine] select: {stray[0]} is set by the pipeline; give only selection steps."
                )
            parsed[where] = build_selection(path, "[mine] select", steps, parsed[where])
            argv += steps
        options[where], placed[where] = tuple(argv), tuple(on)
    strategies: dict[str, tuple[str, ...]] = {}
    selections = {"mine": "[mine] select"}
    if named is not None:
        strategies, by_name = _strategies(path, named, parsed["mine"])
        parsed.update({f"strategies.{name}": args for name, args in by_name.items()})
        selections = {f"strategies.{name}": f"[strategies] {name}" for name in strategies}
    elif any(word in LIKE_FLAGS for word in options["mine"]):
        raise InputError(
            f"{path}: [mine] select: {'/'.join(LIKE_FLAGS)} name an earlier strategy of [strategies]; with one "
            "selection there is none (use --limit N)."
        )
    _check_compare(path, parsed["compare"], list(strategies) or ["targeted"])
    if cleaning and parsed["mine"].get("no_label_issues"):
        raise InputError(
            f"{path}: [compare] cleaning needs the suspected label errors, which [mine] no-label-issues = true "
            "turns off; remove one of the two."
        )

    classes = read_classes(path, train=data["train"], predictions=data["predictions"], parsed=parsed)
    check_with_data(path, classes, parsed, selections)
    if sizes:
        sz.check_sizes(path, sizes, classes, folds=parsed["oof"].config.n_folds, train=data["train"])
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
    path: Path, table: dict, mine: StageOptions
) -> tuple[dict[str, tuple[str, ...]], dict[str, StageOptions]]:
    """[strategies] name = "selection steps": each read as hardaug mine reads them after the [mine] options;
    returns the steps and the options of each. `--limit-like NAME` names an earlier strategy."""
    if not table:
        raise InputError(f"{path}: [strategies] is empty; name at least one, e.g. notebook = '--preset notebook'.")
    strategies: dict[str, tuple[str, ...]] = {}
    parsed: dict[str, StageOptions] = {}
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
        parsed[name] = build_selection(path, f"[strategies] {name}", steps, mine)
        strategies[name] = tuple(steps)
    return strategies, parsed


def _split_like(word: str) -> list[str]:
    """`--limit-like=NAME` as two words, so that the pipeline finds NAME to make it a file; others as they are."""
    flag, eq, value = word.partition("=")
    return [flag, value] if eq and flag in LIKE_FLAGS else [word]


def _check_compare(path: Path, args: StageOptions, strategies: list[str]) -> None:
    """What compare would refuse only after every stage ran: a budget for no strategy, unknown cleaning arms."""
    for name in args.get("budget"):
        if name not in strategies:
            raise InputError(f"{path}: [compare] budget = {name!r}: no such strategy; the strategies are {strategies}.")
    unknown = [arm for arm in args.get("cleaning") or () if arm not in (*CLEANING_ARMS, "none")]
    if unknown:
        raise InputError(f"{path}: [compare] cleaning: unknown arms {unknown}; expected {list(CLEANING_ARMS)}.")
    for pair in args.config.combine:
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
