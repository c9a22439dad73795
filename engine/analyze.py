"""What the hard samples are: the numbers behind the report, computed from a mined frame.

`analyze` returns plain data (dicts and small Polars frames); `engine.report` only renders it, and
`summary.json` is the same data as JSON. Everything here is descriptive: it never changes the selection.

Distinctive terms use the log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn
2008, "Fightin' Words"): for each class, token counts in its hardest rows are compared with counts in its
easiest rows, the prior being the counts of both together, and each term gets a z-score. Comparing within
a class keeps words that merely mark the class (e.g. "최고" for strong positive) from looking like signs
of hardness.

When the mined frame has training dynamics (`dyn_confidence`, `dyn_variability`, `data_map`; see
`engine.mine`), the summary gains `data_map`: a 2-D histogram of the rows on the data map (variability
on x, confidence on y: binned, so 275k rows stay a few kilobytes) and, per region, counts by class, errors,
suspected label errors and selection. Without those columns nothing changes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from engine import english
from engine.config import AnalysisConfig
from engine.mine import AMBIGUOUS_QUANTILE, CONFIDENCE_SPLIT, DATA_MAP_REGIONS
from engine.text import kiwi_tokens

log = logging.getLogger(__name__)

# Kiwi tags left out of the term analysis: punctuation, particles (J*), derivational affixes (X[SP]*),
# pre-final and noun/adnominal endings (EP, ETN, ETM). They mostly track sentence length and grammar,
# which drowned the words a reader can act on. Connective and final endings (EC "지만", EF "네요") stay:
# they carry contrast and tone, which is often what makes a review hard.
_SKIP_TAGS = frozenset(
    {
        "SF",
        "SP",
        "SS",
        "SSO",
        "SSC",
        "SE",
        "SO",
        "W_URL",
        "W_EMAIL",
        "W_MENTION",
        "W_SERIAL",
        "EP",
        "ETN",
        "ETM",
        "XPN",
        "XSN",
        "XSV",
        "XSA",
        "XSM",
    }
)
_SKIP_PREFIXES = ("J",)
_HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")
_LETTER = re.compile(r"\w")


@dataclass
class Analysis:
    """Everything the report shows. `summary` is JSON-ready; the frames are example tables."""

    summary: dict
    class_names: list[str]
    hardest: pl.DataFrame  # selected rows whose label looks right, hardest first
    label_issues: pl.DataFrame  # rows flagged as likely mislabeled, hardest first
    terms: dict[int, dict[str, list[dict]]] = field(default_factory=dict)  # class -> {"hard": [...], "easy": [...]}
    # data-map region -> its most typical rows (only with training dynamics)
    data_map_examples: dict[str, pl.DataFrame] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- tokens
def detect_tokenizer(texts: Sequence[str]) -> str:
    """'kiwi' when Hangul makes up at least a third of the letters of a sample of the texts."""
    sample = "".join(texts[:2000])
    letters = len(_LETTER.findall(sample))
    return "kiwi" if letters and len(_HANGUL.findall(sample)) / letters >= 1 / 3 else "whitespace"


def tokenize(texts: list[str], kind: str = "kiwi", threads: int | None = None) -> list[list[str]]:
    """Terms of each text: Korean morphemes as 'form/TAG' (kiwipiepy), or lower-cased words with their
    contractions, without scikit-learn's English stop words but with negations (engine.english)."""
    if kind == "whitespace":
        return [english.terms(t) for t in texts]
    return [
        [f"{t.form}/{t.tag}" for t in tokens if t.tag not in _SKIP_TAGS and not t.tag.startswith(_SKIP_PREFIXES)]
        for tokens in kiwi_tokens(texts, threads)
    ]


