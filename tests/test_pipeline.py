"""`hardaug run`: every stage end to end on a few hundred rows, the stage cache, the checks of the whole TOML
at load, and the real `hardaug run` process: a failing stage, and kill -9 in the middle of a stage."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import psutil
import pytest

import engine
from engine.cli import main
from engine.cli.common import SAMPLE_DIR
from engine.cli.run import subcommand_parsers
from engine.errors import InputError
from engine.pipeline import build_stage, load_config, run_pipeline, shared_label_model, stage_record, table_argv

SAMPLE = Path(str(SAMPLE_DIR))
ROOT = Path(engine.__file__).resolve().parents[1]
PARSERS = subcommand_parsers()

CONFIG = """
[data]
train = "train.csv"
test = "test.csv"
out = "{out}"

[oof]
folds = 3

[mine]
select = "--top-quantile 0.3 --min-chars 5"
no-label-issues = true

[random]
factor = 1.5

[augment.eda]
n = 2

[filter]
no-similarity = true
dup-threshold = {dup}

[compare]
seeds = [0]
bootstrap = 100
"""

STAGES = [
    "oof",
    "mine",
    "random-sources",
    "label-model",
    "eda-targeted",
    "filter-eda-targeted",
    "eda-random",
    "filter-eda-random",
    "kept",
    "compare",
]


def _write_config(folder: Path, dup: float = 0.95, out: str = "runs", name: str = "pipeline.toml") -> Path:
    """A config beside its data files, which it names by relative paths."""
    folder.mkdir(parents=True, exist_ok=True)
    train, test = folder / "train.csv", folder / "test.csv"
    if not train.exists():
        pl.read_csv(SAMPLE / "train.csv").head(600).write_csv(train)
        pl.read_csv(SAMPLE / "test.csv").head(200).write_csv(test)
    path = folder / name
    path.write_text(CONFIG.format(out=out, dup=dup), encoding="utf-8")
    return path


def _load(path: Path):
    return load_config(path, default_data=SAMPLE)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, dict]:
    """One uninterrupted run, in-process, of the small config; (its folder, its summary)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    config = _load(_write_config(folder, out=str(folder / "runs")))
    return folder, run_pipeline(config, main)


# ---------------------------------------------------------------------------------------------------------
# The TOML as command-line options


def _options(command: str, table: dict) -> list[str]:
    return table_argv(Path("p.toml"), command, table, command, ())[0]


def test_toml_values_become_the_options_they_mean():
    assert _options("oof", {"folds": 3, "dynamics": True}) == ["--folds", "3", "--dynamics"]
    # false: nothing for a switch that is off by default; the --no- form where the option has one
    assert _options("filter", {"no_similarity": False, "no-label-check": True}) == ["--no-label-check"]
    assert _options("paraphrase", {"guided": False}) == ["--no-guided"]
    assert _options("paraphrase", {"guided": True, "no-seed-per-source": True}) == ["--guided", "--no-seed-per-source"]
    # lists: repeated where the option collects, one comma-separated value where the option splits one
    assert _options("backtranslate", {"pivot": ["en_XX", "ja_XX"]}) == ["--pivot", "en_XX", "--pivot", "ja_XX"]
    assert _options("compare", {"seeds": [0, 1]}) == ["--seeds", "0,1"]
    assert _options("mine", {"class-names": ["neg", "pos"]}) == ["--class-names", "neg,pos"]
    assert _options("oof", {"lr": 5e-5}) == ["--lr", "5e-05"]


def test_every_stage_table_knows_exactly_its_commands_options():
    """The tables' keys (engine.pipeline_options: config fields, the commands' own options) are the flags of
    each stage's subcommand, no more, no fewer: an option added to a command is a key the pipeline knows."""
    import argparse

    from engine.pipeline_load import OWNED
    from engine.pipeline_options import COMMANDS, STEP_OPTIONS

    for command, spec in COMMANDS.items():
        parser = PARSERS[command]
        flags = {f for a in parser._actions if not isinstance(a, argparse._HelpAction) for f in a.option_strings}
        steps = set(STEP_OPTIONS) if command == "mine" else set()
        known = {*spec.flags(), *("--" + k for k in {**spec.extras, **spec.cluster}), *OWNED[command], *steps}
        assert known == flags, command


