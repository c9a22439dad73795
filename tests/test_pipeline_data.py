"""`hardaug run` against its data: checks at load that need the training labels (presets, class ids and
names, training sizes, [random] factor), the shipped strategies file on 2, 3 and 7 classes, a strategy whose
selection is empty, and `[data] sizes` (one pipeline per stratified subsample, the by-size table and plot)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import polars as pl
import pytest
from conftest import make_noisy_dataset

from engine.cli import main
from engine.cli.common import SAMPLE_DIR
from engine.cli.run import PIPELINES
from engine.errors import InputError
from engine.pipeline import load_config, run_pipeline
from engine.sizes import allocate, subsample

SHIPPED = Path(str(PIPELINES / "strategies.toml"))

CONFIG = """
[data]
train = "train.csv"
test = "test.csv"
out = "{out}"
{data}

[oof]
folds = 3

[mine]
select = "--top-quantile 0.3"
no-label-issues = true

[augment.eda]
n = 1

[filter]
no-similarity = true

[compare]
seeds = [0]
bootstrap = 100
"""


def _data(folder: Path, *, n: int, k: int, test: int = 90, seed: int = 0) -> Path:
    """Generated data with `k` classes (n training rows, `test` test rows) in `folder`."""
    frame, _ = make_noisy_dataset(n=n + test, k=k, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    frame.head(n).write_csv(folder / "train.csv")
    frame.tail(test).write_csv(folder / "test.csv")
    return folder


def _config(folder: Path, *, data: str = "", text: str = CONFIG, k: int = 3, n: int = 240) -> Path:
    _data(folder, n=n, k=k)
    path = folder / "pipeline.toml"
    path.write_text(text.format(data=data, out=folder / "runs"), encoding="utf-8")
    return path


def _load(path: Path, *overrides: str):
    return load_config(path, default_data=Path(str(SAMPLE_DIR)), overrides=overrides)


# ---------------------------------------------------------------------------------------------------------
# Checked at load, against the data: one line naming the table and the key, nothing written


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["random.factor=inf"], r"\[random\] factor = inf: expected a finite number > 0"),
        (["random.factor=nan"], r"\[random\] factor = nan: expected a finite number > 0"),
        (["random.factor=-inf"], r"\[random\] factor = -inf"),
        (["compare.class-names=5"], r"\[compare\] class-names: 1 names \['5'\] for data with 3 classes"),
        (["mine.class-names='a,b'"], r"\[mine\] class-names: 2 names \['a', 'b'\] for data with 3 classes"),
        (["mine.select='--preset notebook'"], r"\[mine\] select: --preset notebook keeps classes 1,3.*3 classes"),
        (["mine.select='--classes 0,5'"], r"\[mine\] select: --classes 0,5: classes \[5\] do not exist.*ids 0..2"),
        (["mine.select='--limit-like x'"], r"\[mine\] select: --limit-like/--limit-per-class-like name an earlier"),
        (["data.sizes=[241]"], r"\[data\] sizes: 241 is larger than the training set \(240 rows in .*train.csv\)"),
        (["data.sizes=[6]"], r"\[data\] sizes: 6 rows leave class '\d' 2 rows .* fewer than the 3 folds.*at least"),
        (["data.sizes=[0]"], r"\[data\] sizes: 0 is neither a whole number >= 1 nor \"all\""),
        (["data.sizes=['most']"], r"\[data\] sizes: 'most' is neither"),
        (["data.sizes=[100, 100]"], r"\[data\] sizes = \[100, 100\]: a size is given twice"),
        (["data.sizes=100"], r"\[data\] sizes = 100: expected a list"),
        (["data.size-seeds=[1]"], r"\[data\] size-seeds without sizes"),
        (["data.sizes=[100]", "data.size-seeds=[-1]"], r"\[data\] size-seeds = \[-1\]: expected whole numbers"),
        (["oof.folds"], r"--set 'oof.folds': expected TABLE.KEY=VALUE"),
    ],
)
def test_values_the_data_cannot_take_are_refused_at_load(tmp_path: Path, overrides: list[str], message: str):
    path = _config(tmp_path)
    with pytest.raises(InputError, match=message):
        _load(path, *overrides)
    assert not (tmp_path / "runs").exists()


def test_the_cli_refuses_in_one_line_before_any_stage(tmp_path: Path, capsys: pytest.CaptureFixture):
    path = _config(tmp_path, k=2)
    out = tmp_path / "runs"
    for override in ("random.factor=inf", "compare.class-names=5", "mine.select=--preset=notebook"):
        for dry in ([], ["--dry-run"]):
            assert main(["run", str(path), "--set", override, *dry]) != 0
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "pipeline.toml: [" in err[0] and "Traceback" not in err[0], err
            assert not out.exists()


def test_set_overrides_any_key_and_data_files_from_the_current_folder(tmp_path: Path, monkeypatch):
    path = _config(tmp_path / "config")
    other = _data(tmp_path / "elsewhere", n=120, k=2)
    monkeypatch.chdir(tmp_path)
    config = _load(path, "data.train=elsewhere/train.csv", "oof.folds=4", "compare.seeds=[1, 2]", "augment.eda.n=3")
    assert config.train == other / "train.csv" and config.classes.k == 2 and sum(config.classes.counts) == 120
    assert config.parsed["oof"].config.n_folds == 4 and config.parsed["augment.eda"].config.n == 3
    assert config.parsed["compare"].config.seeds == (1, 2)


def test_limit_like_names_an_earlier_strategy(tmp_path: Path):
    text = CONFIG.replace('[mine]\nselect = "--top-quantile 0.3"\n', "[mine]\n") + (
        '\n[strategies]\nhard = "--top-quantile 0.3"\nlike = "--only-misclassified --limit-like hard"\n'
    )
    config = _load(_config(tmp_path, text=text))
    assert config.strategies["like"] == ("--only-misclassified", "--limit-like", "hard")
    plan = run_pipeline(config, main, dry_run=True)["plan"]
    like = shlex.split(next(p for p in plan if p["stage"] == "mine-like")["command"])
    assert like[like.index("--limit-like") + 1] == f"{tmp_path}/runs/stages/mine-hard-<key>/hard.parquet"
    for later in ('like = "--limit-like later"\nlater = "--top-quantile 0.1"', 'like = "--limit-like=like"'):
        (tmp_path / "bad.toml").write_text(
            text.format(data="", out="runs").replace('like = "--only-misclassified --limit-like hard"', later)
        )
        with pytest.raises(InputError, match=r"\[strategies\] like: --limit-like (later|like): expected the name of"):
            _load(tmp_path / "bad.toml")


# ---------------------------------------------------------------------------------------------------------
# Stratified subsamples


def test_allocation_is_proportional_and_sums_to_the_size():
    assert allocate(10, [50, 30, 20]) == [5, 3, 2]
    assert allocate(7, [50, 30, 20]) == [4, 2, 1]  # 3.5, 2.1, 1.4: the leftover row to the largest remainder
    for size in (1, 13, 99, 100):
        assert sum(allocate(size, [50, 30, 20])) == size
    frame = pl.DataFrame({"id": range(100), "label": [0] * 50 + [1] * 30 + [2] * 20})
    sample = subsample(frame, frame["label"].to_numpy(), 10, seed=1)
    assert sample["label"].value_counts().sort("label")["count"].to_list() == [5, 3, 2]
    assert sample["id"].is_sorted() and sample.equals(subsample(frame, frame["label"].to_numpy(), 10, seed=1))
    assert not sample.equals(subsample(frame, frame["label"].to_numpy(), 10, seed=2))


# ---------------------------------------------------------------------------------------------------------
# Whole runs (heavy: run them under the shared lock)


@pytest.mark.parametrize(("k", "n"), [(2, 240), (3, 300), (7, 420)])
@pytest.mark.slow
def test_the_shipped_strategies_file_runs_on_any_class_count(tmp_path: Path, k: int, n: int):
    """The shipped file, unchanged, through `hardaug run`; only the data and the costs are set (--set)."""
    data = _data(tmp_path / "data", n=n, k=k, seed=k)
    out = tmp_path / "runs"
    cheap = ["oof.folds=3", "compare.seeds=[0]", "compare.bootstrap=100", "augment.eda.n=1"]
    argv = ["run", str(SHIPPED), "--set", f"data.train={data / 'train.csv'}", "--set", f"data.test={data / 'test.csv'}"]
    argv += ["--set", f"data.out={out}", *(word for item in cheap for word in ("--set", item))]
    assert main(argv) == 0
    summary = json.loads((out / "pipeline.json").read_text())
    hard = {name: pl.read_parquet(path) for name, path in summary["strategies"].items()}
    assert list(hard) == ["weak-classes", "misclassified", "clean-hard", "per-class"]
    for name in ("misclassified", "clean-hard", "per-class"):  # --limit-like weak-classes: at most as many
        assert hard[name].height <= hard["weak-classes"].height
    results = json.loads((Path(summary["results"]) / "comparison.json").read_text())
    compared = [name for name in hard if name in results.get("arms", {})]
    skipped = results.get("not_compared", {})
    assert set(compared) | set(skipped) == set(hard) and not set(compared) & set(skipped)
    for about in skipped.values():
        assert about["kept"] == 0 and about["emptied_by"]


EMPTY = CONFIG.replace('[mine]\nselect = "--top-quantile 0.3"\n', "[mine]\n") + (
    '\n[strategies]\nhard = "--top-quantile 0.3"\nnone = "--min-hardness 1.5"\nlike = "--limit-like none"\n'
)


@pytest.mark.slow
def test_a_strategy_with_no_rows_is_not_compared_and_the_run_goes_on(tmp_path: Path):
    config = _load(_config(tmp_path, text=EMPTY))
    summary = run_pipeline(config, main)
    assert summary["not_compared"] == {"none": ["mine-none"], "like": ["mine-like"]}
    stages = [s["stage"] for s in summary["stages"]]
    assert "eda-none" not in stages and "filter-eda-like" not in stages and stages[-1] == "compare"
    results = Path(summary["results"])
    arms = json.loads((results / "comparison.json").read_text())
    assert "hard" in arms["arms"] and "none" not in arms["arms"]
    assert arms["not_compared"]["none"] == {"kept": 0, "emptied_by": ["mine-none"]}
    assert "| none | 0 kept, not compared | mine-none |" in (results / "comparison.md").read_text()
    # a rerun finds every stage cached and says the same
    again = run_pipeline(config, main)
    assert all(s["cached"] for s in again["stages"]) and again["not_compared"] == summary["not_compared"]


@pytest.mark.slow
def test_sizes_run_the_pipeline_per_subsample_and_write_the_by_size_table(tmp_path: Path):
    path = _config(tmp_path, data='sizes = [60, "all"]\nsize-seeds = [0, 1]', n=240)
    config = _load(path)
    assert config.sizes == (60, "all") and config.size_seeds == (0, 1)
    plan = run_pipeline(config, main, dry_run=True)["plan"]
    assert [p["stage"] for p in plan if p["stage"].endswith("/oof")] == [
        "size-60-seed-0/oof",
        "size-60-seed-1/oof",
        "size-all/oof",
    ]
    assert not (tmp_path / "runs").exists()
    summary = run_pipeline(config, main)
    results = Path(summary["results"])
    rows = json.loads((results / "by_size.json").read_text())["rows"]
    assert {(r["size"], r["seed"], r["arm"]) for r in rows} == {
        (60, 0, "targeted"),
        (60, 1, "targeted"),
        ("all", None, "targeted"),
    }
    assert all(r["macro_f1_vs_control"] is not None and r["macro_f1_vs_baseline"] is not None for r in rows)
    table = (results / "by_size.md").read_text()
    assert "| 60 | 0 | targeted |" in table and "| all | - | targeted |" in table
    assert (results / "by_size.svg").read_text().lstrip().startswith("<?xml")
    # oof and mining ran on the subsample, stratified; the test set is the same
    for run in summary["runs"]:
        stages = {s["stage"]: Path(s["folder"]) for s in json.loads(Path(run["pipeline"]).read_text())["stages"]}
        oof = pl.read_parquet(stages["oof"] / "oof.parquet")
        assert oof.height == (60 if run["size"] == 60 else 240)
        assert pl.read_parquet(stages["mine"] / "scores.parquet").height == oof.height
        if run["size"] == 60:
            full = pl.read_csv(tmp_path / "train.csv")["label"].value_counts().sort("label")["count"].to_list()
            assert oof["label"].value_counts().sort("label")["count"].to_list() == allocate(60, full)
