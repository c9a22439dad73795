"""Scores and selection: invariants, the notebook preset, and recovery of injected label noise."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import mine as m
from engine.config import OofConfig
from engine.oof import run_oof
from engine.schema import prob_columns


def _frame(probs: np.ndarray, labels, texts=None) -> pl.DataFrame:
    n, k = probs.shape
    frame = pl.DataFrame(
        {
            "id": list(range(n)),
            "text": texts if texts is not None else ["충분히 긴 리뷰 텍스트입니다"] * n,
            "label": np.asarray(labels, dtype=np.int64),
        }
    )
    return frame.hstack(pl.DataFrame(probs, schema=prob_columns(k)))


@st.composite
def predictions(draw):
    k = draw(st.integers(2, 6))
    n = draw(st.integers(1, 40))
    raw = draw(st.lists(st.lists(st.floats(0, 1), min_size=k, max_size=k), min_size=n, max_size=n))
    probs = np.asarray(raw) + 1e-9
    probs /= probs.sum(axis=1, keepdims=True)
    labels = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    return probs, np.asarray(labels), k


@settings(max_examples=200, deadline=None)
@given(predictions())
@pytest.mark.slow
def test_score_invariants(case):
    probs, labels, k = case
    s = m.score(_frame(probs, labels), k, label_issues=False)
    p_true = probs[np.arange(len(labels)), labels]
    np.testing.assert_allclose(s["p_true"].to_numpy(), p_true)
    hardness = s["hardness"].to_numpy()
    assert ((hardness >= 0) & (hardness <= 1)).all()
    np.testing.assert_allclose(hardness, 1 - p_true)
    # monotone: a larger p_true never gives a larger hardness
    order = np.argsort(p_true)
    assert (np.diff(hardness[order]) <= 1e-12).all()
    entropy = s["entropy"].to_numpy()
    assert (entropy >= -1e-12).all() and (entropy <= math.log(k) + 1e-9).all()
    margin = s["margin"].to_numpy()
    assert ((margin >= -1 - 1e-12) & (margin <= 1 + 1e-12)).all()
    correct = s["is_correct"].to_numpy()
    assert (correct == (probs.argmax(axis=1) == labels)).all()
    assert (margin[~correct] <= 1e-12).all() and (margin[correct] >= -1e-12).all()
    np.testing.assert_allclose(s["oof_confidence"].to_numpy(), probs.max(axis=1))
    assert sorted(s["hardness_rank"].to_list()) == list(range(1, len(labels) + 1))


def test_entropy_bounds_are_reached():
    uniform = np.full((1, 4), 0.25)
    sure = np.array([[1.0, 0.0, 0.0, 0.0]])
    s = m.score(_frame(np.vstack([uniform, sure]), [0, 0]), 4, label_issues=False)
    assert s["entropy"].to_list() == pytest.approx([math.log(4), 0.0])


def notebook_case() -> tuple[pl.DataFrame, set[int]]:
    """30 rows with hardness (i+1)/30, built so each step of the notebook chain removes a known row.

    top 20%: hardness >= quantile(0.8) = 0.8067 keeps rows 24..29
    >= 10 chars drops 24 (short text); confidence <= 0.7 drops 29 (all mass on one class);
    classes 1,3 drops 25 (label 0); rows 26, 27, 28 have hardness 0.9, 0.933, 0.967, their 0.7 quantile
    is 0.9467, so only row 28 is left.
    """
    n, k = 30, 4
    labels = [1] * n
    labels[25], labels[27] = 0, 3
    probs = np.zeros((n, k))
    for i in range(n):
        h = (i + 1) / n
        probs[i, labels[i]] = 1 - h
        others = [c for c in range(k) if c != labels[i]]
        if i == 29:
            probs[i, others[0]] = h  # confident and wrong
        else:
            probs[i, others] = h / 3
    texts = ["열 글자가 넘는 리뷰 텍스트"] * n
    texts[24] = "짧다"
    return _frame(probs, labels, texts), {28}


def test_notebook_preset_by_hand():
    frame, expected = notebook_case()
    mined, trace = m.select(m.score(frame, 4, label_issues=False), m.PRESETS["notebook"])
    assert set(mined.filter(pl.col("selected"))["id"].to_list()) == expected
    assert [t["rows"] for t in trace] == [30, 6, 5, 4, 3, 1]


def _notebook_pandas(frame: pl.DataFrame, k: int) -> set:
    """The motivating notebook's chain, written independently in pandas."""
    df = frame.to_pandas()
    probs = df[prob_columns(k)].to_numpy()
    df["hardness"] = 1 - probs[np.arange(len(df)), df["label"].to_numpy()]
    df["confidence"] = probs.max(axis=1)
    hard = df[df["hardness"] >= df["hardness"].quantile(0.8)]
    hard = hard[hard["text"].str.len() >= 10]
    hard = hard[hard["confidence"] <= 0.7]
    hard = hard[hard["label"].isin([1, 3])]
    hard = hard[hard["hardness"] >= hard["hardness"].quantile(0.7)]
    return set(hard["id"])


