"""Quality filters: injected near-duplicates found exactly (against brute force), a tiny random
sentence-transformers model for the similarity plumbing, the TF-IDF label model on real reviews, cheap
checks, the order of reject reasons, the CLI, and bad input refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.cli import main
from engine.errors import InputError
from engine.filters import REASONS, FilterConfig, attach_sources, filter_augmented, load_augmented
from engine.filters.dedup import char_ngram_tfidf, keep_first, normalize_texts, similar_pairs
from engine.filters.label import LabelModel

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_one_thread")
pytest.importorskip("sentence_transformers")

# The bundled nsmc4 sample (CC0): real reviews, present in every checkout, so nothing is skipped in CI.
DATA = Path(__file__).resolve().parents[1] / "engine" / "data" / "sample"
OFF = {"similarity": False, "label_check": False, "dedup_train": False, "dedup_augmented": False}


@pytest.fixture(scope="session")
def tiny_sbert(tmp_path_factory) -> Path:
    from engine.random_models.sbert import build_random_sbert

    return build_random_sbert(tmp_path_factory.mktemp("sbert") / "tiny", "tiny")


def sklearn_tfidf(texts: list[str]):
    """scikit-learn's own TF-IDF of the normalized texts: the reference the fast vectors must equal."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    # analyzer="char" collapses runs of whitespace itself; the texts are already collapsed and stripped
    return TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True).fit_transform(
        normalize_texts(texts).to_list()
    )


def brute_force(queries: list[str], refs: list[str] | None) -> np.ndarray:
    """All-pairs cosines, queries x refs (or queries x queries), IDF over both: dense (n_queries, n_refs)."""
    m = sklearn_tfidf(queries + (refs or []))
    q = m[: len(queries)]
    return (q @ (m[len(queries) :] if refs is not None else q).T).toarray()


def augmented_frame(rows: list[dict], method: str = "test") -> pl.DataFrame:
    return pl.DataFrame(
        [{"method": method, **r} for r in rows],
        schema={"id": pl.String, "source_id": pl.String, "text": pl.String, "label": pl.Int64, "method": pl.String},
    )


# ------------------------------------------------------------------------------------------ near-duplicates
def test_vectors_equal_scikit_learn_tfidf():
    texts = [*pl.read_csv(DATA / "train.csv", n_rows=1500)["text"].fill_null("").to_list(), "", "  ", "굿", "A  b"]
    fast = char_ngram_tfidf(texts)
    reference = brute_force(texts, None)
    np.testing.assert_allclose((fast @ fast.T).toarray(), reference, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.text(alphabet="가나다라 영화ab!", min_size=0, max_size=12), min_size=1, max_size=25),
    st.floats(0.3, 0.999),
)
def test_similar_pairs_equal_brute_force(texts, threshold):
    texts = [*texts, "영화"]  # scikit-learn refuses a corpus without any character
    matrix = char_ngram_tfidf(texts)
    pairs = similar_pairs(matrix, None, threshold)
    expected = np.argwhere(np.tril(brute_force(texts, None) >= threshold, -1))
    assert set(zip(pairs.query.tolist(), pairs.ref.tolist(), strict=True)) == set(map(tuple, expected.tolist()))
    assert (pairs.query > pairs.ref).all()


def test_exact_copies_match_at_threshold_one():
    texts = ["영화 정말 재밌다", "배우 연기 최고", "영화 정말 재밌다"]
    pairs = similar_pairs(char_ngram_tfidf(texts), None, 1.0)
    assert list(zip(pairs.query.tolist(), pairs.ref.tolist(), strict=True)) == [(2, 0)]


