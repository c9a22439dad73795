"""The comparison: arm construction, the paired bootstrap, resumable cells, the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.bootstrap import paired_bootstrap
from engine.cli import main
from engine.cli.common import SAMPLE_DIR
from engine.errors import InputError
from engine.experiment import CompareConfig, arm_training_sets, compare
from engine.progress import Progress

SAMPLE = Path(str(SAMPLE_DIR))


def _aug(n_by_method: dict[str, int], offset: int = 0) -> pl.DataFrame:
    rows = [
        {"text": f"{m} 증강 문장 {offset + i}", "label": i % 4, "method": m}
        for m, n in n_by_method.items()
        for i in range(n)
    ]
    return pl.DataFrame(rows, schema={"text": pl.String, "label": pl.Int64, "method": pl.String})


def test_random_arm_adds_as_many_rows_per_method_as_targeted():
    train = pl.DataFrame({"text": ["a", "b"], "label": [0, 1]})
    targeted = _aug({"eda": 30, "backtranslate": 12})
    pool = _aug({"eda": 100, "backtranslate": 50}, offset=1000)
    sets = arm_training_sets(train, targeted=targeted, random_pool=pool, all_pool=None, seed=3)
    assert sets["random"].height == sets["targeted"].height == train.height + 42
    drawn = sets["random"].tail(42)
    assert drawn.filter(pl.col("text").str.starts_with("eda")).height == 30
    assert drawn.filter(pl.col("text").str.starts_with("backtranslate")).height == 12
    other = arm_training_sets(train, targeted=targeted, random_pool=pool, all_pool=None, seed=4)["random"]
    assert other.tail(42)["text"].to_list() != drawn["text"].to_list()  # seeds draw different rows
    with pytest.raises(InputError, match=r"eda: need 30, have 5"):
        arm_training_sets(
            train, targeted=targeted, random_pool=_aug({"eda": 5, "backtranslate": 50}), all_pool=None, seed=0
        )


def test_bootstrap_interval_covers_a_known_difference():
    rng = np.random.default_rng(0)
    n = 4000
    labels = rng.integers(0, 2, size=n)
    # arm a is right 80% of the time, arm b 70%: the true accuracy difference is 0.10
    a = [np.where(rng.random(n) < 0.8, labels, 1 - labels) for _ in range(3)]
    b = [np.where(rng.random(n) < 0.7, labels, 1 - labels) for _ in range(3)]
    result = paired_bootstrap(labels, a, b, "accuracy", 2, resamples=400)
    assert result["ci_low"] < 0.10 < result["ci_high"]
    assert result["ci_low"] > 0.05 and result["p_le_0"] == 0.0
    same = paired_bootstrap(labels, a, a, "accuracy", 2, resamples=200)
    assert same["diff"] == 0.0 and same["ci_low"] == 0.0 == same["ci_high"]


def _direct_bootstrap(labels, preds_a, preds_b, metric, *, resamples, seed):
    """The per-resample loop compare used before the vectorized bootstrap: sklearn on every resample."""
    rng = np.random.default_rng(seed)
    n = len(labels)

    def diff(idx):
        y = labels[idx]
        return float(np.mean([metric(y, a[idx]) - metric(y, b[idx]) for a, b in zip(preds_a, preds_b, strict=True)]))

    point = diff(np.arange(n))
    samples = np.array([diff(rng.integers(0, n, size=n)) for _ in range(resamples)])
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return {"diff": point, "ci_low": float(lo), "ci_high": float(hi), "p_le_0": float((samples <= 0).mean())}


@pytest.mark.parametrize(("n", "k"), [(301, 3), (250, 9)])
@pytest.mark.slow
def test_vectorized_bootstrap_equals_a_direct_per_resample_computation(n, k):
    """Same resamples, same formulas: the intervals are those of sklearn on each resample, to the last bit
    (odd n: a draw of the generator that would shift if the resamples were drawn in one call)."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(5)
    labels = rng.integers(0, k, size=n)
    labels[labels == k - 1] = 0  # a class absent from the labels: sklearn's zero_division path
    noisy = [np.where(rng.random(n) < q, labels, rng.integers(0, k, size=n)) for q in (0.6, 0.5, 0.7, 0.4)]
    preds_a, preds_b = noisy[:2], noisy[2:]
    direct_metrics = {
        "accuracy": lambda y, p: float((y == p).mean()),
        "macro_f1": lambda y, p: float(f1_score(y, p, average="macro", labels=list(range(k)), zero_division=0)),
    }
    for name, fn in direct_metrics.items():
        fast = paired_bootstrap(labels, preds_a, preds_b, name, k, resamples=150, seed=17)
        assert fast == _direct_bootstrap(labels, preds_a, preds_b, fn, resamples=150, seed=17), name
    per_class = paired_bootstrap(labels, preds_a, preds_b, "per_class_f1", k, resamples=150, seed=17)
    for c in range(k):
        fn = lambda y, p, c=c: float(f1_score(y, p, average=None, labels=list(range(k)), zero_division=0)[c])  # noqa: E731
        direct = _direct_bootstrap(labels, preds_a, preds_b, fn, resamples=150, seed=17)
        assert [per_class[key][c] for key in ("diff", "ci_low", "ci_high", "p_le_0")] == list(direct.values())