def test_notebook_preset_matches_pandas_on_random_predictions():
    rng = np.random.default_rng(3)
    n, k = 5000, 4
    probs = rng.dirichlet(np.ones(k) * 0.8, size=n)
    texts = ["가" * int(x) for x in rng.integers(1, 40, size=n)]
    frame = _frame(probs, rng.integers(0, k, size=n), texts)
    mined, _ = m.select(m.score(frame, k, label_issues=False), m.PRESETS["notebook"])
    assert set(mined.filter(pl.col("selected"))["id"].to_list()) == _notebook_pandas(frame, k)


def test_steps_apply_in_order_and_compose():
    frame, _ = notebook_case()
    scored = m.score(frame, 4, label_issues=False)
    a, _ = m.select(scored, [m.Classes((3,)), m.TopQuantile(0.5)])
    b, _ = m.select(scored, [m.TopQuantile(0.5), m.Classes((3,))])
    assert a["selected"].sum() == 1  # the only class-3 row
    assert b["selected"].sum() == 1 and set(b.filter("selected")["id"]) == {27}
    limited, trace = m.select(scored, [m.OnlyMisclassified(), m.Limit(3)])
    assert set(limited.filter("selected")["id"]) == {27, 28, 29} and trace[-1]["rows"] == 3
    c, _ = m.select(scored, [m.MinHardness(0.5), m.MaxConfidence(0.3), m.MinChars(10)])
    chosen = c.filter("selected")
    assert (chosen["hardness"] >= 0.5).all() and (chosen["oof_confidence"] <= 0.3).all()
    assert (chosen["n_chars"] >= 10).all()


def test_per_class_quantile_takes_each_class_share():
    rng = np.random.default_rng(0)
    n, k = 2000, 4
    labels = rng.integers(0, k, size=n)
    probs = rng.dirichlet(np.ones(k), size=n)
    probs[labels == 2] = np.array([0.01, 0.01, 0.97, 0.01])  # class 2 is easy, but still gets its 10%
    probs[labels == 2] += rng.uniform(0, 1e-3, size=((labels == 2).sum(), k))
    probs /= probs.sum(axis=1, keepdims=True)
    scored = m.score(_frame(probs, labels), k, label_issues=False)
    overall, _ = m.select(scored, [m.TopQuantile(0.1)])
    per_class, _ = m.select(scored, [m.TopQuantile(0.1, per_class=True)])
    assert overall.filter(pl.col("selected") & (pl.col("label") == 2)).height == 0
    for c in range(k):
        size = (labels == c).sum()
        got = per_class.filter(pl.col("selected") & (pl.col("label") == c)).height
        assert abs(got - 0.1 * size) <= 1


def test_injected_label_noise_is_found_and_ranked_hardest(noisy_dataset, tmp_path: Path):
    frame, flipped = noisy_dataset
    result = run_oof(
        frame, None, config=OofConfig(n_folds=5), k=4, class_names=list("0123"), parts_dir=tmp_path / "parts"
    )
    scored = m.score(result.oof, 4)
    flagged = scored["label_issue"].to_numpy()
    precision = (flagged & flipped).sum() / flagged.sum()
    recall = (flagged & flipped).sum() / flipped.sum()
    # Measured: precision 1.00, recall 0.90 (132 of 1,200 flipped); the hardest 132 rows hold 98% of them.
    assert precision >= 0.8 and recall >= 0.8, (precision, recall)
    # Flipped rows dominate the hardest ranks: of the hardest |flipped| rows, most are flipped.
    hardest = scored["hardness_rank"].to_numpy() <= flipped.sum()
    assert (hardest & flipped).sum() / flipped.sum() >= 0.8
    assert (
        scored.filter(pl.Series(flipped))["hardness"].mean() > 3 * scored.filter(pl.Series(~flipped))["hardness"].mean()
    )


def test_classes_step_outside_range_is_refused():
    with pytest.raises(ValueError, match=r"classes \[7\] do not exist.*ids 0\.\.3"):
        m.check_steps([m.Classes((1, 7))], 4, list("abcd"))


def _weak_case(k: int, seed: int = 0) -> pl.DataFrame:
    """Predictions whose accuracy differs by class: class c is right with probability 0.35 + 0.5 c / k."""
    rng = np.random.default_rng(seed)
    n = 300 * k
    labels = rng.integers(0, k, size=n)
    right = rng.random(n) < 0.35 + 0.5 * labels / k
    pred = np.where(right, labels, (labels + rng.integers(1, k, size=n)) % k)
    probs = rng.dirichlet(np.full(k, 3.0), size=n) * 0.85
    probs[np.arange(n), pred] += 0.15
    texts = ["가" * int(x) for x in rng.integers(5, 40, size=n)]
    return _frame(probs / probs.sum(axis=1, keepdims=True), labels, texts)


