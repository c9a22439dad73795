"""Render an `Analysis` as one self-contained HTML file (inline CSS and SVG plots, no network).

Plots are matplotlib SVG with text left as text (`svg.fonttype = none`), so the browser draws Korean
class names and terms with its own fonts and the charts stay sharp at any zoom.
"""

from __future__ import annotations

import io
import re
import warnings
from datetime import UTC, datetime
from html import escape

import numpy as np
import polars as pl

from engine import __version__
from engine.analyze import Analysis

# Fonts with Hangul, tried in order after the Latin font (Linux: fonts-noto-cjk, macOS, Windows, Naver's):
# the browser falls back glyph by glyph, so Korean texts, terms and class names render instead of empty boxes.
KOREAN_FONTS = ("Noto Sans CJK KR", "Noto Sans KR", "Apple SD Gothic Neo", "Malgun Gothic", "NanumGothic")
PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]


# ---------------------------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.family": ["sans-serif"],
            # Written into every SVG <text> (svg.fonttype none): DejaVu Sans first, as matplotlib measured the
            # labels with it, then the Hangul fonts for the browser's glyph fallback.
            "font.sans-serif": ["DejaVu Sans", *KOREAN_FONTS, "sans-serif"],
            "svg.hashsalt": "hardaug",  # stable ids: same data, same file
        }
    )
    return plt


def _svg(fig) -> str:
    buf = io.StringIO()
    with warnings.catch_warnings():
        # Text stays text in the SVG and the browser draws it; matplotlib's own font lacking Hangul is moot.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    _pyplot().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _color(c: int) -> str:
    return PALETTE[c % len(PALETTE)]


def plot_class_shares(analysis: Analysis) -> str:
    plt = _pyplot()
    rows = analysis.summary["per_class"]
    counts = analysis.summary["counts"]
    names = [r["name"] for r in rows]
    series = {
        "all rows": [r["share"] for r in rows],
        "misclassified": [r["misclassified"] / max(counts["misclassified"], 1) for r in rows],
        "selected": [r["share_of_selected"] for r in rows],
    }
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    x = np.arange(len(names))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        ax.bar(x + (i - 1) * width, values, width, label=label, color=["#b8c4d6", "#e6a57e", "#c44e52"][i])
    ax.set_xticks(x, names)
    ax.set_ylabel("share")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.legend(frameon=False, ncols=3, loc="upper center", bbox_to_anchor=(0.5, 1.18))
    return _svg(fig)


def plot_confusion(analysis: Analysis) -> str:
    plt = _pyplot()
    matrix = np.asarray(analysis.summary["confusion"], dtype=float)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    names = analysis.class_names
    size = 1.0 + 0.85 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            f"{rates[i, j]:.0%}\n{int(value):,}",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if rates[i, j] > 0.55 else "#222",
        )
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted (out of fold)")
    ax.set_ylabel("true label")
    ax.spines[:].set_visible(False)
    fig.colorbar(image, ax=ax, fraction=0.046, format=lambda v, _: f"{v:.0%}")
    return _svg(fig)


def plot_hardness_histograms(analysis: Analysis) -> str:
    plt = _pyplot()
    hist = analysis.summary["hardness_histogram"]
    edges = np.asarray(hist["edges"])
    k = len(analysis.class_names)
    fig, axes = plt.subplots(1, k, figsize=(2.3 * k, 2.2), sharey=True, squeeze=False)
    for c, ax in enumerate(axes[0]):
        counts = np.asarray(hist["counts"][c], dtype=float)
        share = counts / max(counts.sum(), 1)
        ax.bar(edges[:-1], share, width=np.diff(edges), align="edge", color=_color(c), alpha=0.85)
        ax.set_title(analysis.class_names[c], fontsize=10)
        ax.set_xlabel("hardness")
        ax.axvline(0.5, color="#999", lw=0.6, ls="--")
    axes[0][0].set_ylabel("share of class")
    axes[0][0].yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    return _svg(fig)