@pytest.fixture(scope="module")
def small_data() -> tuple[pl.DataFrame, pl.DataFrame]:
    train = pl.read_csv(SAMPLE / "train.csv").head(1500).with_columns(pl.col("text").fill_null(""))
    test = pl.read_csv(SAMPLE / "test.csv").head(400).with_columns(pl.col("text").fill_null(""))
    return train, test


@pytest.mark.slow
def test_cells_resume_after_a_kill(small_data, tmp_path: Path):
    train, test = small_data
    targeted = train.head(200).select(pl.col("text") + " 진짜", "label").with_columns(method=pl.lit("eda"))
    pool = train.tail(300).select(pl.col("text") + " 진짜", "label").with_columns(method=pl.lit("eda"))
    config = CompareConfig(seeds=(0, 1), bootstrap=100)
    kwargs = {
        "k": 4,
        "class_names": list("0123"),
        "targeted": targeted,
        "random_pool": pool,
        "all_pool": None,
        "config": config,
        "cells_dir": tmp_path / "cells",
    }

    def kill_after_two(p: Progress, done=[]) -> None:  # noqa: B006 (counts calls within this test)
        if p.unit == "cell":
            done.append(p.detail["arm"])
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compare(train, test, on_progress=kill_after_two, **kwargs)
    parts = tmp_path / "cells" / "parts"  # the cells are parts of a job folder, named by their cell key
    manifest = json.loads((tmp_path / "cells" / "manifest.json").read_text())
    assert [p["meta"] for p in manifest["parts"]] == [{"arm": "baseline", "seed": 0}, {"arm": "targeted", "seed": 0}]
    saved = sorted(p.name for p in parts.glob("*.parquet"))
    assert len(saved) == 2
    before = {p: (parts / p).stat().st_mtime_ns for p in saved}
    resumed = compare(train, test, **kwargs)
    assert {p: (parts / p).stat().st_mtime_ns for p in saved} == before  # reused
    fresh = compare(train, test, **{**kwargs, "cells_dir": tmp_path / "fresh"})
    assert resumed == fresh
    assert set(resumed["arms"]) == {"baseline", "targeted", "random"}
    assert resumed["arms"]["random"]["added_rows"] == resumed["arms"]["targeted"]["added_rows"] == 200
    assert set(resumed["comparisons"]) == {"targeted_vs_baseline", "targeted_vs_random", "random_vs_baseline"}


@pytest.mark.slow
def test_compare_cli_end_to_end(small_data, tmp_path: Path, capsys):
    train, test = small_data
    train_path, test_path = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_csv(train_path)
    test.write_csv(test_path)
    aug = (
        train.head(100)
        .select("id", pl.col("text") + " ㅋㅋ", "label")
        .with_columns(method=pl.lit("eda"), kept=pl.Series([True, False] * 50))
    )
    aug.write_parquet(tmp_path / "targeted.parquet")
    train.tail(200).select("id", pl.col("text") + " ㅋㅋ", "label").with_columns(method=pl.lit("eda")).write_parquet(
        tmp_path / "random.parquet"
    )
    out = tmp_path / "cmp"
    argv = [
        "compare",
        "--train",
        str(train_path),
        "--test",
        str(test_path),
        "--targeted",
        str(tmp_path / "targeted.parquet"),
        "--random",
        str(tmp_path / "random.parquet"),
        "--seeds",
        "0",
        "--bootstrap",
        "100",
        "--out-dir",
        str(out),
    ]
    code = main(argv)
    assert code == 0
    printed = capsys.readouterr().out
    assert "targeted vs random" in printed and "| baseline | 0 |" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["arms"]["targeted"]["added_rows"] == 50  # only kept rows
    assert (out / "results.svg").read_text().lstrip().startswith("<?xml")
    before = (out / "results.json").read_bytes()

    # the same command again: up to date, nothing run; a result file edited by hand: run again, from the cells
    assert main(argv) == 0 and "is up to date" in capsys.readouterr().out
    (out / "results.md").write_text("edited")
    assert main(argv) == 0 and "is up to date" not in capsys.readouterr().out
    assert (out / "results.json").read_bytes() == before and (out / "results.md").read_text() != "edited"
    # a second compare into the same folder while one runs is refused, naming the holder
    from engine.jobs import locked

    with locked(out / ".job", out):
        assert main(argv) == 2
    assert "being written by another hardaug run (pid" in capsys.readouterr().err