@pytest.mark.parametrize("name", ["cpu.toml", "strategies.toml"])
def test_each_stage_is_built_as_its_command_builds_it(name: str):
    """The configs and options the pipeline builds at load are what each subcommand's parser and
    build_config make of the stage's command line (the pipeline no longer drives argparse itself)."""
    import sys

    from engine import mine as m
    from engine.cli.run import PIPELINES
    from engine.pipeline_load import OWNED

    config = _load(Path(str(PIPELINES / name)))
    for where, options in config.parsed.items():
        table = where if where in config.options else "mine"  # strategies.NAME: [mine] options and its steps
        command = table.split(".", 1)[1] if table.startswith("augment.") else table
        steps = config.strategies.get(where.removeprefix("strategies."), ()) if table != where else ()
        placeholders = [w for flag in OWNED[command] for w in (flag, "n=x" if flag == "--strategy" else "x")]
        argv = [*placeholders, *config.options[table], *config.where[table], *steps]
        args = PARSERS[command].parse_args(argv)
        build = sys.modules[args.func.__module__].build_config
        assert options.config == build(args), where
        for attr, value in options.given.items():
            assert getattr(args, attr) == value, (where, attr)
        if command == "mine" and not (where == "mine" and config.strategies):  # there: each strategy's own
            assert list(options.steps) == m.steps_from_flags(args.steps, per_class=args.per_class), where


@pytest.mark.parametrize(
    ("command", "table", "message"),
    [
        ("oof", {"fodls": 3}, r"unknown key 'fodls' in \[oof\]; did you mean 'folds'\?"),
        ("oof", {"folds": [2, 3]}, r"\[oof\] folds = \[2, 3\]: --folds takes one value, not a list"),
        ("oof", {"folds": True}, r"\[oof\] folds = true: --folds takes a value"),
        ("mine", {"only-misclassified": False}, r"--only-misclassified cannot be turned off"),
        ("filter", {"no-similarity": "yes"}, r"--no-similarity is a switch; write no-similarity = true"),
        ("mine", {"class-names": ["a,b", "c"]}, r"--class-names takes one value, not a list"),
        ("compare", {"seeds": {"a": 1}}, r"\[compare\] seeds: a table"),
    ],
)
def test_options_that_cannot_mean_what_they_say_are_refused(command: str, table: dict, message: str):
    with pytest.raises(InputError, match=message):
        _options(command, table)


def test_bad_configs_are_refused_at_load_naming_table_and_key(tmp_path: Path):
    with pytest.raises(InputError, match="no such pipeline file"):
        _load(tmp_path / "missing.toml")
    good = _write_config(tmp_path).read_text()
    bad = tmp_path / "bad.toml"
    cases = {
        "[augment.magic]\nn = 1\n": r"unknown augmenter \[augment.magic\]",
        "[oof]\nfolds = 3\n": r"no \[augment.<method>\] table",
        good + "\n[compair]\nseeds = 1\n": r"unknown table \[compair\]; did you mean 'compare'\?",
        good.replace("folds = 3", "folds = 'x'"): r"\[oof\] folds = 'x': argument --folds: invalid",
        good.replace("folds = 3", "folds = 2.5"): r"\[oof\] folds = 2.5: argument --folds: invalid int value",
        good.replace("n = 2", "nn = 2"): r"unknown key 'nn' in \[augment.eda\]; did you mean 'n'\?",
        good.replace("dup-threshold", "dup-treshold"): r"\[filter\]; did you mean 'dup-threshold'\?",
        good.replace("--min-chars 5", "--min-chars five"): r"\[mine\] select = .*--min-chars: invalid int",
        good.replace("[mine]", "[mine]\nlimit = 5"): r"\[mine\] limit: a selection step; put it in select",
        good.replace("factor = 1.5", "factor = 'big'"): r"\[random\] factor = 'big': expected a finite number > 0",
        good.replace("out = ", "outt = "): r"unknown key 'outt' in \[data\]; did you mean 'out'\?",
        good.replace('train = "train.csv"', 'train = "nowhere.csv"'): r"\[data\] train = 'nowhere.csv' is .*nowhere",
        good + "\n[augment.eda.extra]\nx = 1\n": r"unknown key 'extra' in \[augment.eda\]",
        good.replace("[compare]", "[compare]\nout-dir = 'x'"): r"\[compare\] out-dir: set by the pipeline",
        good.replace("[oof]", "[oof]\ntrain = 'x.csv'"): r"\[oof\] train: set by the pipeline",
    }
    for text, message in cases.items():
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=message):
            _load(bad)
    # a value the engine's own config refuses, found at load (paraphrase builds its config from the options)
    bad.write_text(good + "\n[augment.paraphrase]\nmodel = 'm'\ntop-p = 1.5\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"\[augment.paraphrase\]"):
        _load(bad)


def test_oof_and_compare_tables_are_checked_by_their_configs_at_load(tmp_path: Path):
    """[oof] and [compare] values their configs refuse stop the run at load, not when the stage starts."""
    good = _write_config(tmp_path).read_text()
    bad = tmp_path / "bad.toml"
    cases = {
        good.replace("folds = 3", "folds = 1"): r"\[oof\]: n_folds must be at least 2, got 1",
        good.replace(
            "folds = 3", "folds = 3\nbackend = 'transformers'\nprecision = 'fp16'"
        ): r"\[oof\]: precision fp16",
        good.replace("[compare]", "[compare]\nconfident = 1.5"): r"\[compare\]: confident_threshold must be in",
        good.replace("[compare]", "[compare]\nbudget-share = 2"): r"\[compare\]: budget_share must be in",
    }
    for text, message in cases.items():
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=message):
            _load(bad)