def log_odds_z(hard: np.ndarray, easy: np.ndarray, prior_weight: float) -> np.ndarray:
    """z-scores of the log-odds ratio of each term, hard vs easy, with an informative Dirichlet prior.

    `hard`, `easy`: term counts, shape (V,). The prior is the pooled counts scaled to `prior_weight`
    times the mean group size, so it shrinks rare terms toward the pooled rate. Positive = over-used in
    hard texts.
    """
    pooled = hard + easy
    alpha = pooled / max(pooled.sum(), 1) * prior_weight * (hard.sum() + easy.sum()) / 2
    alpha = np.maximum(alpha, 1e-9)
    a0 = alpha.sum()
    n_h, n_e = hard.sum(), easy.sum()
    log_h = np.log(hard + alpha) - np.log(n_h + a0 - hard - alpha)
    log_e = np.log(easy + alpha) - np.log(n_e + a0 - easy - alpha)
    variance = 1.0 / (hard + alpha) + 1.0 / (easy + alpha)
    return (log_h - log_e) / np.sqrt(variance)


# ------------------------------------------------------------------------------------------- analysis
def analyze(
    mined: pl.DataFrame,
    class_names: Sequence[str],
    *,
    trace: list[dict],
    config: AnalysisConfig | None = None,
    source: str = "",
    test_overlap: dict | None = None,
    terms: bool = True,
) -> Analysis:
    """Analyse a mined frame (scores + `selected`, see engine.mine) for the report and summary.json.
    `test_overlap`: the train/test overlap counts (engine.overlap), when a test set was given. `terms=False`
    leaves out the distinctive terms (tokenizing is nearly all of the analysis's time): summary["terms"] is
    then empty and summary["terms_skipped"] true."""
    config = config or AnalysisConfig()
    names = list(class_names)
    k = len(names)
    labels = mined["label"].to_numpy()
    preds = mined["oof_pred"].to_numpy()
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)

    per_class = _per_class(mined, confusion, names)
    summary = {
        "source": source,
        "rows": mined.height,
        "classes": names,
        "counts": {
            "all": mined.height,
            "misclassified": int((~mined["is_correct"]).sum()),
            "selected": int(mined["selected"].sum()),
            "label_issues": int(mined["label_issue"].sum()),
            "selected_label_issues": int((mined["selected"] & mined["label_issue"]).sum()),
        },
        "accuracy": float((labels == preds).mean()),
        "macro_f1": float(np.mean([c["f1"] for c in per_class])),
        "selection": trace,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "top_confusions": _top_confusions(confusion, names),
        "hardness_histogram": _hardness_histogram(mined, k),
        "by_length": _by_length(mined),
    }
    data_map_examples = {}
    if "data_map" in mined.columns:
        summary["data_map"] = data_map_summary(mined, names)
        data_map_examples = _data_map_examples(mined, n=min(config.n_examples, 10))
    distinctive = _distinctive_terms(mined, k, config) if terms else {}
    summary["terms"] = {names[c]: t for c, t in distinctive.items()}
    if not terms:
        summary["terms_skipped"] = True
    summary["tokenizer"] = (
        config.tokenizer if config.tokenizer != "auto" else detect_tokenizer(mined["text"].head(2000).to_list())
    )
    if test_overlap is not None:
        summary["test_overlap"] = test_overlap
    summary["findings"] = findings(summary)
    summary["analysis_config"] = {
        "hard_quantile": config.hard_quantile,
        "easy_quantile": config.easy_quantile,
        "max_hard_per_class": config.max_hard_per_class,
        "max_easy_per_class": config.max_easy_per_class,
        "prior_weight": config.prior_weight,
    }

    columns = [
        "id",
        "text",
        "label",
        "oof_pred",
        "p_true",
        "hardness",
        "margin",
        "oof_confidence",
        "label_issue",
    ]
    hardest = (
        mined.filter(pl.col("selected") & ~pl.col("label_issue"))
        .sort("hardness", descending=True, maintain_order=True)
        .head(config.n_examples)
        .select(columns)
    )
    issues = (
        mined.filter(pl.col("label_issue"))
        .sort("hardness", descending=True, maintain_order=True)
        .head(config.n_examples)
        .select(columns)
    )
    return Analysis(
        summary=summary,
        class_names=names,
        hardest=hardest,
        label_issues=issues,
        terms=distinctive,
        data_map_examples=data_map_examples,
    )


