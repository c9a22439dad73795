"""Every bad input stops with a message naming the file, the column, the rows and the fix, and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.cli import main


def notebook_csv(path: Path, n: int = 40, **overrides) -> Path:
    """The motivating notebook's layout: label, review_normalized, class_0_prob..class_3_prob, no id."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=n)
    columns = {
        "label": rng.integers(0, 4, size=n),
        "review_normalized": [f"리뷰 번호 {i} 재밌다" for i in range(n)],
    }
    columns |= {f"class_{c}_prob": probs[:, c] for c in range(4)}
    columns |= overrides
    pl.DataFrame(columns).write_csv(path)
    return path


def run_mine(input_path: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "mine",
            "--input",
            str(input_path),
            "--out-dir",
            str(out),
            "--text-col",
            "review_normalized",
            "--no-label-issues",
            *extra,
        ]
    )


def assert_refused(code: int, capsys, out: Path, *patterns: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    for pattern in patterns:
        assert pattern in err, f"{pattern!r} not in {err!r}"
    assert not out.exists() or not any(out.iterdir()), f"output written: {list(out.iterdir())}"
    return err


@pytest.mark.slow
def test_outside_notebook_file_is_accepted(tmp_path: Path, capsys):
    src = notebook_csv(tmp_path / "preds.csv", n=200)
    out = tmp_path / "out"
    assert run_mine(src, out, "--top-quantile", "0.2") == 0
    hard = pl.read_parquet(out / "hard.parquet")
    assert hard.height == 40 and {"p_true", "hardness", "margin", "entropy", "label_issue"} <= set(hard.columns)
    assert (out / "report.html").exists() and (out / "summary.json").exists()


@pytest.mark.parametrize(
    ("overrides", "patterns"),
    [
        ({"class_2_prob": [float("nan")] + [0.25] * 39}, ["preds.csv", "NaN", "row 0"]),
        ({"class_1_prob": [-0.5] + [0.25] * 39}, ["negative probabilities", "row 0", "softmax"]),
        ({"label": [0] * 38 + [4, 7]}, ["'label'", "outside 0..3", "row 38", "row 39"]),
        ({"review_normalized": list(range(40))}, ["'review_normalized' holds Int64", "--text-col"]),
        ({"class_3_prob": ["a"] * 40}, ["'class_3_prob' holds text that is not a number", "row 0", "--prob-cols"]),
        # a lone "nan" makes polars read the column as text: the message names the NaN and its row
        ({"class_2_prob": ["nan"] + ["0.25"] * 39}, ["NaN probabilities", "row 0", "prob_2=nan"]),
    ],
    ids=["nan-prob", "negative-prob", "label-out-of-range", "text-not-text", "prob-not-number", "nan-text-prob"],
)
def test_bad_values(tmp_path: Path, capsys, overrides, patterns):
    out = tmp_path / "out"
    assert_refused(run_mine(notebook_csv(tmp_path / "preds.csv", **overrides), out), capsys, out, *patterns)


@pytest.mark.slow
def test_rows_not_summing_to_one_need_renormalize(tmp_path: Path, capsys):
    src = notebook_csv(tmp_path / "preds.csv", class_0_prob=[2.0] * 40)
    out = tmp_path / "out"
    assert_refused(run_mine(src, out), capsys, out, "40 rows", "do not sum to 1", "--renormalize")
    assert run_mine(src, out, "--renormalize") == 0
    scores = pl.read_parquet(out / "scores.parquet")
    probs = scores.select([f"prob_{c}" for c in range(4)]).to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_missing_column_suggests_the_close_one(tmp_path: Path, capsys):
    src = notebook_csv(tmp_path / "preds.csv")
    out = tmp_path / "out"
    code = main(["mine", "--input", str(src), "--out-dir", str(out), "--text-col", "review_normalised"])
    assert_refused(code, capsys, out, "no column 'review_normalised'", "Did you mean 'review_normalized'")


def test_missing_prob_columns(tmp_path: Path, capsys):
    src = tmp_path / "preds.csv"
    pl.DataFrame(
        {"text": ["a", "b"], "label": [0, 1], "class_0_prob": [0.5, 0.5], "class_2_prob": [0.5, 0.5]}
    ).write_csv(src)
    out = tmp_path / "out"
    code = main(["mine", "--input", str(src), "--out-dir", str(out)])
    assert_refused(code, capsys, out, "classes [1] are missing", "--prob-cols")


@pytest.mark.parametrize(
    ("ids", "patterns"),
    [
        ([1, 2, 2, *list(range(3, 40))], ["duplicate ids", "row 1", "row 2"]),
        (["a", "", *[f"x{i}" for i in range(38)]], ["empty ids", "row 1"]),
    ],
    ids=["duplicate", "empty"],
)
def test_bad_ids(tmp_path: Path, capsys, ids, patterns):
    src = notebook_csv(tmp_path / "preds.csv", id=ids)
    out = tmp_path / "out"
    assert_refused(run_mine(src, out), capsys, out, "'id'", *patterns)


def test_empty_file_folder_and_missing_file(tmp_path: Path, capsys):
    out = tmp_path / "out"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert_refused(run_mine(empty, out), capsys, out, "empty.csv is empty")
    header_only = tmp_path / "header.csv"
    header_only.write_text("label,review_normalized,class_0_prob,class_1_prob\n")
    assert_refused(run_mine(header_only, out), capsys, out, "header but no rows")
    assert_refused(run_mine(tmp_path, out), capsys, out, "is a folder, not a file")
    assert_refused(run_mine(tmp_path / "nope.parquet", out), capsys, out, "no such file")


@pytest.mark.slow
def test_oof_maps_string_labels_and_saves_the_map(tmp_path: Path, capsys):
    rng = np.random.default_rng(0)
    names = np.array(["neg", "pos", "mid"])
    labels = names[rng.integers(0, 3, size=120)]
    words = {"neg": "별로 최악", "pos": "최고 좋다", "mid": "그냥 보통"}
    train = tmp_path / "train.csv"
    pl.DataFrame(
        {"id": range(120), "text": [f"{words[x]} {i}" for i, x in enumerate(labels)], "label": labels}
    ).write_csv(train)
    out = tmp_path / "oof"
    assert main(["oof", "--train", str(train), "--folds", "3", "--out-dir", str(out)]) == 0
    assert json.loads((out / "label_map.json").read_text())["classes"] == ["mid", "neg", "pos"]
    oof = pl.read_parquet(out / "oof.parquet")
    assert oof["label"].to_list() == [["mid", "neg", "pos"].index(x) for x in labels]
    # mine picks the map up from beside the file and names the classes
    assert main(["mine", "--input", str(out / "oof.parquet"), "--out-dir", str(tmp_path / "mine")]) == 0
    summary = json.loads((tmp_path / "mine" / "summary.json").read_text())
    assert summary["classes"] == ["mid", "neg", "pos"]


def test_oof_bad_train_file_writes_nothing(tmp_path: Path, capsys):
    train = tmp_path / "train.csv"
    pl.DataFrame({"id": [1, 2, 3], "text": ["a", "b", "c"], "label": [0, -1, 1]}).write_csv(train)
    out = tmp_path / "oof"
    code = main(["oof", "--train", str(train), "--folds", "2", "--out-dir", str(out)])
    assert_refused(code, capsys, out, "train.csv", "outside 0..1", "row 1")