def test_data_paths_are_relative_to_the_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = _write_config(tmp_path / "project", out="runs/x")
    monkeypatch.chdir(tmp_path)
    config = _load(Path("project") / path.name)
    assert config.train.resolve() == (tmp_path / "project" / "train.csv").resolve()
    assert config.test.resolve() == (tmp_path / "project" / "test.csv").resolve()
    assert config.out == Path("runs/x")  # outputs go where the command runs, like every hardaug output option
    assert config.options["compare"] == ("--seeds", "0", "--bootstrap", "100")


def test_label_model_is_shared_only_for_the_default_tfidf_check(tmp_path: Path):
    train = SAMPLE / "train.csv"

    def parsed(*argv: str):
        return build_stage(Path("p.toml"), "filter", {}, "filter", argv)

    assert shared_label_model(parsed(), train) is not None
    for argv in (["--no-label-check"], ["--label-model", "my.npz"], ["--save-label-model", "m.npz"]):
        assert shared_label_model(parsed(*argv), train) is None


# ---------------------------------------------------------------------------------------------------------
# Running


def test_pipeline_end_to_end_and_cache(uninterrupted: tuple[Path, dict]):
    folder, summary = uninterrupted
    runs = folder / "runs"
    assert [s["stage"] for s in summary["stages"]] == STAGES
    assert [s["cached"] for s in summary["stages"]] == [False] * len(STAGES)
    results = json.loads((Path(summary["results"]) / "comparison.json").read_text())
    assert set(results["arms"]) == {"baseline", "targeted", "random"}
    assert results["arms"]["random"]["added_rows"] == results["arms"]["targeted"]["added_rows"] > 0
    assert Path(summary["report"]).exists()
    # one folder with what people read, the rejected rows of every filter stage included
    assert sorted(p.name for p in Path(summary["results"]).iterdir()) == [
        "comparison.json",
        "comparison.md",
        "comparison.svg",
        "filter-eda-random.rejected.parquet",
        "filter-eda-random.summary.json",
        "filter-eda-targeted.rejected.parquet",
        "filter-eda-targeted.summary.json",
        "mine_summary.json",
        "report.html",
    ]
    for stage, rejected in summary["rejected"].items():
        rows = pl.read_parquet(rejected)
        assert rows.height > 0 and rows["reject_reason"].null_count() == 0
        kept = pl.read_parquet(Path(rejected).with_name("kept.parquet"))
        assert set(rows["id"]).isdisjoint(kept["id"])
        assert pl.read_parquet(Path(summary["results"]) / f"{stage}.rejected.parquet").equals(rows)

    # the filters' TF-IDF label model is trained once, in the pipeline, and handed to both filter stages
    models = list((runs / "stages").glob("label-model-*/label_model.npz"))
    assert len(models) == 1
    for stage in ("filter-eda-targeted", "filter-eda-random"):
        stage_folder = next(Path(s["folder"]) for s in summary["stages"] if s["stage"] == stage)
        argv = stage_record(stage_folder)["argv"]
        assert argv[argv.index("--label-model") + 1] == str(models[0])

    config = _load(folder / "pipeline.toml")
    # a dry run of a finished pipeline: every stage cached, the commands it ran
    plan = run_pipeline(config, main, dry_run=True)["plan"]
    assert [(p["stage"], p["status"]) for p in plan] == [(s, "cached") for s in STAGES]
    compare = stage_record(Path(plan[-1]["folder"]))["argv"]
    assert plan[-1]["command"].split()[1:] == compare

    again = run_pipeline(config, main)
    assert all(s["cached"] for s in again["stages"])
    # a cached stage still reports what it cost when it ran
    assert [s["seconds"] for s in again["stages"]] == [s["seconds"] for s in summary["stages"]]

    # a new filter threshold reruns both filters; compare reruns exactly when what was kept changed
    kept_before = [pl.read_parquet(p) for arm in ("targeted", "random") for p in again["kept"][arm]]
    changed = _load(_write_config(folder, dup=0.8, out=str(runs), name="changed.toml"))
    planned = run_pipeline(changed, main, dry_run=True)["plan"]
    assert [p["stage"] for p in planned if p["status"] == "runs"] == ["filter-eda-targeted", "filter-eda-random"]
    third = run_pipeline(changed, main)
    rerun = [s["stage"] for s in third["stages"] if not s["cached"]]
    kept_after = [pl.read_parquet(p) for arm in ("targeted", "random") for p in third["kept"][arm]]
    kept_changed = any(not a.equals(b) for a, b in zip(kept_before, kept_after, strict=True))
    assert kept_changed  # 0.8 rejects more near-duplicates than 0.95 on this data
    assert rerun == ["filter-eda-targeted", "filter-eda-random"] + (["kept", "compare"] if kept_changed else [])
    assert list((runs / "stages").glob("label-model-*/label_model.npz")) == models  # not retrained


