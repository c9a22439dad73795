"""All stages from one TOML file, each cached by a hash of its inputs and options.

    oof -> mine -> (random control sample) -> augment (eda / backtranslate / paraphrase) on the hard and the
    random samples -> filter both -> compare

Every stage runs as its `hardaug` subcommand with options taken from its TOML table (`key = value` becomes
`--key value`, `true` a bare flag, a list a repeated option), in a folder named after the stage and a hash
of (its options, the content of its input files). A stage whose folder holds a finished marker is skipped,
so a rerun after changing only the filter threshold reruns only filter and compare; a killed stage resumes
through the stage's own resumability.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import shutil
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from engine.errors import InputError
from engine.io import write_json, write_parquet

log = logging.getLogger(__name__)

AUGMENTERS = ("eda", "backtranslate", "paraphrase")
DONE = ".done.json"


@dataclass(frozen=True)
class PipelineConfig:
    path: Path
    out: Path
    train: Path
    test: Path
    predictions: Path | None = None  # existing out-of-fold predictions: skip the oof stage
    oof: dict = field(default_factory=dict)
    mine: dict = field(default_factory=dict)
    select: list[str] = field(default_factory=list)
    random: dict = field(default_factory=dict)
    augment: dict[str, dict] = field(default_factory=dict)
    filter: dict = field(default_factory=dict)
    compare: dict = field(default_factory=dict)
    cluster: dict = field(default_factory=dict)  # [cluster]: --ray options every stage that has them inherits


def load_config(path: str | Path, *, default_data: Path) -> PipelineConfig:
    """Read and check a pipeline TOML. Relative paths are relative to the current folder."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such pipeline file. Start from engine/data/pipelines/cpu.toml.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc}).") from exc
    known = {"data", "oof", "mine", "random", "augment", "filter", "compare", "cluster"}
    unknown = set(raw) - known
    if unknown:
        raise InputError(f"{path}: unknown sections {sorted(unknown)}; expected {sorted(known)}.")
    data = raw.get("data", {})
    augment = raw.get("augment", {})
    if not augment:
        raise InputError(f"{path}: no [augment.<method>] section; add one of {list(AUGMENTERS)}, e.g. [augment.eda].")
    bad = set(augment) - set(AUGMENTERS)
    if bad:
        raise InputError(f"{path}: unknown augmenters {sorted(bad)} in [augment]; expected {list(AUGMENTERS)}.")
    mine = dict(raw.get("mine", {}))
    select = shlex.split(mine.pop("select", "--preset notebook"))
    return PipelineConfig(
        path=path,
        out=Path(data.get("out", "runs/pipeline")),
        train=Path(data.get("train", default_data / "train.csv")),
        test=Path(data.get("test", default_data / "test.csv")),
        predictions=Path(data["predictions"]) if "predictions" in data else None,
        oof=raw.get("oof", {}),
        mine=mine,
        select=select,
        random=raw.get("random", {}),
        augment=augment,
        filter=raw.get("filter", {}),
        compare=raw.get("compare", {}),
        cluster=check_cluster(raw.get("cluster", {}), path),
    )


CLUSTER_KEYS = {"ray": "eda backtranslate paraphrase filter oof", "replicas": "eda backtranslate paraphrase filter",
                "gpus_per_replica": "backtranslate paraphrase filter"}  # fmt: skip


def check_cluster(table: dict, path: Path) -> dict:
    unknown = set(table) - set(CLUSTER_KEYS)
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(unknown)} in [cluster]; expected {sorted(CLUSTER_KEYS)}.")
    return table


def cluster_options(table: dict, command: str) -> list[str]:
    """The [cluster] options `command` takes (`ray = "auto"` -> --ray auto). They decide where a stage runs,
    not what it writes, so they stay out of the stage's cache key."""
    return options({k: v for k, v in table.items() if command in CLUSTER_KEYS[k].split()})


