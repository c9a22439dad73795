"""The filter options (one frozen dataclass) and the order in which rejections are reported."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.config import TfidfConfig

DEFAULT_EMBED_MODEL = "jhgan/ko-sroberta-multitask"  # the motivating notebook's model

# Every row is checked by every enabled filter; `reject_reason` is the FIRST failing one in this order:
# cheapest and most certain first, the within-set duplicate check last (it keeps the first copy of a
# group among the rows that passed everything else).
REASONS = (
    "empty",  # nothing but whitespace
    "identical_to_source",  # same as the source once whitespace is collapsed
    "length_ratio",  # non-space length outside [min, max] x the source's (with slack for short sources)
    "low_hangul",  # Korean source, augmented text with too small a share of Hangul letters
    "repetition",  # one unit of 1-10 characters repeated over most of the text, a longer run than the source's
    "near_duplicate_train",  # char n-gram TF-IDF cosine >= threshold with an original training text
    "low_similarity",  # sentence-embedding cosine to the source below the minimum
    "label_mismatch",  # the label model does not give the source's label (enough probability)
    "near_duplicate_augmented",  # near-duplicate of an earlier augmented row that is kept
)

_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class FilterConfig:
    """What to check and with which thresholds. Defaults follow the motivating notebook where it had one
    (similarity >= 0.80 with jhgan/ko-sroberta-multitask, TF-IDF cosine duplicates above 0.95)."""

    # cheap checks
    cheap_checks: bool = True
    min_length_ratio: float = 0.5
    max_length_ratio: float = 2.0
    length_slack: int = 5  # characters of leeway on both bounds, so a 3-character source may become 8
    korean_source_share: float = 0.5  # a source is Korean when Hangul makes up at least this share of its letters
    min_hangul_share: float = 0.5  # ... and then its augmented text needs this share (0 disables)
    max_repeat_share: float = 0.5  # reject above this repeated share if the run beats the source's (1 disables)
    # near-duplicates (character n-gram TF-IDF cosine)
    dedup_train: bool = True
    dedup_augmented: bool = True
    dup_threshold: float = 0.95
    dup_ngram_max: int = 3
    # semantic similarity to the source (sentence-transformers)
    similarity: bool = True
    min_similarity: float = 0.80
    embed_model: str = DEFAULT_EMBED_MODEL
    # label consistency
    label_check: bool = True
    label_model: str = "tfidf"  # tfidf (trained on --train) | a .joblib pipeline | a transformers folder
    min_label_prob: float | None = None  # None: the model's top class must be the label
    tfidf: TfidfConfig = field(default_factory=TfidfConfig)
    # compute
    device: str = "cpu"
    batch_size: int = 64
    max_length: int = 128  # tokens per text for the transformers label model

    def __post_init__(self) -> None:
        for name in ("min_length_ratio", "max_length_ratio"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.min_length_ratio > self.max_length_ratio:
            raise ValueError(
                f"min_length_ratio ({self.min_length_ratio}) must not exceed max_length_ratio ({self.max_length_ratio})"
            )
        if self.length_slack < 0:
            raise ValueError(f"length_slack must be >= 0 characters, got {self.length_slack}")
        for name in ("korean_source_share", "min_hangul_share", "max_repeat_share"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a share in [0, 1], got {value}")
        if not 0 < self.dup_threshold <= 1:
            raise ValueError(f"dup_threshold must be a cosine in (0, 1], got {self.dup_threshold}")
        if self.dup_ngram_max not in (1, 2, 3):
            raise ValueError(f"dup_ngram_max must be 1, 2 or 3, got {self.dup_ngram_max}")
        if not -1 <= self.min_similarity <= 1:
            raise ValueError(f"min_similarity must be a cosine in [-1, 1], got {self.min_similarity}")
        if self.min_label_prob is not None and not 0 <= self.min_label_prob <= 1:
            raise ValueError(f"min_label_prob must be a probability in [0, 1], got {self.min_label_prob}")
        if not _DEVICE.match(self.device):
            raise ValueError(f"device must be cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.batch_size < 1 or self.max_length < 1:
            raise ValueError(f"batch_size and max_length must be positive, got {self.batch_size}, {self.max_length}")
        if not self.embed_model.strip() or not self.label_model.strip():
            raise ValueError("embed_model and label_model must not be empty")

    def enabled(self) -> list[str]:
        """The reasons this configuration can give, in report order."""
        on = {
            "empty": True,  # an empty text is never kept, whatever is switched off
            "identical_to_source": self.cheap_checks,
            "length_ratio": self.cheap_checks,
            "low_hangul": self.cheap_checks and self.min_hangul_share > 0,
            "repetition": self.cheap_checks and self.max_repeat_share < 1,
            "near_duplicate_train": self.dedup_train,
            "low_similarity": self.similarity,
            "label_mismatch": self.label_check,
            "near_duplicate_augmented": self.dedup_augmented,
        }
        return [r for r in REASONS if on[r]]