# -------------------------------------------------------------------------------------------- data map
def data_map_summary(mined: pl.DataFrame, names: list[str], bins: int = 40) -> dict:
    """Region counts and a (confidence x variability) histogram of the data map.

    `histogram.counts[i][j]` counts rows with confidence in bin i (of `confidence_edges`, 0..1) and
    variability in bin j (of `variability_edges`, 0..the largest variability, at least 0.05).
    """
    confidence = mined["dyn_confidence"].to_numpy()
    variability = mined["dyn_variability"].to_numpy()
    top = max(float(variability.max()), 0.05)
    conf_edges = np.linspace(0.0, 1.0, bins + 1)
    var_edges = np.linspace(0.0, np.ceil(top * 20) / 20, bins + 1)
    counts, _, _ = np.histogram2d(confidence, variability, bins=[conf_edges, var_edges])
    k = len(names)
    regions = []
    for region in DATA_MAP_REGIONS:
        rows = mined.filter(pl.col("data_map") == region)
        by_class = np.bincount(rows["label"].to_numpy(), minlength=k)
        regions.append(
            {
                "region": region,
                "rows": rows.height,
                "share": rows.height / max(mined.height, 1),
                "per_class": {names[c]: int(by_class[c]) for c in range(k)},
                "misclassified": int((~rows["is_correct"]).sum()),
                "label_issues": int(rows["label_issue"].sum()),
                "selected": int(rows["selected"].sum()),
                "mean_confidence": float(rows["dyn_confidence"].mean()) if rows.height else None,
                "mean_variability": float(rows["dyn_variability"].mean()) if rows.height else None,
                "mean_hardness": float(rows["hardness"].mean()) if rows.height else None,
            }
        )
    ambiguous = mined.filter(pl.col("data_map") == "ambiguous")
    return {
        "regions": regions,
        "rule": {
            "ambiguous_quantile": AMBIGUOUS_QUANTILE,
            "ambiguous_min_variability": float(ambiguous["dyn_variability"].min()) if ambiguous.height else None,
            "confidence_split": CONFIDENCE_SPLIT,
        },
        "constant_variability": bool(variability.max() == 0),
        "histogram": {
            "confidence_edges": conf_edges.tolist(),
            "variability_edges": var_edges.tolist(),
            "counts": counts.astype(np.int64).tolist(),
        },
    }


def _data_map_examples(mined: pl.DataFrame, n: int) -> dict[str, pl.DataFrame]:
    """The most ambiguous rows (highest variability) and the hardest to learn (lowest confidence)."""
    columns = ["id", "text", "label", "oof_pred", "dyn_confidence", "dyn_variability", "hardness", "label_issue"]
    return {
        "ambiguous": mined.filter(pl.col("data_map") == "ambiguous")
        .sort("dyn_variability", descending=True, maintain_order=True)
        .head(n)
        .select(columns),
        "hard-to-learn": mined.filter(pl.col("data_map") == "hard-to-learn")
        .sort("dyn_confidence", maintain_order=True)
        .head(n)
        .select(columns),
    }