def test_keep_first_keeps_one_per_group_among_eligible_rows():
    # rows 0, 1, 2 are near-duplicates; row 0 is rejected by another filter, so it is not kept and does not
    # count: row 1 becomes the group's kept row and row 2 a duplicate of it
    text = "아아아 영화 정말 좋다 배우도 좋고"
    pairs = similar_pairs(char_ngram_tfidf([text, text, text + "!", "다른 말"]), None, 0.9)
    index, cosine = keep_first(pairs, 4, np.array([False, True, True, True]))
    assert index.tolist() == [-1, -1, 1, -1]
    assert 0.9 <= cosine[2] < 1


@pytest.fixture(scope="module")
def injected() -> dict:
    """Originals (real train reviews) and augmented rows (real test reviews, other movies) with known
    injected duplicates: exact copies and light edits of originals, and light edits of earlier augmented
    rows. Background rows are checked by brute force to be below the threshold against everything."""
    rng = np.random.default_rng(0)
    train = (
        pl.read_csv(DATA / "train.csv", n_rows=20_000)
        .filter(pl.col("text").str.len_chars() >= 20)
        .unique("text", keep="first", maintain_order=True)
        .head(10_000)
        .with_columns(pl.col("id").cast(pl.String))
    )
    test = pl.read_csv(DATA / "test.csv", n_rows=6000).filter(pl.col("text").str.len_chars() >= 25)
    candidates = test["text"].unique(maintain_order=True).to_list()[:2000]
    # background: drop texts that are near an original or an earlier background text
    vs_train = brute_force(candidates, train["text"].to_list()).max(axis=1)
    within = np.tril(brute_force(candidates, None), -1)
    clean, taken = [], []
    for i, text in enumerate(candidates):
        if vs_train[i] < 0.9 and not any(within[i, j] >= 0.9 for j in taken):
            clean.append(text)
            taken.append(i)
    background = clean[:1200]

    long_train = train.filter(pl.col("text").str.len_chars() >= 40)
    picks = rng.choice(long_train.height, 160, replace=False)
    rows, expect_train, expect_within = [], {}, {}
    for j, text in enumerate(background):
        rows.append({"id": f"bg{j}", "source_id": "s", "text": text, "label": 0})
    for n, p in enumerate(picks):
        source = long_train.row(int(p), named=True)
        text = source["text"] if n < 80 else source["text"] + "!"  # exact copies, then a light edit
        rows.append({"id": f"dup{n}", "source_id": "s", "text": text, "label": 0})
        expect_train[f"dup{n}"] = source["id"]
    long_background = [j for j, text in enumerate(background) if len(text) >= 40]
    for n, j in enumerate(rng.choice(long_background, 60, replace=False)):
        rows.append({"id": f"near{n}", "source_id": "s", "text": background[j] + "!", "label": 0})
        expect_within[f"near{n}"] = f"bg{j}"
    order = rng.permutation(len(rows))
    frame = augmented_frame([rows[i] for i in order])
    # an injected near-copy must come after the row it copies: move each behind its original if needed
    position = {r: i for i, r in enumerate(frame["id"].to_list())}
    ids = frame["id"].to_list()
    for near, original in expect_within.items():
        if position[near] < position[original]:
            a, b = position[near], position[original]
            ids[a], ids[b] = ids[b], ids[a]
            position = {r: i for i, r in enumerate(ids)}
    frame = frame.join(pl.DataFrame({"id": ids}).with_row_index("pos"), on="id").sort("pos").drop("pos")
    return {"train": train, "augmented": frame, "train_dups": expect_train, "within_dups": expect_within}


