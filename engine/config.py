"""One frozen dataclass of options per stage, validated when built (so a bad value fails before work)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TfidfConfig:
    """Character n-gram TF-IDF + multinomial logistic regression: fast, strong on short Korean text
    (no tokenizer needed, robust to spacing errors and slang)."""

    analyzer: str = "char_wb"
    ngram_min: int = 1
    ngram_max: int = 3
    max_features: int | None = 300_000
    min_df: int = 2
    sublinear_tf: bool = True
    C: float = 2.0
    max_iter: int = 1000

    def __post_init__(self) -> None:
        if self.analyzer not in ("char", "char_wb", "word"):
            raise ValueError(f"analyzer must be 'char', 'char_wb' or 'word', got {self.analyzer!r}")
        if not 1 <= self.ngram_min <= self.ngram_max:
            raise ValueError(f"need 1 <= ngram_min <= ngram_max, got {self.ngram_min}..{self.ngram_max}")
        if self.max_features is not None and self.max_features < 1:
            raise ValueError(f"max_features must be positive or None, got {self.max_features}")
        if self.C <= 0:
            raise ValueError(f"C must be positive, got {self.C}")


@dataclass(frozen=True)
class OofConfig:
    """Stratified K-fold out-of-fold predictions (the notebook used 10 folds, seed 42)."""

    n_folds: int = 10
    seed: int = 42
    backend: str = "tfidf"
    tfidf: TfidfConfig = field(default_factory=TfidfConfig)

    def __post_init__(self) -> None:
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")
        if self.backend not in ("tfidf",):
            raise ValueError(f"backend must be one of ['tfidf'], got {self.backend!r}")


@dataclass(frozen=True)
class AnalysisConfig:
    """What the report compares. Hard/easy for the term statistics are taken within each class, so
    that terms typical of a class do not masquerade as signs of hardness."""

    hard_quantile: float = 0.2  # the hardest 20% of each class ...
    easy_quantile: float = 0.5  # ... against its easiest 50%
    max_easy_per_class: int | None = 10_000  # cap on the comparison sample (tokenizing is the cost)
    min_term_count: int = 5
    # Informative Dirichlet prior (Monroe et al. 2008): pooled counts scaled to this share of a group's size.
    prior_weight: float = 0.1
    top_terms: int = 15
    n_examples: int = 25
    tokenizer: str = "auto"  # auto | kiwi | whitespace
    threads: int | None = None  # tokenizer threads; None = the cores this process may use
    seed: int = 42

    def __post_init__(self) -> None:
        if not 0 < self.hard_quantile < 1 or not 0 < self.easy_quantile < 1:
            raise ValueError("hard_quantile and easy_quantile must be in (0, 1)")
        if self.hard_quantile + self.easy_quantile > 1:
            raise ValueError("hard_quantile + easy_quantile must be <= 1 so hard and easy do not overlap")
        if self.tokenizer not in ("auto", "kiwi", "whitespace"):
            raise ValueError(f"tokenizer must be auto, kiwi or whitespace, got {self.tokenizer!r}")