def _per_class(mined: pl.DataFrame, confusion: np.ndarray, names: list[str]) -> list[dict]:
    stats = {
        r["label"]: r
        for r in mined.group_by("label")
        .agg(
            pl.len().alias("rows"),
            (~pl.col("is_correct")).sum().alias("misclassified"),
            pl.col("selected").sum().alias("selected"),
            pl.col("label_issue").sum().alias("label_issues"),
            pl.col("hardness").mean().alias("mean_hardness"),
            pl.col("hardness").median().alias("median_hardness"),
        )
        .iter_rows(named=True)
    }
    n, n_selected = mined.height, max(int(mined["selected"].sum()), 1)
    out = []
    for c, name in enumerate(names):
        s = stats.get(
            c,
            {
                "rows": 0,
                "misclassified": 0,
                "selected": 0,
                "label_issues": 0,
                "mean_hardness": None,
                "median_hardness": None,
            },
        )
        tp, support, predicted = confusion[c, c], confusion[c].sum(), confusion[:, c].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        out.append(
            {
                "class": c,
                "name": name,
                "rows": s["rows"],
                "share": s["rows"] / n,
                "misclassified": s["misclassified"],
                "error_rate": s["misclassified"] / s["rows"] if s["rows"] else None,
                "selected": s["selected"],
                "share_of_selected": s["selected"] / n_selected,
                "label_issues": s["label_issues"],
                "mean_hardness": s["mean_hardness"],
                "median_hardness": s["median_hardness"],
                "precision": float(precision),
                "recall": float(recall),
                "f1": float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
            }
        )
    return out


def _top_confusions(confusion: np.ndarray, names: list[str], n: int = 6) -> list[dict]:
    pairs = [
        {
            "true": a,
            "pred": b,
            "true_name": names[a],
            "pred_name": names[b],
            "count": int(confusion[a, b]),
            "share_of_true": float(confusion[a, b] / confusion[a].sum()),
        }
        for a in range(len(names))
        for b in range(len(names))
        if a != b and confusion[a, b] > 0
    ]
    return sorted(pairs, key=lambda p: -p["count"])[:n]


def _hardness_histogram(mined: pl.DataFrame, k: int, bins: int = 20) -> dict:
    edges = np.linspace(0.0, 1.0, bins + 1)
    hardness, labels = mined["hardness"].to_numpy(), mined["label"].to_numpy()
    return {
        "edges": edges.tolist(),
        "counts": [np.histogram(hardness[labels == c], bins=edges)[0].tolist() for c in range(k)],
    }


def _by_length(mined: pl.DataFrame, bins: int = 10) -> list[dict]:
    """Mean hardness, error rate and selection share by text-length decile (ties merge deciles)."""
    lengths = mined["n_chars"].to_numpy()
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, bins + 1)).round())
    bucket = np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, max(len(edges) - 2, 0))
    table = (
        mined.with_columns(pl.Series("_bucket", bucket))
        .group_by("_bucket")
        .agg(
            pl.len().alias("rows"),
            pl.col("n_chars").min().alias("min_chars"),
            pl.col("n_chars").max().alias("max_chars"),
            pl.col("hardness").mean().alias("mean_hardness"),
            (~pl.col("is_correct")).mean().alias("error_rate"),
            pl.col("selected").mean().alias("selected_rate"),
            pl.col("label_issue").mean().alias("label_issue_rate"),
        )
        .sort("_bucket")
        .drop("_bucket")
    )
    return table.to_dicts()