@pytest.mark.slow
def test_injected_duplicates_are_all_caught_and_nothing_else(injected):
    train, aug = injected["train"], injected["augmented"]
    # cheap checks are off, so any source will do: a training text that no injected row copies (a source
    # among the training texts adds nothing to the IDF, and its near copies would be near_copy_of_source)
    targets = set(injected["train_dups"].values())
    source = train.filter(~pl.col("id").is_in(list(targets)))["text"][0]
    rows = aug.with_columns(pl.lit(source).alias("source_text"))
    config = FilterConfig(**{**OFF, "dedup_train": True, "dedup_augmented": True}, cheap_checks=False)
    out = filter_augmented(rows, train, config=config).rows
    assert not out["reject_reason"].eq("near_copy_of_source").any()
    got = dict(zip(out["id"].to_list(), out["duplicate_of"].to_list(), strict=True))
    reasons = dict(zip(out["id"].to_list(), out["reject_reason"].to_list(), strict=True))
    flagged = {i for i, d in got.items() if d is not None}
    assert flagged == set(injected["train_dups"]) | set(injected["within_dups"])
    for row_id, source in injected["train_dups"].items():
        assert got[row_id] == source and reasons[row_id] == "near_duplicate_train"
    for row_id, earlier in injected["within_dups"].items():
        assert got[row_id] == earlier and reasons[row_id] == "near_duplicate_augmented"
    # all-pairs brute force (scikit-learn vectors, IDF over both sets as in the filter) agrees: the injected
    # rows are the near-duplicates, and the background is clean
    m = sklearn_tfidf(aug["text"].to_list() + train["text"].to_list())
    q = m[: aug.height]
    vs_train = (q @ m[aug.height :].T).toarray().max(axis=1)
    within = np.tril((q @ q.T).toarray(), -1).max(axis=1)
    ids = np.array(aug["id"].to_list())
    assert set(ids[vs_train >= 0.95]) == set(injected["train_dups"])
    assert set(ids[within >= 0.95]) == set(injected["within_dups"])


@pytest.mark.slow
def test_threshold_is_an_option(injected):
    train, aug = injected["train"], injected["augmented"]
    targets = set(injected["train_dups"].values())
    source = train.filter(~pl.col("id").is_in(list(targets)))["text"][0]  # a source no row copies
    rows = aug.with_columns(pl.lit(source).alias("source_text"))
    strict = FilterConfig(**{**OFF, "dedup_train": True}, cheap_checks=False, dup_threshold=1.0)
    out = filter_augmented(rows, train, config=strict).rows
    exact = {k for k in injected["train_dups"] if int(k[3:]) < 80}
    assert set(out.filter(pl.col("duplicate_of").is_not_null())["id"].to_list()) == exact


# --------------------------------------------------------------------------------------------- similarity
def test_similarity_keeps_an_exact_copy_and_drops_an_unrelated_sentence(tiny_sbert):
    from engine.filters.semantic import Embedder

    source = "배우들 연기가 너무 좋았고 스토리도 탄탄했다"
    rows = augmented_frame(
        [
            {"id": "copy", "source_id": "s", "text": source, "label": 1},
            {"id": "other", "source_id": "s", "text": "주차장이 넓어서 편했어요", "label": 1},
        ]
    ).with_columns(pl.lit(source).alias("source_text"))
    config = FilterConfig(**{**OFF, "similarity": True}, cheap_checks=False, min_similarity=0.999)
    out = filter_augmented(rows, config=config, embedder=Embedder(str(tiny_sbert))).rows
    assert out["similarity"][0] == pytest.approx(1.0, abs=1e-5)
    assert out["similarity"][1] < 0.999
    assert out["kept"].to_list() == [True, False]
    assert out["reject_reason"].to_list() == [None, "low_similarity"]


def test_similarity_is_the_pairwise_cosine_in_input_order_whatever_the_batch(tiny_sbert):
    from sentence_transformers import SentenceTransformer

    from engine.filters.semantic import Embedder

    reviews = pl.read_csv(DATA / "test.csv", n_rows=80)["text"].fill_null("").to_list()
    texts, sources = reviews[:40], reviews[40:]
    model = SentenceTransformer(str(tiny_sbert), device="cpu")
    a = model.encode(texts, normalize_embeddings=True)
    b = model.encode(sources, normalize_embeddings=True)
    expected = (a * b).sum(axis=1)
    for batch in (3, 64):
        got = Embedder(str(tiny_sbert), batch_size=batch).similarity(texts, sources)
        np.testing.assert_allclose(got, expected, atol=1e-5)


