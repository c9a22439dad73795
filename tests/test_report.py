"""The analysis numbers and the HTML report, end to end on real predictions of the bundled sample."""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.analyze import detect_tokenizer, log_odds_z, tokenize
from engine.cli import main


def test_log_odds_z_direction_and_symmetry():
    hard = np.array([50.0, 10.0, 10.0, 0.0])
    easy = np.array([10.0, 10.0, 50.0, 0.0])
    z = log_odds_z(hard, easy, prior_weight=0.1)
    assert z[0] > 2 and z[2] < -2 and abs(z[1]) < 1 and abs(z[3]) < 1e-6
    np.testing.assert_allclose(log_odds_z(easy, hard, prior_weight=0.1), -z)
    # the same ratio on more evidence is more significant
    assert log_odds_z(hard * 10, easy * 10, 0.1)[0] > z[0]


def test_tokenizers():
    kiwi = tokenize(["이 영화 진짜 재밌다 ㅋㅋ!!"], kind="kiwi", threads=1)[0]
    assert "영화/NNG" in kiwi and not any(t.endswith("/SF") for t in kiwi)
    assert tokenize(["Great movie, GREAT cast"], kind="whitespace") == [["great", "movie", "great", "cast"]]
    # English: contractions whole, scikit-learn's stop words out, negations kept
    words = tokenize(["This isn't a good film, and the cast is NOT great"], kind="whitespace")[0]
    assert words == ["isn't", "good", "film", "cast", "not", "great"]
    assert detect_tokenizer(["이 영화 진짜 재밌다", "최고"]) == "kiwi"
    assert detect_tokenizer(["a fine film", "bad"]) == "whitespace"


