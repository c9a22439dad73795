"""Strategy arms: every strategy's random control matches its kept rows per method; the arms that add no
text touch exactly the rows confident learning flags; several strategies and the cleaning arms in one
`hardaug compare`, with class names in every table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine import mine as m
from engine.arms import align_scores, allocate, budget_sets, cleaning_sets, hardness_weights
from engine.cli import main
from engine.config import OofConfig
from engine.errors import InputError
from engine.experiment import arm_training_sets
from engine.oof.kfold import run_oof
from tests.conftest import make_noisy_dataset

NAMES = ["very negative and quite long class name", "negative", "positive", "very positive and also long"]


@pytest.fixture(scope="module")
def noisy_scored(tmp_path_factory) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray]:
    """A few hundred generated rows with 12% flipped labels, their out-of-fold predictions and mined scores."""
    frame, flipped = make_noisy_dataset(n=480, k=4, flip=0.12, seed=3)
    parts = tmp_path_factory.mktemp("arms_oof") / "parts"
    result = run_oof(frame, None, config=OofConfig(n_folds=4), k=4, class_names=list("0123"), parts_dir=parts)
    return frame, m.score(result.oof, 4), flipped


def _aug(n_by_method: dict[str, int], prefix: str) -> pl.DataFrame:
    rows = [
        {"text": f"{method} {prefix} {i}", "label": i % 4, "method": method}
        for method, n in n_by_method.items()
        for i in range(n)
    ]
    return pl.DataFrame(rows, schema={"text": pl.String, "label": pl.Int64, "method": pl.String})


def _per_method(frame: pl.DataFrame, base_rows: int) -> dict[str, int]:
    added = frame.slice(base_rows)["text"].str.split(" ").list.first()
    return dict(sorted(added.value_counts().iter_rows()))


def test_every_strategy_gets_its_own_control_with_the_same_kept_rows_per_method():
    train = pl.DataFrame({"text": ["a", "b", "c"], "label": [0, 1, 2]})
    strategies = {
        "notebook": _aug({"eda": 40, "backtranslate": 9}, "nb"),
        "misclassified": _aug({"eda": 70}, "mis"),
        "clean-hard": _aug({"eda": 40, "backtranslate": 9}, "clean"),
    }
    pool = _aug({"eda": 200, "backtranslate": 30}, "pool")
    for seed in (0, 1):
        sets = arm_training_sets(train, strategies=strategies, random_pool=pool, all_pool=None, seed=seed)
        assert list(sets) == [
            "baseline",
            "notebook",
            "notebook-random",
            "misclassified",
            "misclassified-random",
            "clean-hard",
            "clean-hard-random",
        ]
        for name in strategies:
            control = sets[f"{name}-random"]
            assert control.height == sets[name].height
            assert _per_method(control, train.height) == _per_method(sets[name], train.height)
            assert control.slice(train.height)["text"].str.contains(" pool ").all()
        # two strategies of the same size still get their own draws
        assert sets["notebook-random"]["text"].to_list() != sets["clean-hard-random"]["text"].to_list()
    with pytest.raises(InputError, match=r"strategy 'misclassified'.*eda: need 70, have 50"):
        arm_training_sets(
            train, strategies=strategies, random_pool=_aug({"eda": 50, "backtranslate": 30}, "p"), all_pool=None, seed=0
        )


def test_drop_and_relabel_touch_exactly_the_flagged_rows(noisy_scored):
    frame, scored, flipped = noisy_scored
    flags = scored["label_issue"].to_numpy()
    assert 0 < flags.sum() < len(flags) and (flags & flipped).sum() >= 0.7 * flags.sum()  # real noise is found
    aligned = align_scores(frame, scored, "scores")
    sets = cleaning_sets(aligned, ("drop-label-issues", "relabel", "reweight"), seed=0, relabel_confidence=0.5)

    kept_texts = set(sets["drop-label-issues"]["text"])
    assert sets["drop-label-issues"].height == frame.height - flags.sum()
    assert kept_texts == set(frame.filter(~pl.Series(flags))["text"])
    assert sets["drop-random"].height == sets["drop-label-issues"].height  # the control drops as many

    relabeled = sets["relabel"]["label"].to_numpy()
    changed = relabeled != frame["label"].to_numpy()
    confident = scored["oof_confidence"].to_numpy() >= 0.5
    assert changed.any()
    assert np.array_equal(changed, flags & confident)  # exactly the confident flagged rows, nothing else
    assert np.array_equal(relabeled[changed], scored["oof_pred"].to_numpy()[changed])
    assert sets["relabel"]["text"].to_list() == frame["text"].to_list()

    weights = sets["reweight"]["weight"].to_numpy()
    assert weights.mean() == pytest.approx(1.0) and weights.max() <= 2 * weights.min() + 1e-12
    hardness = scored["hardness"].to_numpy()
    assert np.array_equal(np.argsort(weights, kind="stable"), np.argsort(hardness, kind="stable"))
    assert sorted(sets["reweight-shuffled"]["weight"].to_list()) == sorted(weights.tolist())
    assert np.array_equal(hardness_weights(np.zeros(3)), np.ones(3))


def test_scores_of_another_training_set_are_refused(noisy_scored):
    frame, scored, _ = noisy_scored
    with pytest.raises(InputError, match=r"5 of 485 training rows have no scores"):
        extra = pl.DataFrame({"id": [f"x{i}" for i in range(5)], "text": ["t"] * 5, "label": [0] * 5})
        align_scores(pl.concat([frame, extra]), scored, "scores.parquet")
    with pytest.raises(InputError, match=r"another label in the scores"):
        align_scores(frame.with_columns((pl.col("label") + 1) % 4), scored, "scores.parquet")


@pytest.mark.slow
def test_compare_cli_with_strategies_cleaning_arms_and_class_names(noisy_scored, tmp_path: Path, capsys):
    frame, scored, _ = noisy_scored
    test, _ = make_noisy_dataset(n=300, k=4, flip=0.0, seed=3)  # same class words (same seed), clean labels
    labels = pl.col("label").replace_strict(list(range(4)), NAMES, return_dtype=pl.String)
    frame.with_columns(labels).write_csv(tmp_path / "train.csv")
    test.with_columns(labels).with_columns(("t" + pl.col("id")).alias("id")).write_csv(tmp_path / "test.csv")
    scored.write_parquet(tmp_path / "scores.parquet")
    hard = scored.sort("hardness", descending=True)
    for name, rows in (("hardest", hard.head(30)), ("misclassified", scored.filter(~pl.col("is_correct")).head(40))):
        variants = 2 if name == "hardest" else 1  # the hardest 30 rows, two variants each
        pl.concat(
            [
                rows.select(
                    pl.col("text") + f" x{v}", "label", "hardness", source_id=pl.col("id"), method=pl.lit("eda")
                )
                for v in range(variants)
            ]
        ).sort("source_id", maintain_order=True).write_parquet(tmp_path / f"{name}.parquet")
    scored.sample(150, seed=1).select("text", "label", method=pl.lit("eda")).with_columns(
        pl.col("text") + " y"
    ).write_parquet(tmp_path / "random.parquet")
    out = tmp_path / "cmp"
    names = NAMES
    code = main(
        [
            "compare",
            "--train",
            str(tmp_path / "train.csv"),
            "--test",
            str(tmp_path / "test.csv"),
            "--strategy",
            f"hardest={tmp_path / 'hardest.parquet'}",
            "--strategy",
            f"misclassified={tmp_path / 'misclassified.parquet'}",
            "--random",
            str(tmp_path / "random.parquet"),
            "--budget",
            "hardest",
            "--scores",
            str(tmp_path / "scores.parquet"),
            "--class-names",
            ",".join(names),
            "--seeds",
            "0,1",
            "--bootstrap",
            "100",
            "--out-dir",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    arms = results["arms"]
    assert list(arms) == [
        "baseline",
        "hardest",
        "hardest-random",
        "misclassified",
        "misclassified-random",
        "hardest-uniform",
        "hardest-uniform-random",
        "hardest-proportional",
        "hardest-proportional-random",
        "drop-label-issues",
        "drop-random",
        "relabel",
        "reweight",
        "reweight-shuffled",
    ]
    assert arms["hardest"]["added_rows"] == arms["hardest-random"]["added_rows"] == 60
    assert arms["misclassified"]["added_rows"] == arms["misclassified-random"]["added_rows"] == 40
    flags = int(scored["label_issue"].sum())
    assert arms["drop-label-issues"]["changed_rows"] == arms["drop-random"]["changed_rows"] == flags
    assert arms["hardest-uniform"]["added_rows"] == arms["hardest-proportional"]["added_rows"] == 30
    assert arms["hardest-proportional-random"]["added_rows"] == 30
    assert "hardest-proportional_vs_hardest-uniform" in results["comparisons"]
    assert "vs hardest-uniform" in results["verdicts"]["hardest-proportional"]
    assert set(results["verdicts"]) == {
        "hardest",
        "misclassified",
        "hardest-uniform",
        "hardest-proportional",
        "drop-label-issues",
        "relabel",
        "reweight",
    }
    assert results["comparisons"]["hardest_vs_hardest-random"]["macro_f1"]["ci_low"] <= 1
    assert len(results["comparisons"]["relabel_vs_baseline"]["per_class_f1"]["diff"]) == 4
    markdown, svg = (out / "results.md").read_text(), (out / "results.svg").read_text()
    for name in names:  # class names, whole, in the terminal, the markdown tables and the plot
        assert f"F1 {name}" in printed and f"F1 {name}" in markdown and name in svg
    assert "hardest: " in markdown and "vs its control hardest-random" in markdown


def test_budget_same_total_more_variants_for_harder_sources():
    assert allocate(np.ones(4), np.array([5, 5, 5, 5]), 8).tolist() == [2, 2, 2, 2]
    assert allocate(np.array([3.0, 1.0]), np.array([10, 10]), 8).tolist() == [6, 2]
    assert allocate(np.array([3.0, 1.0]), np.array([4, 10]), 8).tolist() == [4, 4]  # capped, total kept
    assert allocate(np.ones(2), np.array([1, 1]), 5).sum() == 2  # never more than there is
    hardness = np.repeat([0.9, 0.6, 0.3, 0.1], 4)
    kept = pl.DataFrame(
        {
            "text": [f"t{i}" for i in range(16)],
            "label": [0] * 16,
            "method": ["eda"] * 16,
            "source_id": np.repeat(["a", "b", "c", "d"], 4),
            "hardness": hardness,
        }
    )
    sets = budget_sets(kept, share=0.5, source="kept")
    uniform, proportional = (sets[k].group_by("source_id").len().sort("source_id")["len"].to_list() for k in sets)
    assert uniform == [2, 2, 2, 2] and sum(proportional) == 8
    assert proportional == sorted(proportional, reverse=True) and proportional[0] > 2 > proportional[-1]
    assert sets["uniform"]["text"].to_list()[:2] == ["t0", "t1"]  # file order within a source
    with pytest.raises(InputError, match="source_id and hardness"):
        budget_sets(kept.drop("hardness"), share=0.5, source="kept")


def test_budget_differs_from_uniform_on_a_narrow_band_of_hardness():
    """A selection of hard samples has hardness within a few hundredths: quotas still follow it."""
    n = 40
    hardness = np.linspace(0.95, 0.99, n)
    kept = pl.DataFrame(
        {
            "text": [f"t{i}.{v}" for i in range(n) for v in range(2)],
            "label": [0] * 2 * n,
            "method": ["eda"] * 2 * n,
            "source_id": [f"s{i:02d}" for i in range(n) for _ in range(2)],
            "hardness": np.repeat(hardness, 2),
        }
    )
    sets = budget_sets(kept, share=0.5, source="kept")
    counts = {k: sets[k].group_by("source_id").len().sort("source_id")["len"].to_list() for k in sets}
    assert counts["uniform"] == [1] * n and sets["proportional"].height == n
    quota = dict(sets["proportional"].group_by("source_id").len().iter_rows())
    assert quota.get("s39") == 2 and "s00" not in quota  # the hardest source gets 2, the easiest none


def test_weight_schemes_hardness_clean_hardness_and_class_balanced():
    from engine.weights import scheme_weights

    scored = pl.DataFrame(
        {
            "label": [0, 0, 0, 0, 0, 0, 1, 1, 2, 2],
            "hardness": [0.1, 0.9, 0.2, 0.0, 0.5, 0.3, 0.95, 0.4, 0.8, 0.05],
            "label_issue": [False, True, False, False, False, False, True, False, False, False],
        }
    )
    hard = scheme_weights("hardness", scored)
    assert hard.mean() == pytest.approx(1.0)
    assert np.allclose(hard, (1 + scored["hardness"].to_numpy()) / (1 + scored["hardness"].to_numpy()).mean())
    # class-balanced: n / (K n_c): 10 / (3 * 6), 10 / (3 * 2), 10 / (3 * 2); mean 1
    balanced = scheme_weights("class-balanced", scored)
    assert balanced.tolist() == pytest.approx([10 / 18] * 6 + [10 / 6] * 4) and balanced.mean() == pytest.approx(1.0)
    clean = scheme_weights("clean-hardness", scored)
    issue = scored["label_issue"].to_numpy()
    assert clean.mean() == pytest.approx(1.0)
    assert clean[issue].max() < clean[~issue].min()  # a suspected label error never outweighs a clean row
    assert (clean[issue] < hard[issue]).all() and (clean[~issue] > hard[~issue]).all()  # down, not up
    assert np.allclose(clean[~issue] / clean[~issue][0], hard[~issue] / hard[~issue][0])  # the rest as hardness
    with pytest.raises(InputError, match=r"unknown weight scheme\(s\) \['hard'\]; expected"):
        scheme_weights("hard", scored)


@pytest.mark.slow
def test_compare_cli_weight_arms_and_a_strategy_combined_with_weights(noisy_scored, tmp_path: Path, capsys):
    frame, scored, _ = noisy_scored
    test, _ = make_noisy_dataset(n=200, k=4, flip=0.0, seed=3)
    frame.write_csv(tmp_path / "train.csv")
    test.with_columns(("t" + pl.col("id")).alias("id")).write_csv(tmp_path / "test.csv")
    scored.write_parquet(tmp_path / "scores.parquet")
    hard = scored.sort("hardness", descending=True).head(30)
    hard.select(pl.col("text") + " x", "label", "hardness", source_id=pl.col("id"), method=pl.lit("eda")).write_parquet(
        tmp_path / "hardest.parquet"
    )
    base = ["compare", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv")]
    base += ["--strategy", f"hardest={tmp_path / 'hardest.parquet'}", "--scores", str(tmp_path / "scores.parquet")]
    base += ["--seeds", "0,1", "--bootstrap", "100", "--cleaning", "none"]
    with pytest.raises(SystemExit):  # an unknown scheme is a usage error, before anything is read
        main([*base, "--weights", "hardness,inverse", "--out-dir", str(tmp_path / "bad")])
    assert "expected distinct weight schemes of hardness" in capsys.readouterr().err
    assert main([*base, "--combine", "hardest=heavy", "--out-dir", str(tmp_path / "bad")]) == 2
    assert main([*base, "--combine", "nosuch=hardness", "--out-dir", str(tmp_path / "bad")]) == 2
    assert "--combine nosuch=hardness: no such strategy" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

    out = tmp_path / "cmp"
    argv = [*base, "--weights", "hardness,clean-hardness,class-balanced", "--combine", "hardest=hardness"]
    assert main([*argv, "--out-dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    arms = results["arms"]
    assert list(arms) == [
        "baseline",
        "hardest",
        "hardness",
        "hardness-shuffled",
        "clean-hardness",
        "clean-hardness-shuffled",
        "class-balanced",
        "hardest+hardness",
    ]
    assert arms["hardness"]["control"] == "hardness-shuffled" and arms["class-balanced"]["control"] is None
    assert arms["hardest+hardness"]["added_rows"] == 30 and arms["hardness"]["changed_rows"] == frame.height
    comparisons = results["comparisons"]
    for name in ("hardness_vs_class-balanced", "clean-hardness_vs_class-balanced", "hardest+hardness_vs_hardest",
                 "hardest+hardness_vs_hardness", "clean-hardness_vs_clean-hardness-shuffled"):  # fmt: skip
        assert name in comparisons
    m = len(comparisons)
    assert results["adjustment"] == {**results["adjustment"], "method": "holm", "comparisons": m}
    verdicts = results["verdicts"]
    assert set(verdicts) == {"hardest", "hardness", "clean-hardness", "class-balanced", "hardest+hardness"}
    assert all(line.endswith(f"(Holm-adjusted for {m} comparisons)") for line in verdicts.values())
    assert "vs class-balanced" in verdicts["hardness"] and "vs hardness" in verdicts["hardest+hardness"]
    assert f"Holm's method for {m} comparisons" in (out / "results.md").read_text()
    # the weighted rows of the hardness arm are those of the old reweight arm: one fit, reused
    sets = arm_training_sets(frame, random_pool=None, all_pool=None, seed=0, flagged=align_scores(frame, scored, "s"),
                             cleaning=("reweight",), weights=("hardness",))  # fmt: skip
    assert sets["hardness"].equals(sets["reweight"])
