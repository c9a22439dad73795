"""Input crafted to hurt, or made by a bad day: a label id of 10**12, `inf` labels, model folders that ship
code or pickled weights, a full disk under oof. Each ends in one line that names the file (or folder) and
the row, with no traceback and nothing written, and nothing in a model folder ever runs.

Every test runs the CLI as a user does."""

from __future__ import annotations

import subprocess
from pathlib import Path

import polars as pl
import pytest

from engine.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "engine" / "data" / "sample"


def refused(code: int, capsys, *patterns: str, exit_code: int = 2) -> str:
    """The command stopped with one error line (progress bars aside) holding every pattern."""
    err = capsys.readouterr().err
    assert code == exit_code, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("hardaug ")]
    assert len(errors) == 1, f"expected one error line, got {err!r}"
    for pattern in patterns:
        assert pattern in errors[0], f"{pattern!r} not in {errors[0]!r}"
    return errors[0]


@pytest.fixture
def train_csv(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    pl.read_csv(SAMPLE / "train.csv").head(200).write_csv(path)
    return path


def relabel(frame: pl.DataFrame, value) -> pl.DataFrame:
    """`frame` with row 5's label replaced by `value` (the column becomes Float64 for a float)."""
    if isinstance(value, float):
        frame = frame.with_columns(pl.col("label").cast(pl.Float64))
    row5 = pl.int_range(pl.len()) == 5
    return frame.with_columns(pl.when(row5).then(pl.lit(value)).otherwise(pl.col("label")).alias("label"))


# ----------------------------------------------------------------------------------------------- labels
BAD_LABELS = {
    "huge": (10**12, ["far outside any class id", "row 5", "at most 10000"]),
    "huge float": (1e30, ["far outside any class id", "row 5"]),
    "inf": (float("inf"), ["infinite labels", "row 5", "label=inf"]),
    "-inf": (float("-inf"), ["infinite labels", "row 5"]),
    "fraction": (1.5, ["non-integer labels", "row 5"]),
}


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
def test_a_bad_label_is_one_line_in_every_command_and_nothing_is_written(
    tmp_path: Path, train_csv: Path, capsys, case: str
):
    value, patterns = BAD_LABELS[case]
    train = pl.read_csv(train_csv)
    bad = tmp_path / "bad.csv"
    relabel(train, value).write_csv(bad)
    predictions = tmp_path / "oof.parquet"  # as hardaug oof writes them, with uniform probabilities
    relabel(train.with_columns([pl.lit(0.25).alias(f"prob_{c}") for c in range(4)]), value).write_parquet(predictions)
    augmented = tmp_path / "aug.parquet"  # filter's rows to check: valid, so the training set is what fails
    train.head(20).with_columns(
        pl.format("{}:eda:0", pl.col("id")).alias("id"), pl.col("id").cast(pl.String).alias("source_id")
    ).write_parquet(augmented)
    out = tmp_path / "out"
    commands = {
        "oof": ["oof", "--train", str(bad), "--out-dir", str(out / "oof")],
        "eda": ["eda", "--input", str(bad), "--out", str(out / "eda.parquet")],
        "mine": ["mine", "--input", str(predictions), "--out-dir", str(out)],
        "filter": ["filter", "--input", str(augmented), "--train", str(bad), "--out", str(out / "kept.parquet")],
        "compare": ["compare", "--train", str(bad), "--test", str(train_csv), "--out-dir", str(out / "cmp")],
    }
    commands["filter"].append("--no-similarity")
    commands["compare"] += ["--targeted", str(augmented), "--seeds", "0"]
    for name, argv in commands.items():
        line = refused(main(argv), capsys, *patterns)
        assert ("oof.parquet" if name == "mine" else "bad.csv") in line, line
        assert not out.exists() or not any(out.rglob("*")), f"{name} wrote {list(out.rglob('*'))}"


def test_a_one_class_training_set_names_the_file(tmp_path: Path, train_csv: Path, capsys):
    one = tmp_path / "one.csv"
    out = tmp_path / "out"
    for label, shown in ((0, "'0'"), ("pos", "'pos'")):
        pl.read_csv(train_csv).with_columns(pl.lit(label).alias("label")).write_csv(one)
        for argv in (
            ["oof", "--train", str(one), "--out-dir", str(out)],
            ["compare", "--train", str(one), "--test", str(one), "--targeted", str(one), "--out-dir", str(out)],
        ):
            refused(main(argv), capsys, "one.csv", f"has the label {shown}", "at least 2 classes")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- options
def test_eda_variants_have_an_upper_bound(tmp_path: Path, train_csv: Path, capsys):
    out = tmp_path / "eda.parquet"
    refused(main(["eda", "--input", str(train_csv), "--out", str(out), "--n", "1000000000"]), capsys, "1..100")
    assert not out.exists()


def test_filter_names_two_outputs_on_one_file(tmp_path: Path, train_csv: Path, capsys):
    out = tmp_path / "f" / "kept.parquet"
    argv = ["filter", "--input", str(train_csv), "--train", str(train_csv), "--out", str(out), "--summary", str(out)]
    refused(main(argv), capsys, "--summary", "--out", "are the same file", "one output would replace the other")
    assert not out.parent.exists() or not any(out.parent.iterdir())


# -------------------------------------------------------------------------------------------- full disk
def test_oof_on_a_full_disk_is_one_line_and_the_same_command_resumes(tmp_path: Path, train_csv: Path, capsys):
    small = tmp_path / "small"
    small.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        argv = ["oof", "--train", str(train_csv), "--folds", "3", "--out-dir", str(small / "oof")]
        # the n-gram counts (numpy arrays in the job's scratch folder) are what does not fit
        refused(main(argv), capsys, "the disk is full", str(small), "run the same command", exit_code=1)
        assert not (small / "oof" / "oof.parquet").exists()
        assert not list((small / "oof").rglob("*.npy")), "a half-written array was left to fill the disk"
        subprocess.run(["mount", "-o", "remount,size=16m", str(small)], check=True)
        assert main(argv) == 0
        assert pl.read_parquet(small / "oof" / "oof.parquet").height == 200
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