def _distinctive_terms(mined: pl.DataFrame, k: int, config: AnalysisConfig) -> dict[int, dict[str, list[dict]]]:
    """Per class: the terms most over-used in its hardest rows ("hard") and in its easiest ("easy")."""
    from sklearn.feature_extraction.text import CountVectorizer

    kind = config.tokenizer
    if kind == "auto":
        kind = detect_tokenizer(mined["text"].head(2000).to_list())
    rng = np.random.default_rng(config.seed)
    groups: list[tuple[int, np.ndarray, np.ndarray]] = []
    with_row = mined.select("label", "hardness").with_row_index("_row")
    for c in range(k):
        rows = with_row.filter(pl.col("label") == c)
        if rows.height < 4:
            continue
        hi = rows["hardness"].quantile(1 - config.hard_quantile, interpolation="linear")
        lo = rows["hardness"].quantile(config.easy_quantile, interpolation="linear")
        hard = rows.filter(pl.col("hardness") >= hi)["_row"].to_numpy()
        easy = rows.filter(pl.col("hardness") <= lo)["_row"].to_numpy()
        easy = easy[~np.isin(easy, hard)]
        if config.max_hard_per_class and len(hard) > config.max_hard_per_class:
            hard = np.sort(rng.choice(hard, config.max_hard_per_class, replace=False))
        if config.max_easy_per_class and len(easy) > config.max_easy_per_class:
            easy = np.sort(rng.choice(easy, config.max_easy_per_class, replace=False))
        if len(hard) and len(easy):
            groups.append((c, hard, easy))
    if not groups:
        return {}

    needed = np.unique(np.concatenate([np.concatenate([h, e]) for _, h, e in groups]))
    texts = mined["text"].to_list()
    log.info("tokenizing %d texts for the term analysis (%s)", len(needed), kind)
    tokens = tokenize([texts[i] for i in needed], kind=kind, threads=config.threads)
    vectorizer = CountVectorizer(analyzer=lambda doc: doc, min_df=1)
    counts = vectorizer.fit_transform(tokens).tocsr()
    vocab = vectorizer.get_feature_names_out()
    hardness = mined["hardness"].to_numpy()
    out: dict[int, dict[str, list[dict]]] = {}
    for c, hard, easy in groups:
        sides = {}
        for name, rows in (("hard", hard), ("easy", easy)):
            sub = counts[np.searchsorted(needed, rows)]
            sides[name] = (
                rows,
                sub.tocsc(),
                np.asarray(sub.sum(axis=0)).ravel().astype(float),
                np.asarray((sub > 0).sum(axis=0)).ravel(),
            )
        z = log_odds_z(sides["hard"][2], sides["easy"][2], config.prior_weight)
        result: dict = {"n_hard": len(hard), "n_easy": len(easy)}
        for name, order in (("hard", np.argsort(-z, kind="stable")), ("easy", np.argsort(z, kind="stable"))):
            rows, columns, support, _ = sides[name]
            picked = order[support[order] >= config.min_term_count][: config.top_terms].tolist()
            shown: set[int] = set()
            result[name] = [
                {
                    "term": _display(vocab[w]),
                    "tag": _tag(vocab[w]),
                    "z": float(z[w]),
                    "hard_docs": int(sides["hard"][3][w]),
                    "easy_docs": int(sides["easy"][3][w]),
                    "hard_share": float(sides["hard"][3][w] / len(hard)),
                    "easy_share": float(sides["easy"][3][w] / len(easy)),
                    "example": _example(texts, rows[columns[:, w].indices], hardness, shown, hardest=name == "hard"),
                }
                for w in picked
            ]
        out[c] = result
    return out


def _display(term: str) -> str:
    return term.rsplit("/", 1)[0] if "/" in term else term


def _tag(term: str) -> str:
    return term.rsplit("/", 1)[1] if "/" in term else ""


def _example(texts: list[str], rows: np.ndarray, hardness: np.ndarray, shown: set[int], *, hardest: bool) -> str:
    """The hardest text using the term (easiest, for easy-side terms), preferring one not shown yet in
    the same list, so each example adds something."""
    if not len(rows):
        return ""
    order = rows[np.argsort(-hardness[rows] if hardest else hardness[rows], kind="stable")]
    pick = next((int(r) for r in order if int(r) not in shown), int(order[0]))
    shown.add(pick)
    return texts[pick]