def test_compare_refuses_augmentations_without_labels(small_data, tmp_path: Path, capsys):
    train, test = small_data
    train.write_csv(tmp_path / "train.csv")
    test.write_csv(tmp_path / "test.csv")
    pl.DataFrame({"text": ["x"], "method": ["eda"]}).write_parquet(tmp_path / "aug.parquet")
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "--train",
            str(tmp_path / "train.csv"),
            "--test",
            str(tmp_path / "test.csv"),
            "--targeted",
            str(tmp_path / "aug.parquet"),
            "--out-dir",
            str(out),
        ]
    )
    assert code == 2 and "no column 'label'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_compare_counts_and_drops_test_rows_that_overlap_train(small_data, tmp_path: Path):
    train, test = small_data
    train.write_csv(tmp_path / "train.csv")
    planted = train.slice(100, 7).with_columns(("planted" + pl.col("id").cast(pl.String)).alias("id"))
    pl.concat([test.with_columns(pl.col("id").cast(pl.String)), planted.with_columns(pl.col("id"))]).write_csv(
        tmp_path / "test.csv"
    )
    aug = train.head(50).select(pl.col("text") + " ㅋㅋ", "label").with_columns(method=pl.lit("eda"))
    aug.write_parquet(tmp_path / "targeted.parquet")
    runs = {}
    for flag in ([], ["--drop-test-overlap"]):
        out = tmp_path / f"cmp{len(flag)}"
        argv = ["compare", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv")]
        argv += ["--targeted", str(tmp_path / "targeted.parquet"), "--seeds", "0", "--bootstrap", "100"]
        assert main([*argv, "--out-dir", str(out), *flag]) == 0
        runs[len(flag)] = json.loads((out / "results.json").read_text())
    kept, dropped = runs[0], runs[1]
    overlap = kept["test_overlap"]
    assert overlap["test_rows"] == test.height + 7 and overlap["exact"] >= 7 and overlap["dropped"] == 0
    shared = overlap["exact"] + overlap["near"]
    assert kept["test_rows"] == test.height + 7
    assert dropped["test_overlap"]["dropped"] == shared and dropped["test_rows"] == test.height + 7 - shared


def test_holm_adjusts_known_p_values_and_reads_intervals_at_its_levels():
    from engine.bootstrap import holm

    adjusted, levels = holm([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running maximum
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # tested at 0.05/4, 0.05/3, then 0.03 > 0.05/2 stops the step-down: the rest are read at 0.05/2
    assert levels.tolist() == pytest.approx([0.05 / 3, 0.025, 0.025, 0.0125])
    assert holm([0.2])[0].tolist() == [0.2] and holm([0.2])[1].tolist() == [0.05]
    assert holm([0.5, 0.9])[0].tolist() == [1.0, 1.0]  # capped at 1


def test_adjusted_interval_of_a_single_comparison_is_the_raw_one_and_widens_with_more():
    from engine.experiment import compare_pairs

    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, size=400)
    probs = {
        arm: [np.eye(3)[np.where(rng.random(400) < acc, labels, rng.integers(0, 3, size=400))] for _ in range(2)]
        for arm, acc in (("baseline", 0.6), ("a", 0.7), ("b", 0.62), ("c", 0.6))
    }
    one = compare_pairs(labels, probs, [("a", "baseline")], k=3, resamples=300)["a_vs_baseline"]
    for metric in ("accuracy", "macro_f1"):
        c = one[metric]
        assert (c["ci_low_adj"], c["ci_high_adj"], c["p_holm"]) == (c["ci_low"], c["ci_high"], c["p"])
    many = compare_pairs(labels, probs, [("a", "baseline"), ("b", "baseline"), ("c", "baseline")], k=3, resamples=300)
    for c in (many[name]["macro_f1"] for name in many):
        assert c["ci_low_adj"] <= c["ci_low"] and c["ci_high_adj"] >= c["ci_high"] and c["p_holm"] >= c["p"]
        # the adjusted interval excludes 0 exactly where Holm rejects
        assert (c["ci_low_adj"] > 0 or c["ci_high_adj"] < 0) == (c["p_holm"] <= 0.05)
    assert many["a_vs_baseline"]["macro_f1"]["ci_low"] == one["macro_f1"]["ci_low"]  # raw: the same resamples