def options(table: dict) -> list[str]:
    """TOML table -> CLI options: `k = v` -> --k v; `k = true` -> --k; `k = false` -> nothing; lists repeat."""
    argv: list[str] = []
    for key, value in table.items():
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            argv.append(flag)
        elif value is False:
            continue
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Runner:
    """Runs stages, skipping finished ones: `hardaug` subcommands through `run_command(argv) -> exit code`,
    and in-process tasks (`task`) under the same cache keys, markers and timings."""

    out: Path
    run_command: Callable[[list[str]], int]
    log_lines: list[dict] = field(default_factory=list)

    def stage(
        self,
        name: str,
        argv: Sequence[str],
        inputs: Sequence[Path],
        output_flag: str,
        output: str,
        where: Sequence[str] = (),
    ) -> Path:
        """Run `hardaug <argv> <where> <output_flag> <folder>/<output>` unless done; returns the output path.
        `where` (the [cluster] options) is not part of the cache key."""

        def run(folder: Path, target: Path) -> dict:
            command = [*argv, *where, output_flag, str(folder if output_flag == "--out-dir" else target)]
            log.info("stage %s: hardaug %s", name, " ".join(shlex.quote(c) for c in command))
            code = self.run_command(command)
            if code != 0:
                raise RuntimeError(f"stage {name} failed (exit code {code}); its partial output is in {folder}")
            return {"argv": command}

        return self.task(name, list(argv), inputs, output, run)

    def task(
        self, name: str, options: list, inputs: Sequence[Path], output: str, run: Callable[[Path, Path], dict]
    ) -> Path:
        """`run(folder, target)` unless a finished marker exists for this name, these options (JSON-able) and
        the content of `inputs`; returns `<folder>/<output>`. What `run` returns goes into the marker."""
        digest = hashlib.sha256(json.dumps([name, options]).encode())
        for path in inputs:
            digest.update(file_digest(path).encode())
        key = digest.hexdigest()[:12]
        folder = self.out / "stages" / f"{name}-{key}"
        target = folder / output
        marker = folder / DONE
        if marker.exists():
            log.info("stage %s: cached (%s)", name, folder)
            # The time it took when it ran, so pipeline.json always gives the cost of every stage.
            seconds = json.loads(marker.read_text(encoding="utf-8")).get("seconds")
            self.log_lines.append({"stage": name, "folder": str(folder), "cached": True, "seconds": seconds})
            return target
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        extra = run(folder, target)
        seconds = round(time.perf_counter() - started, 1)
        write_json({"stage": name, **extra, "inputs": [str(p) for p in inputs], "seconds": seconds}, marker)
        self.log_lines.append({"stage": name, "folder": str(folder), "cached": False, "seconds": seconds})
        return target


def draw_random_sources(scores: Path, hard: Path, out: Path, *, factor: float, seed: int) -> Path:
    """The control sample: `factor` x as many rows as the hard set, uniformly from all training rows, so
    that after filtering the random arm can still match the targeted arm's count per method."""
    n_hard = pl.scan_parquet(hard).select(pl.len()).collect().item()
    every = pl.read_parquet(scores)
    n = min(every.height, max(1, round(n_hard * factor)))
    sample = every.sample(n=n, seed=seed, shuffle=True).select("id", "text", "label", "hardness")
    write_parquet(sample, out)
    return out


def shared_label_model(table: dict, train: Path, runner: Runner) -> Path | None:
    """The filters' default label model (TF-IDF trained on the training set), trained once, as the
    "label-model" stage, for every filter stage instead of once per stage: about 2.5 minutes on 275k
    reviews, times methods x arms. None when the [filter] table turns the check off or names its own model.
    Its path carries the stage's hash, so the filter stages' cache keys change exactly when the model would."""
    table = {key.replace("_", "-"): value for key, value in table.items()}
    if table.get("no-label-check") or table.get("label-model", "tfidf") != "tfidf" or "save-label-model" in table:
        return None
    from engine.config import TfidfConfig
    from engine.filters import load_dataset
    from engine.filters.label import LabelModel
    from engine.oof.tfidf import FIT

    columns = {f"{c}_col": table[f"{c}-col"] for c in ("text", "label", "id") if f"{c}-col" in table}
    tfidf = TfidfConfig()  # what `hardaug filter` trains; it has no options for it

    def train_model(folder: Path, target: Path) -> dict:
        frame, names = load_dataset(train, **columns)
        log.info("label model: training TF-IDF on %d texts, shared by every filter stage", frame.height)
        LabelModel.train_tfidf(frame["text"].to_list(), frame["label"].to_numpy(), len(names), tfidf).save(target)
        return {}

    return runner.task("label-model", [asdict(tfidf), FIT, columns], [train], "label_model.joblib", train_model)


