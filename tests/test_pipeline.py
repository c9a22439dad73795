"""`hardaug run`: every stage end to end on a few hundred rows, and the stage cache."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from engine.cli import main
from engine.cli.common import SAMPLE_DIR
from engine.errors import InputError
from engine.pipeline import Runner, load_config, options, run_pipeline, shared_label_model

SAMPLE = Path(str(SAMPLE_DIR))

CONFIG = """
[data]
train = "{train}"
test = "{test}"
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
seeds = "0"
bootstrap = 100
"""


def _write_config(tmp_path: Path, dup: float = 0.95) -> Path:
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    if not train.exists():
        pl.read_csv(SAMPLE / "train.csv").head(600).write_csv(train)
        pl.read_csv(SAMPLE / "test.csv").head(200).write_csv(test)
    path = tmp_path / "pipeline.toml"
    path.write_text(CONFIG.format(train=train, test=test, out=tmp_path / "runs", dup=dup), encoding="utf-8")
    return path


def test_options_map_toml_to_cli():
    assert options({"folds": 3, "no_report": True, "skip": False, "pivot": ["en_XX", "ja_XX"]}) == [
        "--folds",
        "3",
        "--no-report",
        "--pivot",
        "en_XX",
        "--pivot",
        "ja_XX",
    ]


def test_bad_configs_are_refused(tmp_path: Path):
    with pytest.raises(InputError, match="no such pipeline file"):
        load_config(tmp_path / "missing.toml", default_data=SAMPLE)
    bad = tmp_path / "bad.toml"
    bad.write_text("[augment.magic]\nn = 1\n")
    with pytest.raises(InputError, match=r"unknown augmenters \['magic'\]"):
        load_config(bad, default_data=SAMPLE)
    bad.write_text("[oof]\nfolds = 3\n")
    with pytest.raises(InputError, match=r"no \[augment.<method>\] section"):
        load_config(bad, default_data=SAMPLE)


def test_pipeline_end_to_end_and_cache(tmp_path: Path):
    config = load_config(_write_config(tmp_path), default_data=SAMPLE)
    summary = run_pipeline(config, main)
    assert [s["cached"] for s in summary["stages"]] == [False] * len(summary["stages"])
    assert [s["stage"] for s in summary["stages"]] == [
        "oof",
        "mine",
        "label-model",
        "eda-targeted",
        "filter-eda-targeted",
        "eda-random",
        "filter-eda-random",
        "compare",
    ]
    results = json.loads((Path(summary["results"]) / "comparison.json").read_text())
    assert set(results["arms"]) == {"baseline", "targeted", "random"}
    assert results["arms"]["random"]["added_rows"] == results["arms"]["targeted"]["added_rows"] > 0
    assert Path(summary["report"]).exists()
    # one folder with what people read
    assert sorted(p.name for p in Path(summary["results"]).iterdir()) == [
        "comparison.json",
        "comparison.md",
        "comparison.svg",
        "filter-eda-random.summary.json",
        "filter-eda-targeted.summary.json",
        "mine_summary.json",
        "report.html",
    ]

    # the filters' TF-IDF label model is trained once, in the pipeline, and handed to both filter stages
    models = list((tmp_path / "runs" / "stages").glob("label-model-*/label_model.joblib"))
    assert len(models) == 1
    for stage in ("filter-eda-targeted", "filter-eda-random"):
        folder = next(Path(s["folder"]) for s in summary["stages"] if s["stage"] == stage)
        argv = json.loads((folder / ".done.json").read_text())["argv"]
        assert argv[argv.index("--label-model") + 1] == str(models[0])

    again = run_pipeline(config, main)
    assert all(s["cached"] for s in again["stages"])
    # a cached stage still reports what it cost when it ran
    assert [s["seconds"] for s in again["stages"]] == [s["seconds"] for s in summary["stages"]]

    # a new filter threshold reruns both filters; compare reruns exactly when what was kept changed
    kept_before = [pl.read_parquet(p) for arm in ("targeted", "random") for p in again["kept"][arm]]
    changed = load_config(_write_config(tmp_path, dup=0.8), default_data=SAMPLE)
    third = run_pipeline(changed, main)
    rerun = [s["stage"] for s in third["stages"] if not s["cached"]]
    kept_after = [pl.read_parquet(p) for arm in ("targeted", "random") for p in third["kept"][arm]]
    kept_changed = any(not a.equals(b) for a, b in zip(kept_before, kept_after, strict=True))
    assert rerun == ["filter-eda-targeted", "filter-eda-random"] + (["compare"] if kept_changed else [])
    assert kept_changed  # 0.8 rejects more near-duplicates than 0.95 on this data
    assert list((tmp_path / "runs" / "stages").glob("label-model-*/label_model.joblib")) == models  # not retrained


def test_label_model_is_shared_only_for_the_default_tfidf_check(tmp_path: Path):
    train = SAMPLE / "train.csv"
    for table in ({"no-label-check": True}, {"label_model": "my.joblib"}, {"save-label-model": "m.joblib"}):
        assert shared_label_model(table, train, Runner(tmp_path, main)) is None


def test_run_records_each_stage_subprocess_peak_memory(tmp_path: Path):
    """`hardaug run` runs every stage in a fresh process and prints its seconds and peak RSS at the end."""
    from engine.cli.run import _PEAK_RSS_GIB, _format_stages, _run_stage

    train = tmp_path / "train.csv"
    pl.read_csv(SAMPLE / "train.csv").head(300).write_csv(train)
    folder = tmp_path / "runs" / "stages" / "oof-0123"
    assert _run_stage(["oof", "--train", str(train), "--folds", "2", "--out-dir", str(folder)]) == 0
    assert (folder / "oof.parquet").exists() and _PEAK_RSS_GIB["oof-0123"] > 0.05  # Python + polars alone
    assert _run_stage(["oof", "--train", str(tmp_path / "missing.csv"), "--out-dir", str(folder)]) != 0
    table = _format_stages(
        [
            {"stage": "oof", "folder": str(folder), "cached": False, "seconds": 3.5},
            {"stage": "mine", "folder": str(tmp_path / "runs" / "stages" / "mine-1"), "cached": True, "seconds": 9.0},
        ]
    )
    lines = table.splitlines()
    assert lines[1].startswith("mine") and "(cached)" in lines[1]  # slowest first
    assert lines[2].startswith("oof") and "GiB" in lines[2]