@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_weak_classes_preset_fits_any_number_of_classes(k):
    from sklearn.metrics import f1_score

    scored = m.score(_weak_case(k), k, label_issues=False)
    f1 = f1_score(scored["label"], scored["oof_pred"], average=None, labels=list(range(k)), zero_division=0)
    weakest = set(np.argsort(f1)[: max(1, k // 2)].tolist())
    assert np.allclose(m.class_f1(scored["label"].to_numpy(), scored["oof_pred"].to_numpy(), k), f1)
    mined, trace = m.select(scored, m.PRESETS["weak-classes"])
    chosen = mined.filter("selected")
    assert chosen.height > 0 and set(chosen["label"].unique().to_list()) <= weakest
    assert trace[4]["step"] == f"weak classes (lowest out-of-fold F1): {','.join(map(str, sorted(weakest)))}"
    # The class step is the notebook chain's only change: with the notebook's classes it is the notebook preset.
    if k == 4:
        steps = [m.Classes(tuple(sorted(weakest))) if isinstance(s, m.Classes) else s for s in m.PRESETS["notebook"]]
        same, _ = m.select(scored, steps)
        assert same["selected"].to_list() == mined["selected"].to_list()


@pytest.mark.parametrize("k", [2, 3, 7])
def test_notebook_preset_on_other_than_four_classes_names_the_general_preset(k, tmp_path: Path, capsys):
    from engine.cli import main

    path = tmp_path / "oof.parquet"
    _weak_case(k).write_parquet(path)
    out = tmp_path / "mine"
    assert main(["mine", "--input", str(path), "--preset", "notebook", "--out-dir", str(out), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert f"{k} classes" in err and "--preset weak-classes" in err and not out.exists()
    assert main(["mine", "--input", str(path), "--preset", "weak-classes", "--out-dir", str(out), "--no-report"]) == 0


def test_equal_classes_takes_the_same_count_from_every_class():
    scored = m.score(_weak_case(3, seed=2), 3, label_issues=False)
    mined, _ = m.select(scored, [m.OnlyMisclassified(), m.EqualClasses()])
    counts = mined.filter("selected").group_by("label").len()["len"].to_list()
    wrong = scored.filter(~pl.col("is_correct")).group_by("label").len()["len"].min()
    assert counts == [wrong] * 3


def test_limit_per_class_takes_the_hardest_n_of_every_class():
    scored = m.score(_weak_case(3, seed=4), 3, label_issues=False)
    mined, trace = m.select(scored, [m.TopQuantile(0.5), m.ClassLimit(20)])
    chosen = mined.filter("selected")
    assert chosen.group_by("label").len().sort("label")["len"].to_list() == [20, 20, 20]
    assert trace[-1] == {"step": "hardest 20 per class", "rows": 60}
    for c in range(3):
        top = scored.filter(pl.col("label") == c)["hardness"].sort(descending=True)[19]
        assert chosen.filter(pl.col("label") == c)["hardness"].min() >= top


def _predictions_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(3), size=60)
    labels = rng.integers(0, 3, size=60)
    path = tmp_path / "preds.parquet"
    _frame(probs, labels, [f"리뷰 {i} 번째 텍스트" for i in range(60)]).write_parquet(path)
    return path


def test_mine_writes_weights_and_refuses_an_unknown_scheme_before_writing(tmp_path: Path, capsys):
    from engine.cli import main

    preds = _predictions_file(tmp_path)
    with pytest.raises(SystemExit) as exc:  # argparse: a usage error naming the choices
        main(["mine", "--input", str(preds), "--out-dir", str(tmp_path / "bad"), "--weights", "hardest"])
    assert exc.value.code == 2 and "invalid choice: 'hardest'" in capsys.readouterr().err
    code = main(["mine", "--input", str(preds), "--out-dir", str(tmp_path / "bad"), "--weights", "clean-hardness",
                 "--no-label-issues", "--no-report"])  # fmt: skip
    assert code == 2 and "--no-label-issues" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())

    out = tmp_path / "mine"
    code = main(["mine", "--input", str(preds), "--out-dir", str(out), "--weights", "class-balanced", "--no-report"])
    assert code == 0
    weights = pl.read_parquet(out / "weights.parquet")
    scores = pl.read_parquet(out / "scores.parquet")
    assert weights.columns == ["id", "weight"] and weights["id"].to_list() == scores["id"].to_list()
    assert weights["weight"].mean() == pytest.approx(1.0)


def test_mine_outputs_appear_together_or_not_at_all(tmp_path: Path, monkeypatch):
    """A run that fails while writing (here: the disk fills at summary.json) leaves the previous run's
    files exactly as they were, and no temporary file: never a new scores.parquet beside an old summary."""
    import errno

    from engine import mining
    from engine.cli import main

    preds = _predictions_file(tmp_path)
    out = tmp_path / "mine"
    assert main(["mine", "--input", str(preds), "--out-dir", str(out), "--no-report", "--weights", "hardness"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {*mining.OUTPUTS, mining.WEIGHTS}

    real = mining.json_text

    def full_disk(obj):
        if "rows" in obj:  # the summary (the label map has only "classes"), written after the Parquet files
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj)

    monkeypatch.setattr(mining, "json_text", full_disk)
    with pytest.raises(OSError, match="No space left"):
        mining.mine_files(
            mining.PredictionsFile(preds),
            out,
            steps=[m.TopQuantile(0.5)],
            config=mining.AnalysisConfig(),
            write_report=False,
            weights="class-balanced",
        )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
