"""Planning a pipeline: the ordered stages of a loaded config, and the in-process tasks among them (the random
sample, the kept rows, the label model), which run in the pipeline's own process (engine.pipeline)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from engine.filters import load_dataset
from engine.filters.judge import expected_markers, read_folds, save_fold_models
from engine.filters.label import LabelModel
from engine.io import atomic_path, write_parquet
from engine.oof.refit import refit_tfidf_folds
from engine.pipeline_load import LIKE_FLAGS, PipelineConfig
from engine.pipeline_options import StageOptions
from engine.tfidf import FIT

log = logging.getLogger(__name__)

LABEL_MODEL = "label_model.npz"


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
    if folds is not None and _judges_with_checkpoints(config):
        # The transformer the user trains judges the labels: the fold checkpoints the oof stage kept
        # (OUT_DIR/checkpoints/fold_XX), each augmentation by the fold that held its source out.
        label_model = None
        filter_options += ["--label-model", Output("oof", "checkpoints"), "--oof", folds]
    else:
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


def _judges_with_checkpoints(config: PipelineConfig) -> bool:
    """Whether the filters judge labels with the oof stage's transformers fold checkpoints: [oof] fine-tunes
    a transformer and keeps its fold checkpoints (`keep-checkpoints = true`), and [filter] keeps the label
    check on without naming a model of its own."""
    oof, filtering = config.parsed["oof"].config, config.parsed["filter"]
    if oof.backend != "transformers" or not oof.transformer.keep_checkpoints:
        return False
    checks = filtering.config.label_check and filtering.config.label_model == "tfidf"
    return checks and filtering.get("save_label_model") is None


def shared_label_model(args: StageOptions, train: Path, *, oof: Output | None = None) -> Stage | None:
    """The filters' default label model (TF-IDF), trained once, as the "label-model" stage, for every filter
    stage instead of once per stage (on 275k reviews: 142 s with lbfgs, 37 CPU s with saga), times methods x
    arms. With `oof` (the oof stage's oof.parquet): the K fold models refitted on its folds, in one .npz, so
    the filters judge each augmentation out of fold. None when the [filter] options turn the check off or
    name their own model. `args` are the [filter] options, read as `hardaug filter` reads them."""
    config = args.config  # the FilterConfig `hardaug filter` builds from these options
    if not config.label_check or config.label_model != "tfidf" or args.get("save_label_model") is not None:
        return None

    columns = {name: args.get(name) for name in ("text_col", "label_col", "id_col")}
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
    frame, names = load_dataset(inputs[0], **columns)
    if len(inputs) == 1:
        log.info("label model: training TF-IDF on %d texts, shared by every filter stage", frame.height)
        LabelModel.train_tfidf(frame["text"].to_list(), frame["label"].to_numpy(), len(names), tfidf).save(
            folder / LABEL_MODEL
        )
        return

    folds = read_folds(inputs[1], frame, names)
    log.info("label model: refitting %d TF-IDF fold models on %d texts", int(folds.max()) + 1, frame.height)
    fitted = refit_tfidf_folds(tfidf, frame["text"].to_list(), frame["label"].to_numpy(), folds, processes=processes)
    models = [LabelModel("tfidf", m, len(names)) for m in fitted]
    with atomic_path(folder / LABEL_MODEL) as tmp:
        save_fold_models(tmp, models, expected_markers(frame, folds, names))
