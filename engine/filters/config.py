"""The filter options (one frozen dataclass) and the order in which rejections are reported."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field

from engine.config import TfidfConfig
from engine.errors import InputError
from engine.options import option

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
    "near_copy_of_source",  # char n-gram TF-IDF cosine >= its threshold with the row's own source text
    "near_duplicate_train",  # char n-gram TF-IDF cosine >= threshold with another original training text
    "low_similarity",  # sentence-embedding cosine to the source below the minimum
    "label_mismatch",  # the label model's opinion fails --label-policy (see engine.filters.judge)
    "near_duplicate_augmented",  # near-duplicate of an earlier augmented row that is kept
)

_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
# the argument groups of `hardaug filter --help`
CHEAP = "cheap checks (lengths count non-space characters)"
DUPLICATES = "near-duplicates (character 1-3-gram TF-IDF cosine, exact search)"
SEMANTIC = "semantic similarity to the source (sentence-transformers)"
LABEL = "label consistency"
COMPUTE = "compute"
LABEL_POLICIES = ("absolute", "relative", "off")


@dataclass(frozen=True)
class FilterConfig:
    """What to check and with which thresholds; each field's help is its flag's (`hardaug filter --help`).
    Defaults follow the motivating notebook where it had one (similarity >= 0.80 with
    jhgan/ko-sroberta-multitask, TF-IDF cosine duplicates above 0.95)."""

    cheap_checks: bool = option(
        True,
        group=CHEAP,
        flag="--no-cheap-checks",
        dest="no_cheap_checks",
        cli_default=False,
        convert=operator.not_,
        help="skip identical/length/Hangul/repetition checks",
    )
    min_length_ratio: float = option(0.5, group=CHEAP, help="shortest allowed length x source's")
    max_length_ratio: float = option(2.0, group=CHEAP, help="longest allowed length x source's")
    # characters of leeway on both bounds, so a 3-character source may become 8
    length_slack: int = option(5, group=CHEAP, help="characters of leeway on both length bounds")
    min_hangul_share: float = option(
        0.5,
        group=CHEAP,
        help="for Korean sources: least share of Hangul among the letters of the text; 0 disables",
    )
    korean_source_share: float = option(
        0.5, group=CHEAP, help="a source is Korean when at least this share of its letters is Hangul"
    )
    max_repeat_share: float = option(
        0.5,
        group=CHEAP,
        help="reject texts whose longest run of one repeated 1-10 character unit covers more than this share, "
        "when the source repeats less; 1 disables",
    )
    dup_threshold: float = option(
        0.95,
        group=DUPLICATES,
        help="cosine at or above which a text duplicates another training text or an earlier augmented row",
    )
    source_dup_threshold: float = option(
        0.95,
        group=DUPLICATES,
        help="cosine at or above which a text is a near copy of its own source (near_copy_of_source); 1 rejects "
        "only copies up to case and spacing",
    )
    dedup_train: bool = option(
        True,
        group=DUPLICATES,
        flag="--no-dedup-train",
        dest="no_dedup_train",
        cli_default=False,
        convert=operator.not_,
        help="do not compare with the original training set (its own source included)",
    )
    dedup_augmented: bool = option(
        True,
        group=DUPLICATES,
        flag="--no-dedup-augmented",
        dest="no_dedup_augmented",
        cli_default=False,
        convert=operator.not_,
        help="do not compare augmented rows with each other",
    )
    dup_ngram_max: int = option(3, group=DUPLICATES, choices=(1, 2, 3), help="longest character n-gram")
    similarity: bool = option(
        True,
        group=SEMANTIC,
        flag="--no-similarity",
        dest="no_similarity",
        cli_default=False,
        convert=operator.not_,
        help="skip the embedding filter",
    )
    min_similarity: float = option(0.80, group=SEMANTIC, help="least cosine to the source")
    embed_model: str = option(
        DEFAULT_EMBED_MODEL,
        group=SEMANTIC,
        help=f"sentence-transformers folder or hub id (default: {DEFAULT_EMBED_MODEL}, the notebook's model; "
        "needs hub access or a local copy)",
    )
    label_check: bool = option(
        True,
        group=LABEL,
        flag="--no-label-check",
        dest="no_label_check",
        cli_default=False,
        convert=operator.not_,
        help="skip the label filter",
    )
    label_model: str = option(
        "tfidf",
        group=LABEL,
        help="tfidf = character TF-IDF + logistic regression trained on --train (~2 min for 275k rows); "
        "a .npz file saved by --save-label-model (plain arrays read without running code: pickles such as "
        ".joblib are refused, since loading one runs code from the file); or a transformers "
        "sequence-classification folder whose output i is class id i",
    )
    label_policy: str = option(
        "relative",
        group=LABEL,
        choices=LABEL_POLICIES,
        help="absolute: the source's label must be the augmentation's top class (or reach --min-label-prob); "
        "relative: reject only when p(label | augmentation) < (1 - --label-margin) x p(label | source) under the "
        "same model (the edit moved the text away from its label); off: record both probabilities, reject none. "
        "With --oof each row is judged by the fold model that held its source out",
    )
    label_margin: float = option(
        0.2,
        group=LABEL,
        help="relative policy: the share of p(label | source) an augmentation may lose",
    )
    min_label_prob: float | None = option(
        None,
        group=LABEL,
        help="absolute policy: require at least this probability of the source's label (default: the top class)",
    )
    tfidf: TfidfConfig = field(default_factory=TfidfConfig)  # the tfidf label model's options (no flags)
    processes: int = option(
        1, group=COMPUTE, help="TF-IDF fold label models (--oof) fitted at once, one process and core each"
    )
    device: str = option("cpu", group=COMPUTE, help="cpu, cuda, cuda:N or mps for the neural models (default: cpu)")
    batch_size: int = option(64, group=COMPUTE, help="texts per batch for the neural models")
    max_length: int = option(128, group=COMPUTE, help="tokens per text for a transformers label model")

    def __post_init__(self) -> None:
        for name in ("min_length_ratio", "max_length_ratio"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be positive, got {getattr(self, name)}")
        if self.min_length_ratio > self.max_length_ratio:
            raise InputError(
                f"min_length_ratio ({self.min_length_ratio}) must not exceed max_length_ratio ({self.max_length_ratio})"
            )
        if self.length_slack < 0:
            raise InputError(f"length_slack must be >= 0 characters, got {self.length_slack}")
        for name in ("korean_source_share", "min_hangul_share", "max_repeat_share"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise InputError(f"{name} must be a share in [0, 1], got {value}")
        for name in ("dup_threshold", "source_dup_threshold"):
            if not 0 < getattr(self, name) <= 1:
                raise InputError(f"{name} must be a cosine in (0, 1], got {getattr(self, name)}")
        if self.label_policy not in LABEL_POLICIES:
            raise InputError(f"label_policy must be one of {', '.join(LABEL_POLICIES)}, got {self.label_policy!r}")
        if not 0 <= self.label_margin <= 1:
            raise InputError(f"label_margin must be a share in [0, 1], got {self.label_margin}")
        if self.min_label_prob is not None and self.label_policy != "absolute":
            raise InputError(
                f"min_label_prob applies to the absolute label policy, not {self.label_policy!r}: add "
                '--label-policy absolute (label-policy = "absolute" in a pipeline\'s [filter])'
            )
        if self.processes < 1:
            raise InputError(f"processes must be at least 1, got {self.processes}")
        if self.dup_ngram_max not in (1, 2, 3):
            raise InputError(f"dup_ngram_max must be 1, 2 or 3, got {self.dup_ngram_max}")
        if not -1 <= self.min_similarity <= 1:
            raise InputError(f"min_similarity must be a cosine in [-1, 1], got {self.min_similarity}")
        if self.min_label_prob is not None and not 0 <= self.min_label_prob <= 1:
            raise InputError(f"min_label_prob must be a probability in [0, 1], got {self.min_label_prob}")
        if not _DEVICE.match(self.device):
            raise InputError(f"device must be cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.batch_size < 1 or self.max_length < 1:
            raise InputError(f"batch_size and max_length must be positive, got {self.batch_size}, {self.max_length}")
        if not self.embed_model.strip() or not self.label_model.strip():
            raise InputError("embed_model and label_model must not be empty")

    def enabled(self) -> list[str]:
        """The reasons this configuration can give, in report order."""
        on = {
            "empty": True,  # an empty text is never kept, whatever is switched off
            "identical_to_source": self.cheap_checks,
            "length_ratio": self.cheap_checks,
            "low_hangul": self.cheap_checks and self.min_hangul_share > 0,
            "repetition": self.cheap_checks and self.max_repeat_share < 1,
            "near_copy_of_source": self.dedup_train,
            "near_duplicate_train": self.dedup_train,
            "low_similarity": self.similarity,
            "label_mismatch": self.label_check and self.label_policy != "off",
            "near_duplicate_augmented": self.dedup_augmented,
        }
        return [r for r in REASONS if on[r]]