def run_pipeline(config: PipelineConfig, run_command: Callable[[list[str]], int]) -> dict:
    """Run every stage; returns where each result is."""
    runner = Runner(config.out, run_command)
    train, test = config.train, config.test
    for path in (train, test):
        if not path.is_file():
            raise InputError(f"{config.path}: data file {path} does not exist.")

    if config.predictions is not None:  # out-of-fold predictions made elsewhere (e.g. the notebook's CSV)
        predictions = config.predictions
        if not predictions.is_file():
            raise InputError(f"{config.path}: [data] predictions = {predictions} does not exist.")
    else:
        oof_argv = ["oof", "--train", str(train), "--test", str(test), *options(config.oof)]
        where = cluster_options(config.cluster, "oof")
        predictions = runner.stage("oof", oof_argv, [train, test], "--out-dir", "", where) / "oof.parquet"
    mine_argv = ["mine", "--input", str(predictions), *options(config.mine), *config.select]
    mine_dir = runner.stage("mine", mine_argv, [predictions], "--out-dir", "")
    hard = mine_dir / "hard.parquet"
    random_sources = config.out / "stages" / "random_sources.parquet"
    random_key = config.out / "stages" / "random_sources.key"
    seed = int(config.random.get("seed", 13))
    factor = float(config.random.get("factor", 1.5))
    key = json.dumps([file_digest(hard), seed, factor])
    if not random_sources.exists() or not random_key.exists() or random_key.read_text() != key:
        draw_random_sources(mine_dir / "scores.parquet", hard, random_sources, factor=factor, seed=seed)
        random_key.write_text(key)

    filter_options = options(config.filter)
    label_model = shared_label_model(config.filter, train, runner)
    if label_model is not None:
        filter_options += ["--label-model", str(label_model)]
    kept: dict[str, list[Path]] = {"targeted": [], "random": []}
    for method, table in config.augment.items():
        for arm, sources in (("targeted", hard), ("random", random_sources)):
            augmented = runner.stage(
                f"{method}-{arm}",
                [method, "--input", str(sources), *options(table)],
                [sources],
                "--out",
                "augmented.parquet",
                cluster_options(config.cluster, method),
            )
            filtered = runner.stage(
                f"filter-{method}-{arm}",
                ["filter", "--input", str(augmented), "--train", str(train), *filter_options],
                [augmented, train],
                "--out",
                "kept.parquet",
                cluster_options(config.cluster, "filter"),
            )
            kept[arm].append(filtered)

    merged = {}
    for arm, paths in kept.items():
        merged[arm] = config.out / "stages" / f"kept_{arm}.parquet"
        write_parquet(pl.concat([pl.read_parquet(p) for p in paths], how="diagonal_relaxed"), merged[arm])
    compare_dir = runner.stage(
        "compare",
        [
            "compare",
            "--train",
            str(train),
            "--test",
            str(test),
            "--targeted",
            str(merged["targeted"]),
            "--random",
            str(merged["random"]),
            *options(config.compare),
        ],
        [train, test, merged["targeted"], merged["random"]],
        "--out-dir",
        "",
    )
    results = collect_results(config.out / "results", mine_dir, kept, compare_dir)
    summary = {
        "config": str(config.path),
        "results": str(config.out / "results"),
        "report": str(results["report.html"]),
        "hard": str(hard),
        "kept": {arm: [str(p) for p in paths] for arm, paths in kept.items()},
        "comparison": str(results["comparison.md"]),
        "stages": runner.log_lines,
    }
    write_json(summary, config.out / "pipeline.json")
    return summary


def collect_results(folder: Path, mine_dir: Path, kept: dict[str, list[Path]], compare_dir: Path) -> dict[str, Path]:
    """Copy what people read into one folder: the miner's report, every filter summary, the comparison.
    Copies, not links: the folder stays readable when it is zipped or moved, and the files are small."""
    wanted = {
        "report.html": mine_dir / "report.html",
        "mine_summary.json": mine_dir / "summary.json",
        "comparison.md": compare_dir / "results.md",
        "comparison.json": compare_dir / "results.json",
        "comparison.svg": compare_dir / "results.svg",
    }
    for paths in kept.values():
        for path in paths:  # .../stages/filter-<method>-<arm>-<hash>/kept.parquet
            stage = path.parent.name.rsplit("-", 1)[0]
            wanted[f"{stage}.summary.json"] = path.with_suffix(".summary.json")
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in wanted.items():
        if source.exists():
            shutil.copyfile(source, folder / name)
    return {name: folder / name for name in wanted}