def test_a_stage_whose_output_was_deleted_or_edited_runs_again(uninterrupted: tuple[Path, dict]):
    """The stage's done marker vouches for its outputs' digests: a file deleted or edited by hand makes the
    stage run again (only it: its output comes out the same, so later stages stay cached)."""
    folder, summary = uninterrupted
    config = _load(folder / "pipeline.toml")
    victim = next(Path(s["folder"]) for s in summary["stages"] if s["stage"] == "kept") / "targeted.parquet"
    before = victim.read_bytes()
    for attack in ("delete", "edit"):
        if attack == "delete":
            victim.unlink()
        else:
            pl.read_parquet(victim).head(3).write_parquet(victim)
        planned = {p["stage"]: p["status"] for p in run_pipeline(config, main, dry_run=True)["plan"]}
        # a dry run cannot know that kept will come out the same: compare waits for it, or (edited) looks new
        assert planned["kept"] == "runs" and planned["compare"] == ("waits" if attack == "delete" else "runs")
        assert all(status == "cached" for stage, status in planned.items() if stage not in ("kept", "compare"))
        again = run_pipeline(config, main)
        assert [s["stage"] for s in again["stages"] if not s["cached"]] == ["kept"], attack
        assert victim.read_bytes() == before


def test_a_second_run_into_the_same_out_is_refused_naming_the_first(uninterrupted: tuple[Path, dict]):
    from engine.jobs import JobLocked, locked

    folder, _ = uninterrupted
    config = _load(folder / "pipeline.toml")
    with locked(config.out / ".run", config.out), pytest.raises(JobLocked, match=f"pid {os.getpid()}"):
        run_pipeline(config, main)
    assert all(s["cached"] for s in run_pipeline(config, main)["stages"])


