"""Out-of-fold predictions: schema, no leakage, fold-averaged test probabilities, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.config import OofConfig
from engine.errors import InputError
from engine.oof import assign_folds, run_oof
from engine.progress import Progress
from engine.schema import prob_columns


def test_schema_and_one_prediction_per_row(noisy_dataset, tmp_path: Path):
    frame, _ = noisy_dataset
    test = frame.head(50).select("id", "text")  # unlabeled test set
    result = run_oof(
        frame, test, config=OofConfig(n_folds=4), k=4, class_names=list("0123"), parts_dir=tmp_path / "parts"
    )
    oof = result.oof
    assert oof.columns == ["id", "text", "label", "fold", "oof_pred", "oof_confidence", *prob_columns(4)]
    assert oof["id"].to_list() == frame["id"].to_list()  # input order, every row exactly once
    assert (oof["fold"].to_numpy() == assign_folds(frame["label"].to_numpy(), 4, 42)).all()
    probs = oof.select(prob_columns(4)).to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert (oof["oof_pred"].to_numpy() == probs.argmax(axis=1)).all()
    # test probabilities are the mean over the fold models
    folds = result.test_folds
    assert folds.height == 4 * test.height and sorted(folds["fold"].unique().to_list()) == [0, 1, 2, 3]
    mean = folds.group_by("id", maintain_order=True).agg(pl.col(prob_columns(4)).mean())
    np.testing.assert_allclose(
        result.test.select(prob_columns(4)).to_numpy(), mean.select(prob_columns(4)).to_numpy(), atol=1e-12
    )
    assert "test" not in result.metrics  # no labels, no test accuracy


def test_no_leakage_random_labels_stay_at_chance(noisy_dataset, tmp_path: Path):
    """A model that had seen a row would recall its random label; out of fold it cannot."""
    frame, _ = noisy_dataset
    rng = np.random.default_rng(1)
    shuffled = frame.with_columns(pl.Series("label", rng.integers(0, 4, size=frame.height)))
    result = run_oof(
        shuffled,
        None,
        config=OofConfig(n_folds=5),
        k=4,
        class_names=list("0123"),
        parts_dir=tmp_path / "parts",
    )
    assert result.metrics["oof"]["accuracy"] < 0.35  # chance is 0.25


def test_resume_after_interruption_gives_identical_result(noisy_dataset, tmp_path: Path):
    frame, _ = noisy_dataset
    config = OofConfig(n_folds=4)
    kwargs = {"config": config, "k": 4, "class_names": list("0123")}
    full = run_oof(frame, frame.head(30), parts_dir=tmp_path / "full", **kwargs)

    def stop_after_two(p: Progress) -> None:
        if p.unit == "fold" and p.detail["fold"] == 1:
            raise KeyboardInterrupt

    job = tmp_path / "resumed"
    parts = job / "parts"
    with pytest.raises(KeyboardInterrupt):
        run_oof(frame, frame.head(30), parts_dir=job, on_progress=stop_after_two, **kwargs)
    assert sorted(p.name for p in parts.glob("fold_*.parquet")) == ["fold_00.parquet", "fold_01.parquet"]
    before = (parts / "fold_00.parquet").stat().st_mtime_ns
    seen = []
    resumed = run_oof(
        frame, frame.head(30), parts_dir=job, on_progress=lambda p: seen.append(p.detail["fold"]), **kwargs
    )
    assert (parts / "fold_00.parquet").stat().st_mtime_ns == before  # reused, not recomputed
    assert seen == [0, 1, 2, 3]
    assert resumed.oof.equals(full.oof) and resumed.test.equals(full.test)
    assert resumed.metrics == full.metrics


@pytest.mark.slow
def test_folds_in_two_processes_give_the_same_result_as_one(noisy_dataset, tmp_path: Path):
    """Each fold is fitted on one thread from the same shared counts: which process fits it must not matter."""
    frame, _ = noisy_dataset
    kwargs = {"config": OofConfig(n_folds=3), "k": 4, "class_names": list("0123")}
    one = run_oof(frame, frame.head(40), parts_dir=tmp_path / "one", **kwargs)
    two = run_oof(frame, frame.head(40), parts_dir=tmp_path / "two", processes=2, **kwargs)
    assert two.oof.equals(one.oof) and two.test.equals(one.test) and two.test_folds.equals(one.test_folds)
    assert two.metrics == one.metrics
    for fold in range(3):
        name = f"fold_{fold:02d}.parquet"
        assert pl.read_parquet(tmp_path / "two" / "parts" / name).equals(
            pl.read_parquet(tmp_path / "one" / "parts" / name)
        )


def test_shared_counts_give_the_features_of_a_vectorizer_fitted_on_the_training_rows(noisy_dataset):
    """The n-grams are counted once over every text (no labels); a fold's vocabulary and idf must still come
    from its training rows alone, exactly as a TfidfVectorizer fitted on them."""
    from engine import tfidf
    from engine.config import TfidfConfig

    frame, _ = noisy_dataset
    texts = frame["text"].to_list()
    config = TfidfConfig(max_features=500)  # small: the max_features cut and its ties are exercised
    folds = assign_folds(frame["label"].to_numpy(), 4, 42)
    train, held = np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)
    vectorizer = tfidf.build_model(config).steps[0][1]
    expected_train = vectorizer.fit_transform([texts[i] for i in train])
    expected_held = vectorizer.transform([texts[i] for i in held])
    got_train, (got_held,) = tfidf.fold_features(config, tfidf.count_ngrams(config, texts), train, [held])
    assert got_train.shape == expected_train.shape and got_held.shape == expected_held.shape
    assert (got_train != expected_train).nnz == 0 and (got_held != expected_held).nnz == 0


def test_tfidf_folds_fitted_another_way_are_another_job(noisy_dataset, monkeypatch):
    # folds saved before every TF-IDF fit ran on one thread must not be resumed as if they were the same job
    from engine import tfidf
    from engine.oof import kfold

    frame, _ = noisy_dataset
    before = kfold.fingerprint(OofConfig(n_folds=3), 4, frame, None)
    monkeypatch.setattr(tfidf, "FIT", "threads")
    assert kfold.fingerprint(OofConfig(n_folds=3), 4, frame, None) != before


def test_parts_of_another_job_are_refused(noisy_dataset, tmp_path: Path):
    frame, _ = noisy_dataset
    run_oof(frame, None, config=OofConfig(n_folds=3), k=4, class_names=list("0123"), parts_dir=tmp_path)
    with pytest.raises(InputError, match=r"different job.*--restart"):
        run_oof(
            frame,
            None,
            config=OofConfig(n_folds=3, seed=7),
            k=4,
            class_names=list("0123"),
            parts_dir=tmp_path,
        )
    run_oof(
        frame,
        None,
        config=OofConfig(n_folds=3, seed=7),
        k=4,
        class_names=list("0123"),
        parts_dir=tmp_path,
        restart=True,
    )


def test_class_smaller_than_fold_count_is_refused(noisy_dataset, tmp_path: Path):
    frame, _ = noisy_dataset
    tiny = pl.concat([frame.filter(pl.col("label") != 3), frame.filter(pl.col("label") == 3).head(2)])
    with pytest.raises(InputError, match=r"3 \(2 rows\).*fewer rows than folds \(5\)"):
        run_oof(tiny, None, config=OofConfig(n_folds=5), k=4, class_names=list("0123"), parts_dir=tmp_path / "p")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.slow
def test_killed_cli_run_resumes_to_the_same_file(sample_oof: Path, tmp_path: Path, processes: str):
    """SIGKILL the real CLI after its first fold; no final file may exist; the rerun matches a clean run
    (made with one process: the number of processes must not change a byte)."""
    root = sample_oof.parent
    out = tmp_path / "oof"
    cmd = [
        sys.executable,
        "-m",
        "engine.cli",
        "oof",
        "--train",
        str(root / "train.csv"),
        "--test",
        str(root / "test.csv"),
        "--folds",
        "3",
        "--out-dir",
        str(out),
        "--processes",
        processes,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / ".job" / "parts" / "fold_00.parquet").exists():
        assert proc.poll() is None, "the run ended before its first fold was saved"
        assert time.monotonic() < deadline
        time.sleep(0.01)  # a fold of this small set takes well under a second
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "oof.parquet").exists() and not (out / "metrics.json").exists()
    assert not list(out.glob(".*tmp-*"))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for name in ("oof.parquet", "test_probs.parquet", "test_fold_probs.parquet"):
        assert pl.read_parquet(out / name).equals(pl.read_parquet(sample_oof / name)), name
    assert (out / "oof.parquet").read_bytes() == (sample_oof / "oof.parquet").read_bytes()
    assert not (out / ".job" / "parts").exists() and not (out / ".parts").exists()