def plot_by_length(analysis: Analysis) -> str:
    plt = _pyplot()
    rows = analysis.summary["by_length"]
    labels = [f"{r['min_chars']}-{r['max_chars']}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    ax.plot(x, [r["mean_hardness"] for r in rows], marker="o", color="#c44e52", label="mean hardness (0-1)")
    ax.plot(x, [r["error_rate"] for r in rows], marker="s", color="#4c72b0", label="error rate (share of rows)")
    ax.plot(x, [r["selected_rate"] for r in rows], marker="^", color="#55a868", label="selected (share of rows)")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_xlabel("text length in characters (deciles)")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, ncols=3, loc="upper center", bbox_to_anchor=(0.5, 1.18))
    return _svg(fig)


def plot_data_map(analysis: Analysis) -> str:
    """The data map as a 2-D histogram (log colour scale), drawn as one small embedded image whatever the
    number of rows, with the region boundaries of `engine.mine.data_map_expr`."""
    from matplotlib.colors import LogNorm

    plt = _pyplot()
    data_map = analysis.summary["data_map"]
    hist = data_map["histogram"]
    counts = np.asarray(hist["counts"], dtype=float)
    var_edges, conf_edges = hist["variability_edges"], hist["confidence_edges"]
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    shown = np.ma.masked_equal(counts, 0)
    image = ax.imshow(
        shown,
        origin="lower",
        aspect="auto",
        extent=(var_edges[0], var_edges[-1], conf_edges[0], conf_edges[-1]),
        cmap="viridis",
        norm=LogNorm(vmin=1, vmax=max(counts.max(), 2)),
        interpolation="nearest",
    )
    image.set_rasterized(True)
    rule = data_map["rule"]
    cut = rule["ambiguous_min_variability"]
    split = rule["confidence_split"]
    right = var_edges[-1]
    label = {"fontsize": 9, "bbox": {"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1.5}}
    if cut is not None:
        ax.axvline(cut, color="#c44e52", lw=1, ls="--")
        ax.text(min(cut + 0.01 * right, right * 0.98), 0.97, "ambiguous", color="#c44e52", va="top", **label)
    ax.plot([0, cut if cut is not None else right], [split, split], color="#444", lw=1, ls="--")
    ax.text(0.01 * right, 0.97, "easy-to-learn", color="#222", va="top", **label)
    ax.text(0.01 * right, 0.03, "hard-to-learn", color="#222", va="bottom", **label)
    ax.set_xlabel("variability (std of p(label) over epochs)")
    ax.set_ylabel("confidence (mean p(label))")
    fig.colorbar(image, ax=ax, fraction=0.046, label="rows")
    return _svg(fig)


# ----------------------------------------------------------------------------------------------- html
CSS = """
:root { --ink:#1f2328; --muted:#656d76; --line:#d8dee4; --bg:#f6f8fa; --accent:#c44e52; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", "Noto Sans", FONTS_KO, sans-serif; color: var(--ink);
       margin: 0; background: #fff; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 40px 0 6px; padding-top: 8px;
border-top: 1px solid var(--line); } h3 { font-size: 16px; margin: 18px 0 6px; }
.meta, .how { color: var(--muted); font-size: 13px; } .how { max-width: 820px; margin: 2px 0 12px; }
nav { font-size: 13px; margin: 10px 0 0; } nav a { margin-right: 14px; color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; margin: 18px 0; }
.card { background: var(--bg); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card .n { font-size: 26px; font-weight: 650; } .card .l { color: var(--muted); font-size: 13px; }
.findings { background: #fff8f0; border: 1px solid #f0d9c0; border-radius: 8px; padding: 10px 18px 10px 34px; }
.findings li { margin: 6px 0; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; margin: 8px 0 4px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { max-width: 560px; }
.grid2 { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 22px; }
table.terms { table-layout: fixed; }
table.terms th:first-child { width: 54%; } table.terms th:last-child { width: 92px; }
.figure svg { max-width: 100%; height: auto; }
.tag { color: var(--muted); font-size: 11px; margin-left: 3px; }
.bar { display: inline-block; height: 8px; background: var(--accent); border-radius: 2px; vertical-align: middle; }
.bar.easy { background: #4c72b0; }
.ex { color: var(--muted); font-size: 12px; display: block; max-width: 100%; overflow: hidden;
      text-overflow: ellipsis; white-space: nowrap; }
.flag { color: var(--accent); font-weight: 600; }
code { white-space: nowrap; }  /* a flag never breaks after its dashes */
.trace td:first-child { white-space: nowrap; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
""".replace("FONTS_KO", ", ".join(f'"{f}"' for f in KOREAN_FONTS))


def _table(header: list[tuple[str, str]], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f'<th class="{c}">{escape(h)}</th>' for h, c in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="{header[i][1]}">{cell}</td>' for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _num(value, fmt: str = ",") -> str:
    return "" if value is None else format(value, fmt)


def _class_label(names: list[str], c: int) -> str:
    return escape(names[c]) if names[c] == str(c) else f"{c} {escape(names[c])}"


def _shown(frame: pl.DataFrame, total: int) -> str:
    """How many of `total` rows a table lists ("Showing the hardest 50 of 6,612.")."""
    if frame.height == total:
        return f"Showing all {_num(total)}." if total else ""
    return f"Showing the hardest {_num(frame.height)} of {_num(total)}."


def _examples_table(frame: pl.DataFrame, names: list[str]) -> str:
    if frame.height == 0:
        return '<p class="how">None.</p>'
    rows = [
        [
            escape(str(r["id"])),
            escape(r["text"]),
            _class_label(names, r["label"]),
            _class_label(names, r["oof_pred"]),
            f"{r['p_true']:.3f}",
            f"{r['margin']:+.3f}",
            f"{r['hardness']:.3f}",
        ]
        for r in frame.iter_rows(named=True)
    ]
    header = [
        ("id", ""),
        ("text", "text"),
        ("label", ""),
        ("predicted", ""),
        ("p_true", "num"),
        ("margin", "num"),
        ("hardness", "num"),
    ]
    return _table(header, rows)


def _terms_section(analysis: Analysis) -> str:
    if not analysis.terms:
        return '<p class="how">Too few rows per class for a term analysis.</p>'
    parts = []
    for c, side in analysis.terms.items():
        blocks = []
        for name, title in (("hard", "over-used in hard texts"), ("easy", "over-used in easy texts")):
            terms = side.get(name, [])
            top = max((abs(t["z"]) for t in terms), default=1.0) or 1.0
            rows = [
                [
                    f'{escape(t["term"])}<span class="tag">{escape(t["tag"])}</span>'
                    f'<span class="ex" title="{escape(t["example"])}">{escape(t["example"])}</span>',
                    f"{t['hard_share']:.1%}",
                    f"{t['easy_share']:.1%}",
                    f'<span class="bar {name}" style="width:{int(40 * abs(t["z"]) / top)}px"></span> {t["z"]:+.1f}',
                ]
                for t in terms
            ]
            table = (
                _table(
                    [("term, and an example", ""), ("in hard", "num"), ("in easy", "num"), ("z", "num")],
                    rows,
                    "terms",
                )
                if rows
                else '<p class="how">No term reaches the minimum count.</p>'
            )
            blocks.append(f"<div><h3>{escape(title)}</h3>{table}</div>")
        parts.append(
            f"<h3>Class {_class_label(analysis.class_names, c)}: hardest {side['n_hard']:,} vs easiest "
            f'{side["n_easy"]:,} texts</h3><div class="grid2">{"".join(blocks)}</div>'
        )
    return "".join(parts)


def _tokenizer_note(tokenizer: str) -> str:
    """What the term analysis counted, for the tokenizer it used (engine.analyze.tokenize)."""
    if tokenizer == "kiwi":
        return (
            "Korean morphemes from kiwipiepy, the tag being the part of speech; particles and grammatical affixes "
            "are left out, connective and final endings (e.g. 지만, 네요) stay, as they carry contrast and tone"
        )
    return (
        "lower-cased words, contractions such as isn't kept whole; scikit-learn's English stop words are left "
        "out, negations (not, no, never, ...) kept"
    )


def _overlap_section(overlap: dict | None) -> str:
    if not overlap:
        return ""
    rows = [[escape(e["kind"]), escape(e["test"]), escape(e["train"])] for e in overlap["examples"]]
    table = _table([("kind", ""), ("test text", "text"), ("training text", "text")], rows) if rows else ""
    return f"""<h3>Train/test overlap</h3>
<p class="how">{_num(overlap["exact"])} of {_num(overlap["test_rows"])} test texts ({escape(overlap["test"])}) occur
word for word in the training texts (after lower-casing and collapsing spaces), {_num(overlap["near"])} more nearly
(character 1-3-gram TF-IDF cosine &ge; {overlap["near_threshold"]:g}). Scores on them measure memory, not
generalization; <code>hardaug compare --drop-test-overlap</code> leaves them out.</p>{table}"""


def render_report(analysis: Analysis) -> str:
    """The whole report as an HTML string."""
    s = analysis.summary
    names = analysis.class_names
    counts = s["counts"]
    cards = [
        (counts["all"], "rows"),
        (counts["misclassified"], f"misclassified out of fold ({counts['misclassified'] / s['rows']:.1%})"),
        (counts["selected"], "selected for augmentation"),
        (counts["label_issues"], "suspected label errors"),
        (f"{s['accuracy']:.3f}", "out-of-fold accuracy"),
        (f"{s['macro_f1']:.3f}", "out-of-fold macro-F1"),
    ]
    cards_html = "".join(
        f'<div class="card"><div class="n">{_num(n) if isinstance(n, int) else n}</div>'
        f'<div class="l">{escape(label)}</div></div>'
        for n, label in cards
    )
    trace_rows = [[escape(t["step"]), _num(t["rows"])] for t in s["selection"]]
    # A selection can be nearly all suspected label errors (a weak model, the notebook preset): say where they
    # went, so that a short table here does not look like a bug.
    clean_note = _shown(analysis.hardest, counts["selected"] - counts["selected_label_issues"])
    if counts["selected_label_issues"]:
        clean_note += (
            f" The other {_num(counts['selected_label_issues'])} selected rows are suspected label errors (next "
            "section); <code>--exclude-label-issues</code> leaves them out of the selection."
        )
    per_class_rows = [
        [
            _class_label(names, r["class"]),
            _num(r["rows"]),
            f"{r['share']:.1%}",
            f"{r['error_rate']:.1%}" if r["error_rate"] is not None else "",
            f"{r['f1']:.3f}",
            _num(r["selected"]),
            f"{r['share_of_selected']:.1%}",
            _num(r["label_issues"]),
            f"{r['mean_hardness']:.3f}" if r["mean_hardness"] is not None else "",
        ]
        for r in s["per_class"]
    ]
    confusion_rows = [
        [
            f"{escape(p['true_name'])} → {escape(p['pred_name'])}",
            _num(p["count"]),
            f"{p['share_of_true']:.1%}",
        ]
        for p in s["top_confusions"]
    ]
    length_rows = [
        [
            f"{r['min_chars']}-{r['max_chars']}",
            _num(r["rows"]),
            f"{r['mean_hardness']:.3f}",
            f"{r['error_rate']:.1%}",
            f"{r['selected_rate']:.1%}",
            f"{r['label_issue_rate']:.1%}",
        ]
        for r in s["by_length"]
    ]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        (
            "overview",
            "Overview",
            f"""
<div class="cards">{cards_html}</div>
<h3>What stands out</h3><ul class="findings">{"".join(f"<li>{escape(f)}</li>" for f in s["findings"])}</ul>
<h3>Selection, step by step</h3>
<p class="how">Each step keeps a subset of the rows the previous step kept; quantile steps are relative to
the current rows.</p>{_table([("step", ""), ("rows left", "num")], trace_rows, "trace")}
{_overlap_section(s.get("test_overlap"))}""",
        ),
        (
            "classes",
            "Classes: who is hard",
            f"""
<p class="how">Share of each class among all rows, among the misclassified rows and among the selected rows.
A class whose share grows from left to right is over-represented among the hard cases.</p>
<div class="figure">{plot_class_shares(analysis)}</div>
{
                _table(
                    [
                        ("class", ""),
                        ("rows", "num"),
                        ("share", "num"),
                        ("error rate", "num"),
                        ("F1", "num"),
                        ("selected", "num"),
                        ("of selected", "num"),
                        ("label errors?", "num"),
                        ("mean hardness", "num"),
                    ],
                    per_class_rows,
                )
            }""",
        ),
        (
            "confusions",
            "Confusions: what they are mistaken for",
            f"""
<p class="how">Rows: the true label; columns: the out-of-fold prediction; each cell shows the share of the
true class and the count. Two classes confused often in both directions usually share a fuzzy boundary;
confusions that mostly go one way point at a class the model under-predicts, or at label errors.</p>
<div class="grid2"><div class="figure">{plot_confusion(analysis)}</div>
<div><h3>Most frequent mistakes</h3>{
                _table([("true → predicted", ""), ("rows", "num"), ("of true class", "num")], confusion_rows)
            }</div></div>""",
        ),
        (
            "hardness",
            "Hardness by class",
            f"""
<p class="how">Hardness = 1 - p(true label) out of fold: 0 = the model is sure of the right label,
1 = it gives the label no probability. Mass right of the dashed line at 0.5 is mostly misclassified.</p>
<div class="figure">{plot_hardness_histograms(analysis)}</div>""",
        ),
        (
            "length",
            "Hardness and text length",
            f"""
<p class="how">Rows split into deciles of length in characters. Very short texts carry little evidence;
if they dominate the hard set, a length filter (<code>--min-chars</code>) keeps augmentation from amplifying noise.</p>
<div class="figure">{plot_by_length(analysis)}</div>
{
                _table(
                    [
                        ("characters", ""),
                        ("rows", "num"),
                        ("mean hardness", "num"),
                        ("error rate", "num"),
                        ("selected", "num"),
                        ("label errors?", "num"),
                    ],
                    length_rows,
                )
            }""",
        ),
        (
            "terms",
            "Terms that mark hard texts",
            f"""
<p class="how">Within each class, the hardest {s["analysis_config"]["hard_quantile"]:.0%} of texts are compared
with its easiest {s["analysis_config"]["easy_quantile"]:.0%} (at most {_num(s["analysis_config"]["max_easy_per_class"])}
sampled). Terms ({escape(_tokenizer_note(s["tokenizer"]))}) are ranked by the z-score of their log-odds ratio
with an informative Dirichlet prior (Monroe et al. 2008), which discounts rare terms; shares are the fraction of
texts containing the term. Hover an example to see it whole. Hard-side terms are what the model does not
understand yet; easy-side terms are what it relies on.
</p>{_terms_section(analysis)}""",
        ),
        (
            "examples",
            "The hardest samples whose label looks right",
            f"""
<p class="how">Selected rows not flagged as label errors, hardest first: the samples augmentation should
teach. {clean_note} margin = p(true) - best other class (negative = misclassified).</p>
{_examples_table(analysis.hardest, names)}""",
        ),
        (
            "label-errors",
            "Suspected label errors",
            f"""
<p class="how">Rows that confident learning (cleanlab) flags as likely mislabeled: the model is confidently
sure of another class, beyond what the estimated class-confusion rates explain. Review or relabel them rather
than augment them; "predicted" is the likely correct label. {_shown(analysis.label_issues, counts["label_issues"])}</p>
{_examples_table(analysis.label_issues, names)}""",
        ),
    ]
    if "data_map" in s:
        sections.insert(4, ("data-map", "Data map: training dynamics", _data_map_section(analysis)))
    nav = "".join(f'<a href="#{key}">{escape(title)}</a>' for key, title, _ in sections)
    body = "".join(f'<h2 id="{key}">{escape(title)}</h2>{html}' for key, title, html in sections)
    return f"""<!doctype html>
<html lang="{"ko" if s["tokenizer"] == "kiwi" else "en"}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hardaug report: {escape(s["source"])}</title><style>{CSS}</style></head>
<body><main>
<h1>Hard samples: what the model gets wrong and why</h1>
<div class="meta">{escape(s["source"])} &middot; {s["rows"]:,} rows &middot; {len(names)} classes
({", ".join(escape(n) for n in names)}) &middot; hardaug {__version__} &middot; {generated}</div>
<nav>{nav}</nav>
{_compact(body)}
</main></body></html>
"""


def _data_map_section(analysis: Analysis) -> str:
    data_map = analysis.summary["data_map"]
    names = analysis.class_names
    rule = data_map["rule"]
    cut = rule["ambiguous_min_variability"]
    rows = [
        [
            escape(r["region"]),
            _num(r["rows"]),
            f"{r['share']:.1%}",
            *[_num(r["per_class"][name]) for name in names],
            _num(r["misclassified"]),
            _num(r["label_issues"]),
            _num(r["selected"]),
            f"{r['mean_confidence']:.3f}" if r["mean_confidence"] is not None else "",
            f"{r['mean_variability']:.3f}" if r["mean_variability"] is not None else "",
        ]
        for r in data_map["regions"]
    ]
    header = [
        ("region", ""),
        ("rows", "num"),
        ("share", "num"),
        *[(name, "num") for name in names],
        ("misclassified", "num"),
        ("label errors?", "num"),
        ("selected", "num"),
        ("confidence", "num"),
        ("variability", "num"),
    ]
    warning = (
        '<p class="how flag">Variability is 0 for every row: the model trained one epoch. Train at least 2 '
        "(hardaug oof --epochs 3 --dynamics) for a meaningful map.</p>"
        if data_map["constant_variability"]
        else ""
    )
    examples = "".join(
        f"<h3>{escape(title)}</h3>{_dynamics_table(analysis.data_map_examples.get(region), names)}"
        for region, title in (
            ("ambiguous", "Most ambiguous rows (highest variability)"),
            ("hard-to-learn", "Hardest to learn (lowest confidence)"),
        )
    )
    return f"""
<p class="how">Each training row, placed by how its p(label) moved while the fold models trained on it
(Swayamdipta et al. 2020, "Dataset Cartography"): confidence = mean p(label) at the end of each epoch,
variability = its standard deviation over the epochs, both averaged over the K-1 folds that trained on the row.
Ambiguous = variability in the top third ({"at least " + format(cut, ".3f") if cut is not None else "none"});
of the rest, easy-to-learn = confidence &ge; {rule["confidence_split"]:g}, hard-to-learn = below. Ambiguous rows
are the ones that teach a model most; hard-to-learn rows are often mislabeled. Colour = rows per cell (log).</p>
{warning}<div class="grid2"><div class="figure">{plot_data_map(analysis)}</div>
<div>{_table(header, rows)}</div></div>{examples}"""


def _dynamics_table(frame: pl.DataFrame | None, names: list[str]) -> str:
    if frame is None or frame.height == 0:
        return '<p class="how">None.</p>'
    rows = [
        [
            escape(str(r["id"])),
            escape(r["text"]),
            _class_label(names, r["label"]),
            _class_label(names, r["oof_pred"]),
            f"{r['dyn_confidence']:.3f}",
            f"{r['dyn_variability']:.3f}",
            f"{r['hardness']:.3f}",
            '<span class="flag">yes</span>' if r["label_issue"] else "",
        ]
        for r in frame.iter_rows(named=True)
    ]
    header = [
        ("id", ""),
        ("text", "text"),
        ("label", ""),
        ("predicted", ""),
        ("confidence", "num"),
        ("variability", "num"),
        ("hardness", "num"),
        ("label error?", ""),
    ]
    return _table(header, rows)


def _compact(html: str) -> str:
    return re.sub(r"\n\s*\n", "\n", html)