# --------------------------------------------------------------------------------------------- findings
def findings(summary: dict) -> list[str]:
    """Plain-language observations, most useful first; each states its numbers."""
    out = []
    counts, classes = summary["counts"], summary["per_class"]
    n = summary["rows"]
    out.append(
        f"{counts['misclassified']:,} of {n:,} rows ({counts['misclassified'] / n:.1%}) are misclassified out of "
        f"fold (accuracy {summary['accuracy']:.3f}, macro-F1 {summary['macro_f1']:.3f}); "
        f"{counts['selected']:,} are selected for augmentation."
    )
    rated = [c for c in classes if c["error_rate"] is not None]
    if rated:
        worst = max(rated, key=lambda c: c["error_rate"])
        overall = counts["misclassified"] / n
        out.append(
            f"Hardest class: {_cname(worst)} with an error rate of {worst['error_rate']:.1%} (overall {overall:.1%}) "
            f"and F1 {worst['f1']:.3f}; it is {worst['share']:.1%} of the rows and "
            f"{worst['share_of_selected']:.1%} of the selected samples."
        )
    if summary["top_confusions"]:
        top = summary["top_confusions"][0]
        out.append(
            f"Most frequent mistake: true {top['true_name']} predicted as {top['pred_name']}, {top['count']:,} rows "
            f"({top['share_of_true']:.1%} of class {top['true_name']})."
        )
    by_length = summary["by_length"]
    if len(by_length) >= 2:
        short, long = by_length[0], by_length[-1]
        out.append(
            f"Texts of {short['min_chars']}-{short['max_chars']} characters have mean hardness "
            f"{short['mean_hardness']:.3f} and error rate {short['error_rate']:.1%}; texts of "
            f"{long['min_chars']}-{long['max_chars']} characters {long['mean_hardness']:.3f} and "
            f"{long['error_rate']:.1%}."
        )
    if counts["label_issues"]:
        msg = (
            f"{counts['label_issues']:,} rows ({counts['label_issues'] / n:.1%}) look mislabeled rather than hard "
            f"(confident learning); {counts['selected_label_issues']:,} of them are in the selection."
        )
        if counts["selected_label_issues"]:
            msg += " Augmenting a wrong label multiplies it: review them, or add --exclude-label-issues."
        if counts["label_issues"] / n > 0.1:
            msg += (
                " That is many: confident learning trusts the model's probabilities, and a weak model flags "
                "genuinely ambiguous rows too; flags from a stronger model deserve more trust."
            )
        out.append(msg)
    if "data_map" in summary:
        out.append(_data_map_finding(summary["data_map"], n, counts))
    if "test_overlap" in summary:
        out.append(_overlap_finding(summary["test_overlap"]))
    for name, side in summary.get("terms", {}).items():
        if side.get("hard"):
            t = side["hard"][0]
            out.append(
                f"In class {name}, the hardest texts over-use '{t['term']}' ({t['hard_share']:.1%} of hard vs "
                f"{t['easy_share']:.1%} of easy texts, z = {t['z']:.1f})."
            )
    return out


def _cname(c: dict) -> str:
    return f"{c['class']} ({c['name']})" if c["name"] != str(c["class"]) else str(c["class"])


def _data_map_finding(data_map: dict, n: int, counts: dict) -> str:
    regions = {r["region"]: r for r in data_map["regions"]}
    parts = ", ".join(f"{r['rows']:,} {name} ({r['share']:.1%})" for name, r in regions.items())
    msg = f"Data map (training dynamics): {parts}."
    hard = regions["hard-to-learn"]
    if hard["rows"] and counts["label_issues"]:
        msg += (
            f" {hard['label_issues'] / hard['rows']:.1%} of the hard-to-learn rows are suspected label errors "
            f"(overall {counts['label_issues'] / n:.1%}): rows the model never learns are often mislabeled."
        )
    if data_map["constant_variability"]:
        msg += " Variability is 0 everywhere (one training epoch): train >= 2 epochs for a data map."
    return msg


def _overlap_finding(overlap: dict) -> str:
    shared = overlap["exact"] + overlap["near"]
    msg = (
        f"Train/test overlap: {overlap['exact']:,} of {overlap['test_rows']:,} test texts appear word for word in "
        f"the training texts and {overlap['near']:,} more nearly (character 3-gram cosine >= "
        f"{overlap['near_threshold']:g})."
    )
    if shared:
        msg += (
            f" Test scores on those {shared:,} rows measure memory, not generalization: "
            "hardaug compare --drop-test-overlap evaluates without them."
        )
    return msg
