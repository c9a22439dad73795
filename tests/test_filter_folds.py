"""The label check out of fold (issue 21), honest near-duplicate reasons, and crafted `.npz` label models.

Real engines throughout: `hardaug oof` (TF-IDF, and transformers on a tiny random BERT on CPU) writes the
folds and checkpoints that `hardaug filter --oof` judges with; the fold models are compared with models
fitted by hand on each fold's training rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.cli import main
from engine.config import TfidfConfig
from engine.filters import FilterConfig, filter_augmented
from engine.filters.judge import judge_labels
from engine.filters.label import LabelModel, model_arrays
from engine.tfidf import fit_model, predict_proba

DATA = Path(__file__).resolve().parents[1] / "engine" / "data" / "sample"
N_ROWS = 400
OFF = ("--no-similarity", "--no-cheap-checks", "--no-dedup-train", "--no-dedup-augmented")


@pytest.fixture(scope="module")
def oof_job(tmp_path_factory):
    """A small training set and the TF-IDF oof job of it (3 folds)."""
    root = tmp_path_factory.mktemp("oof")
    train = pl.read_csv(DATA / "train.csv", n_rows=N_ROWS).with_columns(pl.col("text").fill_null(""))
    train.write_csv(root / "train.csv")
    assert main(["oof", "--train", str(root / "train.csv"), "--folds", "3", "--out-dir", str(root / "oof")]) == 0
    return root, train.with_columns(pl.col("id").cast(pl.String))


def augmented_rows(train: pl.DataFrame, n: int = 30) -> pl.DataFrame:
    """For each of the first n rows: a copy of it (kept by any relative rule) and the text of a row of another
    class (usually a lower p(label))."""
    head = train.head(n)
    other = train.tail(n)
    copies = head.select((pl.col("id") + ":copy").alias("id"), pl.col("id").alias("source_id"), "text", "label")
    swapped = pl.DataFrame(
        {
            "id": [f"{i}:swap" for i in head["id"]],
            "source_id": head["id"],
            "text": other["text"],
            "label": head["label"],
        }
    )
    return pl.concat([copies, swapped]).with_columns(pl.lit("test").alias("method"))


def run_filter(root: Path, rows: pl.DataFrame, name: str, *extra: str) -> tuple[int, Path]:
    rows.write_parquet(root / f"{name}.aug.parquet")
    out = root / name / "kept.parquet"
    code = main(
        ["filter", "--input", str(root / f"{name}.aug.parquet"), "--train", str(root / "train.csv"),
         "--out", str(out), *OFF, *extra]
    )  # fmt: skip
    return code, out


def judged(out: Path) -> pl.DataFrame:
    rejected = out.with_suffix(".rejected.parquet")
    return pl.concat([pl.read_parquet(out), pl.read_parquet(rejected).drop("source_text")]).sort("id")


# ------------------------------------------------------------------------------------------- out of fold
def test_fold_models_equal_models_fitted_by_hand_on_each_folds_training_rows(oof_job):
    root, train = oof_job
    oof = pl.read_parquet(root / "oof" / "oof.parquet").with_columns(pl.col("id").cast(pl.String))
    rows = augmented_rows(train)
    code, out = run_filter(
        root, rows, "folds", "--oof", str(root / "oof" / "oof.parquet"), "--label-policy", "off",
        "--save-label-model", str(root / "folds.npz"),
    )  # fmt: skip
    assert code == 0
    got = judged(out)
    fold_of = dict(zip(oof["id"].to_list(), oof["fold"].to_list(), strict=True))
    text_of = dict(zip(train["id"].to_list(), train["text"].to_list(), strict=True))
    by_hand = {}
    for fold in range(3):
        rows_in = oof.filter(pl.col("fold") != fold)
        by_hand[fold] = fit_model(TfidfConfig(), rows_in["text"].to_list(), rows_in["label"].to_numpy())
    for row in got.iter_rows(named=True):
        fold = fold_of[row["source_id"]]
        assert row["label_fold"] == fold
        hand = by_hand[fold]
        p = predict_proba(hand, [row["text"], text_of[row["source_id"]]], 4)[:, row["label"]]
        assert row["label_prob"] == pytest.approx(p[0], abs=1e-9)
        assert row["source_label_prob"] == pytest.approx(p[1], abs=1e-9)
    # the out-of-fold source probability is the oof file's, up to the features' float32 summation order
    probs = oof.select("prob_0", "prob_1", "prob_2", "prob_3").to_numpy()
    oof_p = dict(zip(oof["id"].to_list(), probs, strict=True))
    for row in got.iter_rows(named=True):
        assert row["source_label_prob"] == pytest.approx(oof_p[row["source_id"]][row["label"]], abs=1e-4)
    assert got["kept"].all()  # policy off rejects nothing

    # the saved fold models judge exactly alike
    code, again = run_filter(
        root, rows, "saved", "--oof", str(root / "oof" / "oof.parquet"), "--label-model", str(root / "folds.npz"),
        "--label-policy", "off",
    )  # fmt: skip
    assert code == 0
    np.testing.assert_array_equal(judged(again)["label_prob"].to_numpy(), got["label_prob"].to_numpy())


def test_relative_policy_keeps_a_copy_and_rejects_a_fall_past_the_margin(oof_job):
    root, train = oof_job
    rows = augmented_rows(train)
    code, out = run_filter(
        root, rows, "relative", "--oof", str(root / "oof" / "oof.parquet"), "--label-policy", "relative",
        "--label-margin", "0.2",
    )  # fmt: skip
    assert code == 0
    got = judged(out)
    copies = got.filter(pl.col("id").str.ends_with(":copy"))
    assert copies["kept"].all() and (copies["label_prob"] == copies["source_label_prob"]).all()
    swaps = got.filter(pl.col("id").str.ends_with(":swap"))
    fell = swaps["label_prob"] < 0.8 * swaps["source_label_prob"]
    assert fell.any() and (~fell).any()
    assert swaps.filter(fell)["reject_reason"].eq("label_mismatch").all()
    assert swaps.filter(~fell)["kept"].all()


def test_judge_labels_rules():
    probs = np.array([[0.5, 0.5], [0.2, 0.8], [0.45, 0.55], [0.7, 0.3]])
    source = np.array([[0.5, 0.5], [0.2, 0.8], [0.1, 0.9], [0.3, 0.7]])
    labels = np.array([1, 1, 1, 1])
    _, _, relative = judge_labels(probs, source, labels, policy="relative", margin=0.25)
    # 0.5 vs 0.5 (same), 0.8 vs 0.8, 0.55 < 0.75 x 0.9, 0.3 < 0.75 x 0.7
    assert relative.tolist() == [True, True, False, False]
    _, _, absolute = judge_labels(probs, source, labels, policy="absolute", margin=0.25)
    assert absolute.tolist() == [False, True, True, False]  # a tie is not the top class (argmax: first)
    assert judge_labels(probs, source, labels, policy="off", margin=0.25)[2] is None


def test_unknown_policy_is_refused_and_nothing_written(oof_job, capsys):
    root, train = oof_job
    with pytest.raises(SystemExit):
        run_filter(root, augmented_rows(train), "bad", "--label-policy", "strict")
    assert "invalid choice: 'strict'" in capsys.readouterr().err
    assert not (root / "bad").exists()
    with pytest.raises(ValueError, match="label_policy must be one of"):
        FilterConfig(label_policy="strict")


def pipeline(tmp_path: Path, filter_table: str):
    from engine.cli.common import SAMPLE_DIR
    from engine.pipeline import load_config

    toml = tmp_path / "p.toml"
    toml.write_text(f'[data]\nout = "x"\n[augment.eda]\nn = 1\n[filter]\nno-similarity = true\n{filter_table}')
    return load_config(toml, default_data=Path(str(SAMPLE_DIR)))


def test_a_pipeline_with_an_unknown_policy_is_refused_at_load(tmp_path):
    from engine.errors import InputError

    with pytest.raises(InputError, match=r"\[filter\] label-policy = 'strict'"):
        pipeline(tmp_path, 'label-policy = "strict"\n')


def test_the_pipeline_judges_out_of_fold(tmp_path):
    from engine.pipeline import Output, plan

    stages = {s.name: s for s in plan(pipeline(tmp_path, ""))}
    oof = Output("oof", "oof.parquet")
    assert stages["label-model"].inputs[-1] == oof
    argv = stages["filter-eda-targeted"].argv
    assert argv[argv.index("--oof") + 1] == oof


def test_fold_models_of_another_job_are_refused(oof_job, capsys):
    root, train = oof_job
    assert main(["oof", "--train", str(root / "train.csv"), "--folds", "3", "--seed", "7",
                 "--out-dir", str(root / "oof7")]) == 0  # fmt: skip
    rows = augmented_rows(train)
    code, _ = run_filter(
        root, rows, "fold7", "--oof", str(root / "oof7" / "oof.parquet"), "--save-label-model", str(root / "f7.npz")
    )
    assert code == 0
    capsys.readouterr()
    code, _ = run_filter(
        root, rows, "mixed", "--oof", str(root / "oof" / "oof.parquet"), "--label-model", str(root / "f7.npz")
    )
    err = capsys.readouterr().err
    assert code == 2 and "held out other rows than fold 0" in err and len(err.strip().splitlines()) == 1
    assert not (root / "mixed").exists()


# -------------------------------------------------------------------------------------------- near copies
def test_near_copy_of_source_apart_from_near_duplicate_train():
    source = "the actors were wonderful and the story held together from the first scene to the very last one"
    other = "a completely different training review about the parking lot and the popcorn prices"
    train = pl.DataFrame({"id": ["s", "o"], "text": [source, other], "label": [1, 0]})
    rows = pl.DataFrame(
        {
            "id": ["edit", "dup"],
            "source_id": ["s", "s"],
            "text": [source.replace(" very", ""), other + "!"],
            "label": [1, 1],
            "method": ["test", "test"],
            "source_text": [source, source],
        }
    )
    config = FilterConfig(similarity=False, label_check=False, dedup_augmented=False, cheap_checks=False)
    out = filter_augmented(rows, train, config=config).rows
    assert out["reject_reason"].to_list() == ["near_copy_of_source", "near_duplicate_train"]
    assert out["duplicate_of"].to_list() == [None, "o"]  # the source is not "another training text"
    assert out["source_cosine"][0] > 0.95
    looser = FilterConfig(
        similarity=False, label_check=False, dedup_augmented=False, cheap_checks=False, source_dup_threshold=1.0
    )
    out = filter_augmented(rows, train, config=looser).rows
    assert out["reject_reason"].to_list() == [None, "near_duplicate_train"]


# ----------------------------------------------------------------------------------------- crafted .npz
def saved_arrays(oof_job) -> dict[str, np.ndarray]:
    _, train = oof_job
    model = LabelModel.train_tfidf(train["text"].to_list(), train["label"].to_numpy(), 4, TfidfConfig())
    return model_arrays(model.model)


def crafted(arrays: dict, **changes) -> dict:
    out = dict(arrays)
    out.update(changes)
    return out


@pytest.mark.parametrize(
    "case, expect",
    [
        ("two_classes", "predicts the classes [0, 1], but --train has 4 classes"),
        ("integer_terms", "its terms are int64"),
        ("extra_option", "its vectorizer options are"),
        ("flat_coef", "its coefficients are float32 of shape ("),
        ("bad_json", "its options are not valid JSON"),
        ("nan_class", "its classes are float64"),
    ],
)
def test_crafted_label_models_are_refused_in_one_line(oof_job, case, expect, capsys):
    root, train = oof_job
    arrays = saved_arrays(oof_job)
    meta = json.loads(str(arrays["meta"]))
    if case == "two_classes":
        arrays = crafted(arrays, coef=arrays["coef"][:1], intercept=arrays["intercept"][:1], classes=np.array([0, 1]))
    elif case == "integer_terms":
        arrays = crafted(arrays, terms=np.arange(arrays["terms"].size))
    elif case == "extra_option":
        meta["vectorizer"]["surprise"] = 1
        arrays = crafted(arrays, meta=np.array(json.dumps(meta)))
    elif case == "flat_coef":
        arrays = crafted(arrays, coef=arrays["coef"][0])
    elif case == "bad_json":
        arrays = crafted(arrays, meta=np.array("{not json"))
    elif case == "nan_class":
        arrays = crafted(arrays, classes=np.array([0.0, 1.0, np.nan, 3.0]))
    path = root / f"{case}.npz"
    np.savez(path, **arrays)
    capsys.readouterr()
    code, out = run_filter(root, augmented_rows(train, 3), f"npz-{case}", "--label-model", str(path))
    err = capsys.readouterr().err
    assert code == 2, err
    assert expect in err and str(path) in err and len(err.strip().splitlines()) == 1, err
    assert not out.parent.exists()


# ------------------------------------------------------------------------------------ transformers folds
def test_transformers_fold_checkpoints_judge_out_of_fold_and_another_jobs_are_refused(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from engine.random_models.bert import build_random_bert, build_tokenizer

    torch.set_num_threads(1)
    train = pl.read_csv(DATA / "train.csv", n_rows=120).with_columns(pl.col("text").fill_null(""))
    train.write_csv(tmp_path / "train.csv")
    tokenizer = build_tokenizer(train["text"].to_list(), vocab_size=500, model_max_length=64)
    bert = build_random_bert(tmp_path / "tiny", "tiny", tokenizer=tokenizer)

    def oof(out: str, seed: str) -> Path:
        args = ["oof", "--backend", "transformers", "--model", str(bert), "--train", str(tmp_path / "train.csv"),
                "--folds", "2", "--epochs", "1", "--lr", "1e-3", "--warmup-steps", "0", "--train-batch-size", "16",
                "--max-length", "32", "--seed", seed, "--keep-checkpoints",
                "--out-dir", str(tmp_path / out)]  # fmt: skip
        assert main(args) == 0
        return tmp_path / out

    first, second = oof("oof", "1"), oof("oof2", "2")
    rows = augmented_rows(train.with_columns(pl.col("id").cast(pl.String)), 5)
    code, out = run_filter(
        tmp_path, rows, "tf", "--oof", str(first / "oof.parquet"), "--label-model", str(first / "checkpoints"),
        "--label-policy", "off", "--max-length", "32",
    )  # fmt: skip
    assert code == 0
    got = judged(out)
    fold = got["label_fold"].to_list()
    for f in set(fold):
        model = LabelModel.load(str(first / "checkpoints" / f"fold_{f:02d}"), 4, max_length=32)
        mine = got.filter(pl.col("label_fold") == f)
        p = model.predict_proba(mine["text"].to_list())[np.arange(mine.height), mine["label"].to_numpy()]
        np.testing.assert_allclose(mine["label_prob"].to_numpy(), p, atol=1e-6)
    # the source's probability under its fold model is its out-of-fold probability
    oof_frame = pl.read_parquet(first / "oof.parquet").with_columns(pl.col("id").cast(pl.String))
    probs = oof_frame.select("prob_0", "prob_1", "prob_2", "prob_3").to_numpy()
    oof_p = dict(zip(oof_frame["id"].to_list(), probs, strict=True))
    for row in got.iter_rows(named=True):
        assert row["source_label_prob"] == pytest.approx(oof_p[row["source_id"]][row["label"]], abs=1e-4)

    capsys.readouterr()
    code, out = run_filter(
        tmp_path, rows, "other", "--oof", str(first / "oof.parquet"), "--label-model", str(second / "checkpoints"),
        "--max-length", "32",
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "held out other rows than fold" in err and len(err.strip().splitlines()) == 1, err
    assert not out.parent.exists()


@pytest.mark.slow
def test_a_pipeline_with_kept_transformer_checkpoints_judges_labels_with_them(tmp_path, capsys):
    """[oof] fine-tunes a transformer and keeps its fold checkpoints: the filters judge every augmentation
    with the fold checkpoint that held its source out (no TF-IDF label-model stage), and a rerun is cached."""
    torch = pytest.importorskip("torch")
    from engine.random_models.bert import build_random_bert, build_tokenizer

    torch.set_num_threads(1)
    train = pl.read_csv(DATA / "train.csv", n_rows=160).with_columns(pl.col("text").fill_null(""))
    train.write_csv(tmp_path / "train.csv")
    pl.read_csv(DATA / "test.csv", n_rows=60).write_csv(tmp_path / "test.csv")
    tokenizer = build_tokenizer(train["text"].to_list(), vocab_size=500, model_max_length=64)
    bert = build_random_bert(tmp_path / "tiny", "tiny", tokenizer=tokenizer)
    toml = tmp_path / "p.toml"
    toml.write_text(
        f'[data]\ntrain = "train.csv"\ntest = "test.csv"\nout = "{tmp_path / "out"}"\n'
        f'[oof]\nbackend = "transformers"\nmodel = "{bert}"\nfolds = 2\nepochs = 1\nlr = 1e-3\nwarmup-steps = 0\n'
        "train-batch-size = 16\nmax-length = 32\nkeep-checkpoints = true\n"
        '[mine]\nselect = "--top-quantile 0.3"\n[augment.eda]\nn = 1\n'
        "[filter]\nno-similarity = true\nmax-length = 32\n[compare]\nseeds = [0]\nbootstrap = 100\n"
    )
    assert main(["run", str(toml), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "\nlabel-model:" not in plan and "--label-model" in plan and "/checkpoints --oof" in plan, plan
    assert main(["run", str(toml)]) == 0
    stages = tmp_path / "out" / "stages"
    filtered = sorted(stages.glob("filter-eda-targeted-*"))
    assert len(filtered) == 1
    kept = pl.read_parquet(filtered[0] / "kept.parquet")
    rejected = pl.read_parquet(filtered[0] / "rejected.parquet")
    judged = pl.concat([kept, rejected], how="diagonal_relaxed")
    assert (
        judged.height > 0
        and judged["label_fold"].is_in([0, 1]).all()
        and judged["source_label_prob"].is_not_null().all()
    )
    capsys.readouterr()
    assert main(["run", str(toml)]) == 0  # every stage cached, the checkpoints folder digested by content
    assert "cached" in capsys.readouterr().out