# ------------------------------------------------------------------------------------------ label model
@pytest.fixture(scope="module")
def label_data() -> tuple[pl.DataFrame, LabelModel]:
    from engine.config import TfidfConfig

    train = pl.read_csv(DATA / "train.csv", n_rows=4000).with_columns(pl.col("id").cast(pl.String))
    config = TfidfConfig(max_features=50_000)  # the oof stage's model, a smaller vocabulary for speed
    model = LabelModel.train_tfidf(train["text"].to_list(), train["label"].to_numpy(), 4, config)
    return train, model


def test_label_consistency_on_real_reviews(label_data):
    train, model = label_data
    sample = train.head(300)
    right = sample.select(
        (pl.col("id") + ":ok").alias("id"),
        pl.col("id").alias("source_id"),
        "text",
        "label",
        pl.lit("ok").alias("method"),
    )
    wrong = sample.select(  # the opposite end of the star scale: strong negative <-> strong positive
        (pl.col("id") + ":flip").alias("id"),
        pl.col("id").alias("source_id"),
        "text",
        (3 - pl.col("label")).alias("label"),
        pl.lit("flip").alias("method"),
    )
    rows = attach_sources(pl.concat([right, wrong]), train, where="train")
    # the absolute rule: a flipped label on the source's own text is as likely as the source's (relative)
    config = FilterConfig(**{**OFF, "label_check": True}, cheap_checks=False, label_policy="absolute")
    out = filter_augmented(rows, train, config=config, label_model=model)
    ok = out.rows.filter(pl.col("method") == "ok")
    flip = out.rows.filter(pl.col("method") == "flip")
    assert ok["label_consistent"].mean() > 0.8
    assert flip["label_consistent"].mean() < 0.2
    probs = model.predict_proba(rows["text"].to_list())
    np.testing.assert_allclose(out.rows["label_prob"].to_numpy(), probs[np.arange(rows.height), rows["label"]])
    assert out.summary["methods"]["flip"]["first_reason"]["label_mismatch"] == (~flip["label_consistent"]).sum()

    # "at least a chosen probability": 0 accepts everything, a probability above every row's rejects all
    def with_min_prob(p: float) -> pl.DataFrame:
        config = FilterConfig(
            **{**OFF, "label_check": True}, cheap_checks=False, min_label_prob=p, label_policy="absolute"
        )
        return filter_augmented(rows, train, config=config, label_model=model).rows

    assert with_min_prob(0.0)["label_consistent"].all()
    nothing = with_min_prob(min(float(out.rows["label_prob"].max()) + 1e-9, 1.0))
    assert not nothing["label_consistent"].any()


def test_saved_label_model_gives_the_same_probabilities(label_data, tmp_path):
    train, model = label_data
    path = model.save(tmp_path / "label.npz")
    again = LabelModel.load(str(path), 4)
    texts = [*train["text"].head(50).to_list(), "", "처음 보는 글자 조합 xyz"]
    # rebuilt from arrays, the model is the pickled one: identical bits, not just close
    np.testing.assert_array_equal(again.predict_proba(texts), model.predict_proba(texts))