def test_dry_run_writes_nothing_and_a_new_version_reruns_every_stage(
    uninterrupted: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    fresh = _load(_write_config(tmp_path, out=str(tmp_path / "runs")))
    plan = run_pipeline(fresh, main, dry_run=True)["plan"]
    assert [p["stage"] for p in plan] == STAGES
    # the label model is the oof stage's fold models refitted: it waits for oof.parquet
    assert {p["stage"]: p["status"] for p in plan if p["status"] != "waits"} == {"oof": "runs"}
    assert plan[0]["command"].startswith("hardaug oof --train ")
    assert not (tmp_path / "runs").exists()

    folder, _ = uninterrupted
    config = _load(folder / "pipeline.toml")
    assert all(p["status"] == "cached" for p in run_pipeline(config, main, dry_run=True)["plan"])
    monkeypatch.setattr(engine, "__version__", "999.0")  # an upgrade: no stage of the old version is reused
    plan = run_pipeline(config, main, dry_run=True)["plan"]
    assert not any(p["status"] == "cached" for p in plan)
    assert [p["stage"] for p in plan if p["status"] == "runs"] == ["oof"]


# ---------------------------------------------------------------------------------------------------------
# The real `hardaug run` process


def _hardaug(*argv: str) -> list[str]:
    return [sys.executable, "-m", "engine.cli", *argv]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
def test_a_failing_stage_ends_with_its_own_message_and_exit_code(tmp_path: Path):
    # An embedding model folder that is not there: the data passes the pipeline's load-time checks, and the
    # first filter stage refuses the model with its own message.
    good = (
        pl.read_csv(SAMPLE / "train.csv")
        .filter(pl.col("label") < 2)
        .head(50)
        .with_columns(prob_0=pl.lit(0.9), prob_1=pl.lit(0.1))
    )
    good.select("id", "text", "label", "prob_0", "prob_1").write_csv(tmp_path / "predictions.csv")
    (tmp_path / "p.toml").write_text(
        '[data]\npredictions = "predictions.csv"\nout = "runs"\n[mine]\nselect = "--top-quantile 0.3"\n'
        '[augment.eda]\nn = 1\n[filter]\nembed-model = "no-such-model-folder"\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        _hardaug("run", "p.toml"), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr
    assert "hardaug filter: error:" in done.stderr, done.stderr  # the stage's own message
    assert re.search(r"hardaug run: stage filter-eda-\w+ failed \(exit code 2\)", done.stderr), done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs" / "pipeline.json").exists()


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:  # ended (or a zombie) meanwhile
        return []


def _status(process: psutil.Process) -> str:
    try:
        return process.status()
    except psutil.NoSuchProcess:
        return psutil.STATUS_DEAD


@pytest.mark.slow
def test_kill_9_mid_stage_leaves_no_stage_process_and_the_rerun_equals_an_uninterrupted_run(
    uninterrupted: tuple[Path, dict], tmp_path: Path
):
    path = _write_config(tmp_path, out="runs")
    run = subprocess.Popen(
        _hardaug("run", path.name),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parent = psutil.Process(run.pid)
    deadline = time.monotonic() + 300
    stage: list[psutil.Process] = []
    while time.monotonic() < deadline and run.poll() is None:  # wait for the eda stage of the targeted arm
        children = parent.children(recursive=True)
        if any("eda" in _cmdline(p) for p in children) and list((tmp_path / "runs" / "stages").glob("eda-targeted-*")):
            stage = children
            break
        time.sleep(0.2)
    assert stage, "the eda stage never started"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    _, alive = psutil.wait_procs(stage, timeout=30)
    assert [p for p in alive if _status(p) not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)] == []

    first = subprocess.run(
        _hardaug("run", path.name), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stderr
    summary = json.loads((tmp_path / "runs" / "pipeline.json").read_text())
    cached = {s["stage"] for s in summary["stages"] if s["cached"]}
    assert {"oof", "mine", "random-sources", "label-model"} <= cached
    assert "compare" not in cached and "filter-eda-targeted" not in cached
    assert all(s["peak_mb"] > 0 for s in summary["stages"] if not s["cached"] and s["stage"] != "kept")
    assert first.stdout.count("# Targeted augmentation") == 1  # the table once, from the compare stage

    _, expected = uninterrupted
    for arm in ("targeted", "random"):
        got = pl.read_parquet(tmp_path / summary["kept"][arm][0])
        assert got.equals(pl.read_parquet(expected["kept"][arm][0]))
    got = json.loads((tmp_path / "runs" / "results" / "comparison.json").read_text())
    compare = next(Path(s["folder"]) for s in expected["stages"] if s["stage"] == "compare")
    want = json.loads((compare / "results.json").read_text())
    assert got["arms"] == want["arms"]

    # a finished run again: the table once, "stage compare: cached" once
    again = subprocess.run(
        _hardaug("run", path.name), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("# Targeted augmentation") == 1
    assert again.stderr.count("stage compare: cached") == 1


# ---------------------------------------------------------------------------------------------------------
# [strategies]: several selections, each augmented, filtered and compared with its own random control

STRATEGIES = """
[data]
train = "train.csv"
test = "test.csv"
out = "{out}"

[oof]
folds = 3

[strategies]
hard = "--top-quantile 0.3 --min-chars 5"
clean-hard = ["--preset", "clean-hard"]

[augment.eda]
n = 1

[filter]
no-similarity = true

[compare]
seeds = [0]
bootstrap = 100
cleaning = ["drop-label-issues", "relabel"]
"""

STRATEGY_STAGES = [
    "oof",
    "mine-hard",
    "mine-clean-hard",
    "random-sources",
    "label-model",
    "eda-hard",
    "filter-eda-hard",
    "eda-clean-hard",
    "filter-eda-clean-hard",
    "eda-random",
    "filter-eda-random",
    "kept",
    "compare",
]


def _write_strategies(folder: Path, text: str = STRATEGIES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pl.read_csv(SAMPLE / "train.csv").head(400).write_csv(folder / "train.csv")
    pl.read_csv(SAMPLE / "test.csv").head(150).write_csv(folder / "test.csv")
    path = folder / "strategies.toml"
    path.write_text(text.format(out=folder / "runs"), encoding="utf-8")
    return path


@pytest.mark.slow
def test_strategies_each_get_their_own_stages_and_random_control(tmp_path: Path):
    config = _load(_write_strategies(tmp_path))
    assert config.strategies == {
        "hard": ("--top-quantile", "0.3", "--min-chars", "5"),
        "clean-hard": ("--preset", "clean-hard"),
    }
    plan = run_pipeline(config, main, dry_run=True)["plan"]
    assert [p["stage"] for p in plan] == STRATEGY_STAGES
    assert not (tmp_path / "runs").exists()
    compare = shlex.split(plan[-1]["command"])
    strategies = [compare[i + 1].split("=")[0] for i, word in enumerate(compare) if word == "--strategy"]
    assert strategies == ["hard", "clean-hard"] and "--targeted" not in compare
    assert "--scores" in compare and compare[compare.index("--cleaning") + 1] == "drop-label-issues,relabel"

    summary = run_pipeline(config, main)
    assert [s["stage"] for s in summary["stages"]] == STRATEGY_STAGES
    # the first strategy's mine stage writes the report; the others only select
    mines = {s["stage"]: Path(s["folder"]) for s in summary["stages"] if s["stage"].startswith("mine-")}
    assert (mines["mine-hard"] / "report.html").exists() and not (mines["mine-clean-hard"] / "report.html").exists()
    assert Path(summary["report"]) == Path(summary["results"]) / "report.html"
    hard = {name: pl.read_parquet(path) for name, path in summary["strategies"].items()}
    assert set(hard) == {"hard", "clean-hard"} and all(frame.height > 0 for frame in hard.values())
    assert not hard["clean-hard"]["label_issue"].any()  # each stage its own selection
    # one random sample, sized to the largest selection
    sources = pl.read_parquet(
        next(Path(s["folder"]) for s in summary["stages"] if s["stage"] == "random-sources") / "sources.parquet"
    )
    assert sources.height == round(1.5 * max(frame.height for frame in hard.values()))

    results = json.loads((Path(summary["results"]) / "comparison.json").read_text())
    arms = results["arms"]
    assert set(arms) == {
        "baseline",
        "hard",
        "hard-random",
        "clean-hard",
        "clean-hard-random",
        "drop-label-issues",
        "drop-random",
        "relabel",
    }
    for name in ("hard", "clean-hard"):
        kept = pl.read_parquet(summary["kept"][name][0])
        assert arms[name]["control"] == f"{name}-random"
        assert arms[name]["added_rows"] == arms[f"{name}-random"]["added_rows"] == kept.height > 0
    assert set(summary["kept"]) == {"hard", "clean-hard", "random"}
    assert {
        "mine-hard.summary.json",
        "mine-clean-hard.summary.json",
        "filter-eda-hard.summary.json",
        "filter-eda-clean-hard.summary.json",
        "filter-eda-random.summary.json",
    } <= {p.name for p in Path(summary["results"]).iterdir()}
    assert all(p["status"] == "cached" for p in run_pipeline(config, main, dry_run=True)["plan"])


def test_bad_strategies_are_refused_at_load(tmp_path: Path):
    good = _write_strategies(tmp_path).read_text()
    bad = tmp_path / "bad.toml"
    strategies = 'hard = "--top-quantile 0.3 --min-chars 5"\nclean-hard = ["--preset", "clean-hard"]\n'
    cases = {
        good.replace(
            "0.3", "x"
        ): r"\[strategies\] hard = '--top-quantile x --min-chars 5': argument --top-quantile: inv",
        good.replace('"clean-hard"]', '"cleanhard"]'): r"\[strategies\] clean-hard = .*invalid choice: 'cleanhard'",
        good.replace(
            "--min-chars 5", "--min-chars 5 --bogus"
        ): r"\[strategies\] hard = .*unrecognized arguments: --bogus",
        good.replace("--min-chars 5", "--min-chars"): r"\[strategies\] hard = .*--min-chars: expected one argument",
        good.replace("hard = ", "random = ", 1): r"\[strategies\] random: strategy name 'random'",
        good.replace("hard = ", "two words = ", 1).replace("two words", '"two words"'): r"strategy name 'two words'",
        good.replace(strategies, ""): r"\[strategies\] is empty",
        good.replace(strategies, "hard = 5\n"): r"\[strategies\] hard must be a string of selection options",
        good.replace("--min-chars 5", "--out-dir x"): r"\[strategies\] hard: --out-dir is set by the pipeline",
        good.replace("[strategies]", "[mine]\nselect = '--preset notebook'\n\n[strategies]"): r"move select into",
        good.replace(
            "[strategies]", "[mine]\nlimit = 5\n\n[strategies]"
        ): r"\[mine\] limit: a selection step; put it in each",
        good.replace("[compare]", "[compare]\nbudget = 'notebook'"): r"budget = 'notebook': no such strategy.*'hard'",
        good.replace("cleaning = [", "cleaning = ['fix', "): r"\[compare\] cleaning: unknown arms \['fix'\]",
        good.replace("[strategies]", "[mine]\nno-label-issues = true\n\n[strategies]"): r"cleaning needs the suspec",
        good.replace("[compare]", "[compare]\nscores = 'x.parquet'"): r"\[compare\] scores: set by the pipeline",
        good.replace("bootstrap = 100", "bootstrap = 50"): r"\[compare\]: bootstrap must be >= 100 resamples, got 50",
    }
    for text, message in cases.items():
        assert text != good
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=message):
            _load(bad)
    # cleaning = true: all three arms, through --scores; false: none
    for value, scores in (("true", True), ("false", False)):
        bad.write_text(
            good.replace('cleaning = ["drop-label-issues", "relabel"]', f"cleaning = {value}"), encoding="utf-8"
        )
        config = _load(bad)
        assert config.cleaning is scores and "--cleaning" not in config.options["compare"]


def test_the_bundled_strategies_pipeline_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from engine.cli.run import PIPELINES

    monkeypatch.chdir(tmp_path)
    config = _load(Path(str(PIPELINES / "strategies.toml")))
    assert list(config.strategies) == ["weak-classes", "misclassified", "clean-hard", "per-class"]
    assert config.cleaning and config.parsed["compare"].get("budget") == ["weak-classes"]
    plan = run_pipeline(config, main, dry_run=True)["plan"]
    assert [p["stage"] for p in plan if p["stage"].startswith("mine")] == [f"mine-{n}" for n in config.strategies]
    assert not (tmp_path / "runs").exists()


def test_weight_arms_get_the_scores_and_no_cleaning_arms_unless_asked(tmp_path: Path):
    good = _write_strategies(tmp_path).read_text()
    path = tmp_path / "weights.toml"
    weights = 'weights = ["hardness", "class-balanced"]\ncombine = ["hard=hardness"]\n'
    for cleaning, expected in (("", "none"), ('cleaning = ["relabel"]', "relabel")):
        text = good.replace('cleaning = ["drop-label-issues", "relabel"]', weights + cleaning)
        path.write_text(text, encoding="utf-8")
        config = _load(path)
        compare = config.options["compare"]
        assert config.cleaning and compare[compare.index("--cleaning") + 1] == expected  # --scores is passed
        assert compare[compare.index("--weights") + 1] == "hardness,class-balanced"
        assert config.parsed["compare"].config.combine == ("hard=hardness",)
    path.write_text(text.replace("hard=hardness", "nosuch=hardness"), encoding="utf-8")
    with pytest.raises(InputError, match=r"\[compare\] combine = 'nosuch=hardness': no such strategy"):
        _load(path)
