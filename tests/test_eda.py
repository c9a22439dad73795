"""EDA for Korean: deterministic per seed whatever the order and chunking, never empty, labels kept,
particles on their words, sentence ends and negations in place, resumable, bad input refused."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from engine.augment.common import AUGMENTED_SCHEMA, augment_file
from engine.augment.eda import EdaConfig, EdaJob, apply_op, augment_units, generate, split_units, tokenize
from engine.cli import main
from engine.progress import Progress
from engine.stage import InProcess

SAMPLE = Path(__file__).resolve().parents[1] / "engine" / "data" / "sample" / "train.csv"
VARIANT = re.compile(r"^\d+\.(delete|swap|insert)$")

# Well-spaced sentences whose particles and endings Kiwi reads without doubt.
SPACED = [
    "배우들의 연기가 정말 좋았고 음악도 아름다웠다.",
    "이 영화는 스토리가 지루해서 중간에 잠이 들었다.",
    "감독의 전작보다 훨씬 재미있는 영화였어요.",
    "주인공이 친구를 구하러 바다로 떠나는 이야기입니다.",
    "아이들과 함께 보기에 좋은 가족 영화를 찾았다.",
]


@pytest.fixture(scope="module")
def reviews() -> pl.DataFrame:
    return pl.read_csv(SAMPLE, n_rows=400).with_columns(pl.col("id").cast(pl.String))


def by_source(generated, frame: pl.DataFrame) -> dict[str, list[tuple]]:
    ids = frame["id"].to_list()
    out: dict[str, list[tuple]] = {}
    for g in generated:
        out.setdefault(ids[g.source_index], []).append((g.variant, g.text, g.drop_reason))
    return out


@pytest.mark.slow
def test_deterministic_per_seed_whatever_the_order(reviews):
    config = EdaConfig(n=4, seed=3)
    first = by_source(generate(reviews, config, threads=1), reviews)
    shuffled = reviews.sample(fraction=1.0, shuffle=True, seed=1)
    assert by_source(generate(shuffled, config, threads=1), shuffled) == first
    other = by_source(generate(reviews, EdaConfig(n=4, seed=4), threads=1), reviews)
    assert other != first


@pytest.mark.slow
def test_never_empty_and_variants_are_new(reviews):
    for g in generate(reviews, EdaConfig(n=4, p_delete=0.9), threads=1):
        assert g.text.strip() or g.drop_reason == "no_edit"  # only an empty source gives nothing
    texts = reviews["text"].to_list()
    for source_id, variants in by_source(generate(reviews, EdaConfig(n=4), threads=1), reviews).items():
        kept = [" ".join(t.split()) for _, t, drop in variants if drop is None]
        source = " ".join(texts[reviews["id"].to_list().index(source_id)].split())
        assert len(set(kept)) == len(kept) and source not in kept
        assert all(VARIANT.match(v) for v, _, drop in variants if drop is None)


def test_output_schema_keeps_labels_and_provenance(reviews, tmp_path):
    path = tmp_path / "hard.parquet"
    reviews.write_parquet(path)
    kept, counts = augment_file(EdaJob(EdaConfig(n=3)), path, tmp_path / "aug.parquet")
    assert kept.columns == list(AUGMENTED_SCHEMA)
    assert kept["id"].is_unique().all() and kept["text"].str.strip_chars().str.len_chars().min() > 0
    labels = dict(zip(reviews["id"].to_list(), reviews["label"].to_list(), strict=True))
    assert all(labels[s] == y for s, y in zip(kept["source_id"].to_list(), kept["label"].to_list(), strict=True))
    assert set(kept["method"]) == {"eda"} and kept["model"][0].startswith("kiwipiepy")
    assert json.loads(kept["params"][0])["ops"] == ["delete", "swap", "insert"]
    assert {json.loads(e)["op"] for e in kept["extra"]} == {"delete", "swap", "insert"}
    assert counts["generated"] == 3 * reviews.height and counts["kept"] == kept.height
    # sources in input order, each source's variants together
    order = {s: i for i, s in enumerate(reviews["id"].to_list())}
    positions = [order[s] for s in kept["source_id"].to_list()]
    assert positions == sorted(positions)


def test_particles_stay_attached_to_their_words():
    config = EdaConfig(n=6, p_delete=0.3, p_swap=0.3, p_insert=0.3)
    for i, (text, tokens) in enumerate(zip(SPACED, tokenize(SPACED, 1), strict=True)):
        units = split_units(text, tokens)
        outputs = [t for _, t, _, drop in augment_units(units, str(i), config) if drop is None]
        assert len(outputs) >= 4
        for out, out_tokens in zip(outputs, tokenize(outputs, 1), strict=True):
            for tok in out_tokens:
                if tok.tag.startswith(("J", "E")):  # a particle or ending never begins a word
                    assert tok.start > 0 and not out[tok.start - 1].isspace(), (text, out, tok)
            # and every word of the output is a word of the source (or an inserted content word of it)
            assert set(out.split()) <= set(text.split()) | {w for u in units for w in u.insertable}


def test_units_cut_the_text_without_losing_a_character(reviews):
    texts = reviews["text"].to_list()
    for text, tokens in zip(texts, tokenize(texts, 1), strict=True):
        units = split_units(text, tokens)
        assert "".join(u.text + u.gap for u in units) == text.strip()
        for u in units:
            assert u.text and not u.text[0].isspace()


def test_unspaced_reviews_still_get_units():
    text = "이거감독식스센스감독임.근데아무래도윌스미스입김이많이들어간듯."
    units = split_units(text, tokenize([text], 1)[0])
    assert [u.text for u in units] == ["이거감독식스센스감독임.", "근데아무래도윌스미스입김이", "많이들어간듯."]


def test_sentence_end_and_negations_stay():
    text = "연기는 좋은데 스토리가 너무 뻔해서 별로 추천하지 않는다."
    units = split_units(text, tokenize([text], 1)[0])
    assert units[-1].text == "추천하지 않는다." and units[-1].fixed and units[-1].negation
    config = EdaConfig(n=12, p_delete=0.5, p_swap=0.5)
    for _, out, extra, drop in augment_units(units, "s", config):
        if drop is None and extra["op"] in ("delete", "swap"):
            assert out.endswith("추천하지 않는다.")
    moved = EdaConfig(n=12, p_delete=0.5, protect_negation=False)
    negation = split_units("영화가 안 무섭고 재밌다", tokenize(["영화가 안 무섭고 재밌다"], 1)[0])
    outs = {out for _, out, _, drop in augment_units(negation, "s", moved) if drop is None}
    assert any("안" not in out.split() for out in outs)  # with --move-negations, 안 can be deleted
    kept = {out for _, out, _, drop in augment_units(negation, "s", EdaConfig(n=12, p_delete=0.5)) if drop is None}
    assert all("안" in out.split() for out in kept)


def test_rates_are_per_operation():
    text = SPACED[0]
    units = split_units(text, tokenize([text], 1)[0])
    ops = Counter()
    for seed in range(30):
        _, extra = apply_op(units, "delete", random.Random(seed), EdaConfig(p_delete=1.0))
        ops[len(extra["deleted"])] += 1
    assert set(ops) == {sum(u.word and not u.fixed for u in units)}  # rate 1: every movable unit goes
    only_insert = EdaConfig(n=3, p_delete=0, p_swap=0, p_insert=0.2)
    assert {extra["op"] for _, _, extra, drop in augment_units(units, "s", only_insert) if drop is None} == {"insert"}


def test_resume_after_a_crash_gives_the_same_file(reviews, tmp_path):
    src = tmp_path / "hard.parquet"
    reviews.head(120).write_parquet(src)
    whole, _ = augment_file(EdaJob(EdaConfig(n=2)), src, tmp_path / "whole.parquet", InProcess(50))

    def crash(progress: Progress) -> None:
        if progress.done >= 50:
            raise KeyboardInterrupt

    out = tmp_path / "resumed.parquet"
    with pytest.raises(KeyboardInterrupt):
        augment_file(EdaJob(EdaConfig(n=2)), src, out, InProcess(50), on_progress=crash)
    assert not out.exists() and any(out.with_name(f".{out.name}.job").glob("parts/chunk_*"))
    resumed, _ = augment_file(EdaJob(EdaConfig(n=2)), src, out, InProcess(7))
    assert resumed.equals(whole)


def test_a_finished_job_is_not_redone(reviews, tmp_path):
    src = tmp_path / "hard.parquet"
    reviews.head(60).write_parquet(src)
    out = tmp_path / "aug.parquet"
    first, counts = augment_file(EdaJob(EdaConfig(n=2)), src, out)
    written = out.stat().st_mtime_ns
    calls = []
    again, again_counts = augment_file(EdaJob(EdaConfig(n=2)), src, out, on_progress=calls.append)
    assert again.equals(first) and again_counts == counts
    assert out.stat().st_mtime_ns == written and calls == []  # read back, nothing generated
    other, _ = augment_file(EdaJob(EdaConfig(n=3)), src, out)  # another job writes its own output
    assert other.height > first.height and out.stat().st_mtime_ns != written
    redone, _ = augment_file(EdaJob(EdaConfig(n=3)), src, out, restart=True, on_progress=calls.append)
    assert redone.equals(other) and calls  # restart generates again, the same rows


def test_cli(reviews, tmp_path, capsys):
    src = tmp_path / "hard.csv"
    reviews.head(50).write_csv(src)
    out = tmp_path / "eda" / "aug.parquet"
    args = ["eda", "--input", str(src), "--n", "2", "--out", str(out), "--threads", "1", "--p-swap", "0"]
    assert main(args) == 0
    kept = pl.read_parquet(out)
    assert kept.height > 50 and "swap" not in {json.loads(e)["op"] for e in kept["extra"]}
    assert json.loads(out.with_suffix(".drops.json").read_text())["kept"] == kept.height
    assert "kept" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--p-delete", "0", "--p-swap", "0", "--p-insert", "0"], "enable at least one"),
        (["--text-col", "review"], "no column 'review'"),
        (["--out", "OUT_DIR/aug.csv"], "Parquet"),
    ],
)
def test_bad_input_stops_before_any_output(reviews, tmp_path, capsys, extra, pattern):
    src = tmp_path / "hard.csv"
    reviews.head(20).write_csv(src)
    out_dir = tmp_path / "out"
    args = ["eda", "--input", str(src), "--out", str(out_dir / "aug.parquet"), "--threads", "1"]
    args += [a.replace("OUT_DIR", str(out_dir)) for a in extra]
    assert main(args) == 2
    assert pattern in capsys.readouterr().err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_empty_file_and_rates_out_of_range_are_refused(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    out_dir = tmp_path / "out"
    assert main(["eda", "--input", str(empty), "--out", str(out_dir / "a.parquet")]) == 2
    assert "empty" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["eda", "--input", str(empty), "--out", str(out_dir / "a.parquet"), "--p-delete", "1.5"])
    assert exit_info.value.code == 2 and "expected a rate in [0, 1]" in capsys.readouterr().err
    assert not out_dir.exists()


ENGLISH = [
    "This movie isn't good, and the acting was wooden without any real charm.",
    "I would never watch this film again because the plot makes no sense at all.",
    "The soundtrack is not bad but the story drags for two long hours.",
    "Nobody in the cast can save a script that doesn't know what it wants.",
]


def test_english_texts_keep_their_negations_and_get_all_three_operations():
    from engine.augment.eda import split_units_english

    frame = pl.DataFrame({"id": [f"e{i}" for i in range(len(ENGLISH))], "text": ENGLISH})
    generated = generate(frame, EdaConfig(n=6, p_delete=0.3, p_swap=0.2, p_insert=0.2))
    ops = Counter()
    for g in generated:
        assert g.drop_reason is None
        ops[g.variant.split(".")[1]] += 1
        source = ENGLISH[g.source_index]
        for negation in re.findall(r"\b(?:not|no|never|without|nobody|\w+n't)\b", source, flags=re.IGNORECASE):
            assert source.count(negation) <= g.text.count(negation), (negation, g.text)
        if g.variant.endswith("insert"):
            words = set(re.findall(r"[\w']+", source))
            assert g.extra["inserted"] and set(g.extra["inserted"]) <= words
            assert not {w.lower() for w in g.extra["inserted"]} & {"the", "and", "not", "without", "any"}
        else:
            assert Counter(g.text.split()) - Counter(source.split()) == Counter()  # words only move or go
    assert set(ops) == {"delete", "swap", "insert"}
    units = split_units_english(ENGLISH[0])
    assert "".join(u.text + u.gap for u in units) == ENGLISH[0]
    assert [u.text for u in units if u.negation] == ["isn't", "without"]


def test_a_stray_text_in_another_script_gets_no_variants_and_a_mostly_foreign_file_is_refused(tmp_path, capsys):
    path = tmp_path / "mixed.csv"
    japanese = "この映画はとても面白かったです。"
    pl.DataFrame({"id": ["k", "e", "j"], "text": [SPACED[0], ENGLISH[0], japanese], "label": [0, 1, 1]}).write_csv(path)
    out = tmp_path / "aug.parquet"
    assert main(["eda", "--input", str(path), "--out", str(out), "--n", "2"]) == 0
    rows = pl.read_parquet(out)
    assert set(rows["source_id"]) == {"k", "e"}  # nsmc4 has a Chinese review among its hard samples
    drops = json.loads(out.with_suffix(".drops.json").read_text())
    assert drops["other_script"] == 2  # both variants of "j", counted

    foreign = tmp_path / "foreign.csv"
    pl.DataFrame(
        {"id": ["j1", "j2", "k"], "text": [japanese, japanese + "!", SPACED[0]], "label": [0, 1, 1]}
    ).write_csv(foreign)
    out = tmp_path / "foreign_aug.parquet"
    assert main(["eda", "--input", str(foreign), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 of 3 texts are neither Korean nor English" in err and "['j1', 'j2']" in err
    assert not out.exists() and not list(tmp_path.glob("foreign_aug*"))