def test_transformers_label_model_gives_probabilities(tmp_path):
    from engine.random_models.bert import build_random_bert

    folder = build_random_bert(tmp_path / "clf", "tiny", num_labels=4)
    model = LabelModel.load(str(folder), 4, batch_size=4)
    probs = model.predict_proba(["재밌다", "정말 최악의 영화였다 돈 아깝다", "그냥 그래요", "굿"] * 3)
    assert probs.shape == (12, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(probs[:4], probs[4:8], atol=1e-6)  # order restored after length sorting
    with pytest.raises(InputError, match="2 classes"):
        LabelModel.load(str(folder), 2)


# --------------------------------------------------------------------------------------- cheap checks
def test_cheap_checks_and_the_order_of_reasons():
    src = "배우들 연기가 너무 좋았고 스토리도 탄탄했다"
    cases = {
        "ok": "배우 연기가 좋았고 이야기도 탄탄했어요",
        "empty": "   ",
        "identical": "배우들  연기가 너무 좋았고\n스토리도 탄탄했다 ",
        "short": "좋다",
        "long": src * 3,
        "english": "The actors were great and the story was solid",
        "repeat": "좋아요 " * 8,
        "mixed": "배우들 acting was great and the story was solid",
    }
    rows = augmented_frame(
        [{"id": k, "source_id": "s", "text": v, "label": 0} for k, v in cases.items()]
        + [{"id": "laugh", "source_id": "k", "text": "만쉐~~~~", "label": 0}]
    )
    sources = pl.DataFrame({"id": ["s", "k"], "text": [src, "원나라~~만쉐~~~~"]})
    out = filter_augmented(attach_sources(rows, sources, where="test"), config=FilterConfig(**OFF))
    reasons = dict(zip(out.rows["id"].to_list(), out.rows["reject_reason"].to_list(), strict=True))
    assert reasons == {
        "ok": None,
        "empty": "empty",
        "identical": "identical_to_source",
        "short": "length_ratio",
        "long": "length_ratio",
        "english": "low_hangul",
        "repeat": "repetition",
        "mixed": "low_hangul",
        "laugh": None,  # the deletion raised the repeated share, but the run is the source's own
    }
    # every failing filter is counted, the first one decides: the repeated text is also too long
    summary = out.summary["methods"]["all"]
    assert summary["failed"]["length_ratio"] == 3 and summary["first_reason"]["length_ratio"] == 2
    assert out.summary["order"] == [r for r in REASONS if r in summary["failed"]]


# ---------------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def small_job(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("filter_cli")
    train = pl.read_csv(DATA / "train.csv", n_rows=3000)
    train.write_csv(root / "train.csv")
    src = train.head(40)
    rows = []
    for r in src.iter_rows(named=True):
        rows += [
            {"id": f"{r['id']}:eda:0", "source_id": str(r["id"]), "text": r["text"] + " 진짜", "label": r["label"]},
            {"id": f"{r['id']}:bt:0", "source_id": str(r["id"]), "text": "완전히 다른 문장입니다", "label": r["label"]},
        ]
    aug = augmented_frame(rows).with_columns(
        pl.when(pl.col("id").str.contains(":eda:"))
        .then(pl.lit("eda"))
        .otherwise(pl.lit("backtranslate"))
        .alias("method")
    )
    aug.write_parquet(root / "augmented.parquet")
    return {"root": root, "train": root / "train.csv", "augmented": root / "augmented.parquet"}


def test_cli_writes_kept_rejected_and_summary(small_job, tiny_sbert, capsys):
    out = small_job["root"] / "out"
    code = main(
        [
            "filter",
            "--input",
            str(small_job["augmented"]),
            "--train",
            str(small_job["train"]),
            "--out",
            str(out / "kept.parquet"),
            "--rejected",
            str(out / "rejected.parquet"),
            "--embed-model",
            str(tiny_sbert),
            "--min-similarity",
            "0.5",
            "--save-label-model",
            str(out / "label.npz"),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    kept = pl.read_parquet(out / "kept.parquet")
    rejected = pl.read_parquet(out / "rejected.parquet")
    original = pl.read_parquet(small_job["augmented"])
    assert sorted(kept["id"].to_list() + rejected["id"].to_list()) == sorted(original["id"].to_list())
    assert kept["kept"].all() and kept["reject_reason"].is_null().all() and "source_text" not in kept.columns
    assert rejected["reject_reason"].is_not_null().all() and "source_text" in rejected.columns
    for column in ("similarity", "label_prob", "label_consistent", "duplicate_of", "kept", "reject_reason"):
        assert column in kept.columns
    summary = json.loads((out / "kept.summary.json").read_text())
    assert set(summary["methods"]) == {"all", "eda", "backtranslate"}
    assert summary["methods"]["all"]["rows"] == 80 and summary["kept"] == kept.height
    assert summary["methods"]["backtranslate"]["similarity"]["p50"] <= 1.0
    assert "near_duplicate_train" in printed and "similarity to the source" in printed
    assert (out / "label.npz").exists()


# ---------------------------------------------------------------------------------------------- bad input
def assert_refused(code: int, capsys, out_dir: Path, *patterns: str) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    for pattern in patterns:
        assert pattern in err, f"{pattern!r} not in {err!r}"
    assert not out_dir.exists() or not any(out_dir.iterdir()), f"output written: {list(out_dir.iterdir())}"


@pytest.mark.parametrize(
    ("extra", "patterns"),
    [
        (["--min-similarity", "1.5"], ["min_similarity", "1.5"]),
        (["--dup-threshold", "0"], ["dup_threshold"]),
        (["--min-label-prob", "2"], ["min_label_prob"]),
        (["--min-length-ratio", "3"], ["min_length_ratio"]),
        (["--device", "gpu"], ["device"]),
        (["--embed-model", "./no/such/model"], ["no such model folder"]),
        (["--label-model", "./no/such/classifier"], ["no such model folder"]),
        (["--label-model", "missing.npz"], ["no such file"]),
        (["--label-model", "model.joblib"], ["does not load pickled models", "--save-label-model"]),
    ],
)
def test_bad_options_stop_before_any_output(small_job, tiny_sbert, tmp_path, capsys, extra, patterns):
    out = tmp_path / "out"
    args = ["filter", "--input", str(small_job["augmented"]), "--train", str(small_job["train"])]
    args += ["--out", str(out / "kept.parquet"), "--embed-model", str(tiny_sbert), *extra]
    assert_refused(main(args), capsys, out, *patterns)


def test_bad_files_stop_before_any_output(small_job, tiny_sbert, tmp_path, capsys):
    out = tmp_path / "out"

    def run(input_path: Path, *extra: str) -> int:
        args = ["filter", "--input", str(input_path), "--train", str(small_job["train"])]
        return main([*args, "--out", str(out / "k.parquet"), "--embed-model", str(tiny_sbert), *extra])

    aug = pl.read_parquet(small_job["augmented"])
    aug.drop("source_id").write_parquet(tmp_path / "no_source.parquet")
    assert_refused(run(tmp_path / "no_source.parquet"), capsys, out, "source_id")
    (tmp_path / "empty.csv").write_text("")
    assert_refused(run(tmp_path / "empty.csv"), capsys, out, "empty")
    aug.with_columns(pl.lit("nope").alias("source_id")).write_parquet(tmp_path / "unknown.parquet")
    assert_refused(run(tmp_path / "unknown.parquet"), capsys, out, "not ids of", "--sources")
    aug.with_columns(pl.lit(7).alias("label")).write_parquet(tmp_path / "labels.parquet")
    assert_refused(run(tmp_path / "labels.parquet"), capsys, out, "outside 0..3")
    pl.concat([aug, aug.head(1)]).write_parquet(tmp_path / "dup_ids.parquet")
    assert_refused(run(tmp_path / "dup_ids.parquet"), capsys, out, "share an id")
    empty_model = tmp_path / "empty_model"
    empty_model.mkdir()
    assert_refused(run(small_job["augmented"], "--embed-model", str(empty_model)), capsys, out, "not a saved model")


def test_load_augmented_names_the_missing_column(tmp_path):
    pl.DataFrame({"id": ["a"], "source_id": ["s"], "txt": ["x"], "label": [0]}).write_parquet(tmp_path / "a.parquet")
    with pytest.raises(InputError, match="'text'"):
        load_augmented(tmp_path / "a.parquet")
