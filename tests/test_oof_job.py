"""The oof job folder (engine.oof.job on engine.jobs): "up to date" only over this job's own files, folds
shared by processes running at once, damaged folds redone."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from engine.cli import main
from engine.config import OofConfig
from engine.errors import InputError
from engine.jobs import DONE, Job
from engine.oof import job as oof_job
from engine.oof import kfold
from engine.validate import prepare_dataset


@pytest.fixture(scope="module")
def frames(sample_oof: Path):
    root = sample_oof.parent
    train, names = prepare_dataset(pl.read_csv(root / "train.csv"), source="train", complete=True)
    test, _ = prepare_dataset(
        pl.read_csv(root / "test.csv"), source="test", label_names=names, num_classes=len(names), map_source="train"
    )
    return train, test, names


@pytest.mark.slow
def test_a_job_killed_in_its_final_writes_never_makes_another_up_to_date(frames, tmp_path, monkeypatch):
    """Finished job A; job B (another seed) killed between oof.parquet and metrics.json; A again must not
    answer "up to date" over B's oof.parquet."""
    train, test, names = frames
    out = tmp_path / "oof"
    common = {"k": len(names), "class_names": names, "out_dir": out}
    a = oof_job.run_oof_job(train, test, config=OofConfig(n_folds=3), **common)
    a_bytes = (out / "oof.parquet").read_bytes()
    assert not a.up_to_date and oof_job.run_oof_job(train, test, config=OofConfig(n_folds=3), **common).up_to_date

    real_write_json = oof_job.write_json

    def killed_at_metrics(obj, path):
        if Path(path).name == "metrics.json":
            raise KeyboardInterrupt  # B dies after its oof.parquet, before its metrics and its done marker
        return real_write_json(obj, path)

    monkeypatch.setattr(oof_job, "write_json", killed_at_metrics)
    with pytest.raises(KeyboardInterrupt):
        oof_job.run_oof_job(train, test, config=OofConfig(n_folds=3, seed=7), **common)
    monkeypatch.undo()
    assert (out / "oof.parquet").read_bytes() != a_bytes  # B's file is there...
    assert not (out / oof_job.JOB / DONE).exists()  # ...and nothing vouches for it
    with pytest.raises(InputError, match=r"different job.*--restart"):
        oof_job.run_oof_job(train, test, config=OofConfig(n_folds=3), **common)
    again = oof_job.run_oof_job(train, test, config=OofConfig(n_folds=3), restart=True, **common)
    assert not again.up_to_date and (out / "oof.parquet").read_bytes() == a_bytes


def test_an_edited_output_is_not_up_to_date(frames, tmp_path):
    train, test, names = frames
    kwargs = {"config": OofConfig(n_folds=3), "k": len(names), "class_names": names, "out_dir": tmp_path}
    oof_job.run_oof_job(train, test, **kwargs)
    pl.read_parquet(tmp_path / "oof.parquet").head(5).write_parquet(tmp_path / "oof.parquet")
    run = oof_job.run_oof_job(train, test, **kwargs)
    assert not run.up_to_date and pl.read_parquet(tmp_path / "oof.parquet").height == train.height


@pytest.mark.slow
def test_only_folds_processes_at_once_then_one_run_assembles(sample_oof, tmp_path, monkeypatch, caplog, capsys):
    """Two `--only-folds` processes at once on disjoint folds share the job folder; the assembling run is
    refused while one runs, then reuses every fold but one that was truncated by hand, which it redoes; the
    result is byte for byte the one of a run without --only-folds."""
    root = sample_oof.parent
    args = ["oof", "--train", str(root / "train.csv"), "--test", str(root / "test.csv"), "--folds", "3"]
    args += ["--out-dir", str(tmp_path / "oof")]
    cmd = [sys.executable, "-m", "engine.cli", *args]
    procs = [subprocess.Popen([*cmd, "--only-folds", ids], stderr=subprocess.PIPE, text=True) for ids in ("0", "1,2")]
    for proc in procs:
        assert proc.wait() == 0, proc.stderr.read()
    job = tmp_path / "oof" / oof_job.JOB
    manifest = json.loads((job / "manifest.json").read_text())
    assert sorted(p["name"] for p in manifest["parts"]) == ["fold_00", "fold_01", "fold_02"]  # no record lost
    assert not (tmp_path / "oof" / "oof.parquet").exists()

    # while a fold process holds the job, the assembling run is refused, naming it
    key = manifest["fingerprint"]
    with Job(job, key, shared=True):
        assert main(args) == 2
    assert "being written by another hardaug run (pid" in capsys.readouterr().err

    victim = job / "parts" / "fold_01.parquet"
    victim.write_bytes(victim.read_bytes()[:100])
    fitted = []
    real_fit = kfold._fit_tfidf_fold
    monkeypatch.setattr(kfold, "_fit_tfidf_fold", lambda *a, **kw: fitted.append(1) or real_fit(*a, **kw))
    with caplog.at_level(logging.WARNING):
        assert main(args) == 0
    assert "fold_01.parquet" in caplog.text and len(fitted) == 1  # only the truncated fold was fitted again
    for name in ("oof.parquet", "test_probs.parquet", "test_fold_probs.parquet", "label_map.json"):
        assert (tmp_path / "oof" / name).read_bytes() == (sample_oof / name).read_bytes(), name
    metrics = json.loads((tmp_path / "oof" / "metrics.json").read_text())
    expected = json.loads((sample_oof / "metrics.json").read_text())
    assert {k: v for k, v in metrics.items() if k not in ("seconds", "train")} == {
        k: v for k, v in expected.items() if k not in ("seconds", "train")
    }
    assert not (job / "parts").exists() and not (job / "scratch").exists()
    assert main(args) == 0 and "is up to date" in capsys.readouterr().out


def test_a_fold_swapped_for_another_is_named_and_redone(sample_oof, tmp_path, caplog):
    """Issue 22: a part swapped for another, its size and sha256 updated in the manifest, passed every check.
    The folds are of equal size here, so the swapped fold would have been assembled without a word."""
    import hashlib

    root = sample_oof.parent
    args = ["oof", "--train", str(root / "train.csv"), "--test", str(root / "test.csv"), "--folds", "3"]
    args += ["--out-dir", str(tmp_path / "oof")]
    assert main([*args, "--only-folds", "0,1"]) == 0
    job = tmp_path / "oof" / oof_job.JOB
    swapped = job / "parts" / "fold_01.parquet"
    swapped.write_bytes((job / "parts" / "fold_00.parquet").read_bytes())
    manifest = json.loads((job / "manifest.json").read_text())
    for part in manifest["parts"]:
        if part["name"] == "fold_01":
            part["size"], part["sha256"] = swapped.stat().st_size, hashlib.sha256(swapped.read_bytes()).hexdigest()
    (job / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        assert main(args) == 0
    assert f"{swapped}: does not hold the rows fold 1 holds out" in caplog.text
    for name in ("oof.parquet", "test_probs.parquet", "test_fold_probs.parquet"):
        assert (tmp_path / "oof" / name).read_bytes() == (sample_oof / name).read_bytes(), name