@pytest.mark.slow
def test_mine_cli_end_to_end_on_the_sample(sample_oof: Path, tmp_path: Path, capsys):
    out = tmp_path / "mine"
    code = main(
        [
            "mine",
            "--input",
            str(sample_oof / "oof.parquet"),
            "--out-dir",
            str(out),
            "--class-names",
            "강한 부정,약한 부정,약한 긍정,강한 긍정",
            "--preset",
            "notebook",
            "--examples",
            "10",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    for line in ("top 20% hardness", "classes 1,3", "약한 부정", "report:"):
        assert line in printed

    scores = pl.read_parquet(out / "scores.parquet")
    hard = pl.read_parquet(out / "hard.parquet")
    assert scores.height == 3000 and hard.height == scores["selected"].sum() > 0
    assert set(hard["label"].unique().to_list()) <= {1, 3}
    assert hard["hardness"].is_sorted(descending=True)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["selected"] == hard.height
    assert next(s["rows"] for s in summary["selection"]) == 3000 and len(summary["selection"]) == 6
    assert np.asarray(summary["confusion"]).sum() == 3000
    assert sum(sum(c) for c in summary["hardness_histogram"]["counts"]) == 3000
    assert sum(b["rows"] for b in summary["by_length"]) == 3000
    assert set(summary["terms"]) == {"강한 부정", "약한 부정", "약한 긍정", "강한 긍정"}
    for side in summary["terms"].values():
        assert side["hard"] and all(t["z"] > 0 for t in side["hard"])
        assert all(t["z"] < 0 for t in side["easy"])
    assert summary["tokenizer"] == "kiwi" and summary["findings"]
    # hardaug oof wrote test_probs.parquet beside the predictions: the overlap check found it
    overlap = summary["test_overlap"]
    assert overlap["test"].endswith("test_probs.parquet") and overlap["test_rows"] == 500
    assert any(f.startswith("Train/test overlap:") for f in summary["findings"])

    html = (out / "report.html").read_text()
    assert html.count("<svg") == 4  # class shares, confusion, hardness histograms, length
    for anchor in (
        "overview",
        "classes",
        "confusions",
        "hardness",
        "length",
        "terms",
        "examples",
        "label-errors",
    ):
        assert f'id="{anchor}"' in html
    assert not re.search(r"""(src|href)=["']https?://""", html)  # self-contained: nothing to fetch
    by_hardness = scores.sort("hardness", descending=True, maintain_order=True)
    shown = [by_hardness.filter("label_issue")["text"][0]]  # the hardest suspected label error
    clean = by_hardness.filter(pl.col("selected") & ~pl.col("label_issue"))
    if clean.height:
        shown.append(clean["text"][0])  # the hardest selected row whose label looks right
    for text in shown:
        assert escape(text) in html
    # Korean class names in the charts and tables render with a Hangul font where one is installed: the page's
    # font stack and every SVG text name one (matplotlib writes the family into each <text>)
    svg_fonts = set(re.findall(r"font-family: ([^;\"]*)", html))
    assert svg_fonts and all("Noto Sans CJK KR" in f for f in svg_fonts)
    assert re.search(r"body \{ font: [^}]*\"Noto Sans CJK KR\"", html)
    # each example table says how many rows it lists of how many
    counts = summary["counts"]
    assert f"of {counts['label_issues']:,}." in html or f"Showing all {counts['label_issues']:,}." in html
    if counts["selected_label_issues"]:
        assert f"The other {counts['selected_label_issues']:,} selected rows are suspected label errors" in html


POSITIVE = ["good", "great", "wonderful", "moving", "funny", "clever", "superb", "charming"]
NEGATIVE = ["bad", "boring", "awful", "dull", "silly", "weak", "poor", "messy"]
COMMON = ["the", "film", "movie", "plot", "and", "is", "was", "acting", "story", "it", "not", "isn't", "very"]


def _english(rng: np.random.Generator, n: int, vocab_by_class: list[list[str]], common: list[str]):
    labels = rng.integers(0, len(vocab_by_class), size=n)
    texts = [
        " ".join(
            rng.choice(vocab_by_class[c]) if rng.random() < 0.4 else rng.choice(common)
            for _ in range(rng.integers(10, 16))
        )
        for c in labels
    ]
    return texts, labels


def test_english_report_fits_the_data_and_counts_planted_test_overlap(tmp_path: Path):
    rng = np.random.default_rng(4)
    texts, labels = _english(rng, 600, [NEGATIVE, COMMON[:4], POSITIVE], COMMON)
    probs = rng.dirichlet(np.ones(3), size=600) * 0.5
    probs[np.arange(600), labels] += rng.choice([0.5, 0.05], size=600, p=[0.7, 0.3])
    probs /= probs.sum(axis=1, keepdims=True)
    frame = pl.DataFrame({"id": range(600), "text": texts, "label": labels})
    frame.hstack(pl.DataFrame(probs, schema=[f"prob_{i}" for i in range(3)])).write_parquet(tmp_path / "oof.parquet")
    # the test set: 6 training texts word for word (other case and spacing), 4 nearly, 40 in another vocabulary
    fresh, _ = _english(rng, 40, [["zebra", "quartz"], ["violin", "harbor"]], ["lantern", "meadow", "copper"])
    exact = [texts[i].upper().replace(" ", "  ") for i in range(6)]
    near = [texts[10][:-1], texts[11] + " film", texts[12] + " it", texts[13] + " very"]  # cosine 0.98-1.0
    pl.DataFrame({"text": [*exact, *near, *fresh]}).write_csv(tmp_path / "test.csv")
    out = tmp_path / "mine"
    argv = [
        "mine",
        "--input",
        str(tmp_path / "oof.parquet"),
        "--out-dir",
        str(out),
        "--test",
        str(tmp_path / "test.csv"),
    ]
    assert main([*argv, "--class-names", "negative,neutral,positive"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tokenizer"] == "whitespace"
    overlap = summary["test_overlap"]
    assert (overlap["test_rows"], overlap["exact"], overlap["near"]) == (50, 6, 4)
    terms = {t["term"] for side in summary["terms"].values() for kind in ("hard", "easy") for t in side[kind]}
    assert terms and not terms & {"the", "and", "is", "it", "t", "isn"}  # stop words and split contractions
    html = (out / "report.html").read_text()
    assert '<html lang="en">' in html and escape("isn't kept whole") in html and "6 of 50 test texts" in html
    for nsmc4_only in ("polarity", "weak vs strong", "지만", "particles"):
        assert nsmc4_only not in html
    skipped = tmp_path / "skipped"
    argv[argv.index(str(out))] = str(skipped)
    assert main([*argv, "--no-test-overlap", "--no-report"]) == 0
    assert "test_overlap" not in json.loads((skipped / "summary.json").read_text())


def test_mine_without_report_skips_the_term_analysis(sample_oof: Path, tmp_path: Path):
    """Tokenizing is nearly all of mine's time: without a report nothing is tokenized."""
    from engine.text import load_kiwi as _kiwi

    before = _kiwi.cache_info()
    out = tmp_path / "mine"
    assert main(["mine", "--input", str(sample_oof / "oof.parquet"), "--out-dir", str(out), "--no-report"]) == 0
    assert _kiwi.cache_info() == before  # Kiwi was not even asked for
    summary = json.loads((out / "summary.json").read_text())
    assert summary["terms"] == {} and summary["terms_skipped"] is True
    assert summary["counts"]["all"] == 3000 and summary["findings"]
    assert not (out / "report.html").exists()


def test_term_analysis_tokenizes_at_most_the_capped_rows_per_class(sample_oof: Path):
    from engine import mine
    from engine.analyze import analyze
    from engine.config import AnalysisConfig

    frame, names = mine.load_predictions(sample_oof / "oof.parquet")
    mined, trace = mine.select(mine.score(frame, len(names), label_issues=False), [mine.OnlyMisclassified()])
    config = AnalysisConfig(tokenizer="whitespace", max_hard_per_class=40, max_easy_per_class=50)
    terms = analyze(mined, names, trace=trace, config=config).terms
    assert terms and all(t["n_hard"] == 40 and t["n_easy"] == 50 for t in terms.values())
