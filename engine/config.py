"""One frozen dataclass of options per stage, validated when built (so a bad value fails before work).
Fields made with `engine.options.option` carry their command-line flag (`hardaug oof --help`); the others
are library-only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from engine.errors import InputError
from engine.options import option, positive_int, seed_list
from engine.weights import check_schemes, scheme_list

SOLVERS = ("lbfgs", "saga", "sag")


@dataclass(frozen=True)
class TfidfConfig:
    """Character n-gram TF-IDF + multinomial logistic regression: fast, strong on short Korean text
    (no tokenizer needed, robust to spacing errors and slang)."""

    analyzer: str = "char_wb"
    ngram_min: int = 1
    ngram_max: int = option(3, help="tfidf: longest character n-gram")
    max_features: int | None = option(300_000, help="tfidf: vocabulary size")
    min_df: int = 2
    sublinear_tf: bool = True
    C: float = option(2.0, help="tfidf: inverse regularization")
    max_iter: int = 1000
    # saga at tol 1e-3: 21 passes over the data instead of lbfgs's ~300 iterations at tol 1e-4, a tenth of
    # the CPU time (3.6 against 35.3 CPU s on a 90,000-row fold) with the same held-out accuracy (0.5900
    # against 0.5904; benchmarks/results/oof_levers.md); seeded, one thread.
    solver: str = option("saga", choices=SOLVERS, help="tfidf: logistic regression solver")
    tol: float = option(1e-3, help="tfidf: solver tolerance")

    def __post_init__(self) -> None:
        if self.analyzer not in ("char", "char_wb", "word"):
            raise InputError(f"analyzer must be 'char', 'char_wb' or 'word', got {self.analyzer!r}")
        if not 1 <= self.ngram_min <= self.ngram_max:
            raise InputError(f"need 1 <= ngram_min <= ngram_max, got {self.ngram_min}..{self.ngram_max}")
        if self.max_features is not None and self.max_features < 1:
            raise InputError(f"max_features must be positive or None, got {self.max_features}")
        if self.C <= 0:
            raise InputError(f"C must be positive, got {self.C}")
        if self.solver not in SOLVERS:
            raise InputError(f"solver must be 'lbfgs', 'saga' or 'sag', got {self.solver!r}")
        if self.tol <= 0:
            raise InputError(f"tol must be positive, got {self.tol}")


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("cpu", "cuda")
SELECT_EPOCHS = ("best", "last")
TRANSFORMERS = "transformers backend (defaults: the motivating notebook's recipe)"  # its `hardaug oof` group


@dataclass(frozen=True)
class TransformerConfig:
    """Fine-tune `AutoModelForSequenceClassification` per fold. Defaults are the motivating notebook's
    recipe (kykim/bert-kor-base, 3 epochs, lr 5e-5, 500 warmup steps, weight decay 0.05, batch 128, eval
    batch 256, the epoch with the best held-out accuracy). AdamW with a linear schedule and gradient
    clipping at 1.0, as the HF Trainer it used.

    `train_batch_size` is the batch of one forward pass; an optimizer step sees `train_batch_size *
    grad_accum` rows (HF's convention: on a small GPU, 32 x 4 reproduces the notebook's 128).
    `warmup_steps` counts optimizer steps. `precision="auto"` = bf16 autocast on a GPU that has it, else
    fp16 with loss scaling; fp32 on CPU. `select_epoch="best"` keeps the epoch with the best accuracy on the
    held-out fold (the notebook's choice; it makes OOF numbers slightly optimistic), "last" the final one.
    `dynamics` records p(label) of every training row after each epoch (one extra forward pass over the
    train split) for the data map. `keep_checkpoints` is not part of the job's identity: it can change
    between a killed run and its resume.
    """

    model: str = option(
        "kykim/bert-kor-base",
        group=TRANSFORMERS,
        help="hub id or local folder (config.json, weights, tokenizer); a base model gets a fresh K-label head",
    )
    epochs: int = option(3, group=TRANSFORMERS, type=positive_int, help="training epochs per fold")
    lr: float = option(5e-5, group=TRANSFORMERS, help="peak learning rate of AdamW")
    warmup_steps: int = option(500, group=TRANSFORMERS, help="linear warmup, in optimizer steps")
    weight_decay: float = option(0.05, group=TRANSFORMERS, help="AdamW weight decay")
    train_batch_size: int = option(
        128,
        group=TRANSFORMERS,
        type=positive_int,
        help="rows per forward pass in training; an optimizer step sees this x --grad-accum",
    )
    eval_batch_size: int = option(256, group=TRANSFORMERS, type=positive_int, help="rows per prediction batch")
    grad_accum: int = option(1, group=TRANSFORMERS, type=positive_int, help="batches per optimizer step")
    max_length: int = option(128, group=TRANSFORMERS, help="truncate texts to this many tokens")
    max_grad_norm: float = 1.0
    precision: str = option(
        "auto",
        group=TRANSFORMERS,
        choices=PRECISIONS,
        help="autocast precision: auto = bf16 on a GPU that has it, else fp16; fp32 on CPU",
    )
    device: str = option("cpu", group=TRANSFORMERS, choices=DEVICES, help="where to train")
    select_epoch: str = option(
        "best",
        group=TRANSFORMERS,
        choices=SELECT_EPOCHS,
        help="best = the epoch with the best held-out accuracy (the notebook's choice, slightly optimistic "
        "OOF numbers); last = the final epoch",
    )
    dynamics: bool = option(
        False,
        group=TRANSFORMERS,
        help="record p(label) of every training row after each epoch (one extra forward pass over the train "
        "split) and write dyn_confidence / dyn_variability for the data map; needs --epochs >= 2 to vary",
    )
    keep_checkpoints: bool = option(
        False,
        group=TRANSFORMERS,
        help="keep each fold's selected model in OUT_DIR/checkpoints/fold_XX (default: delete it once the "
        "fold's predictions are saved; at most one checkpoint is on disk at a time)",
    )

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise InputError("model must be a hub id or a folder, got an empty string")
        for name in ("epochs", "train_batch_size", "eval_batch_size", "grad_accum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 2:
            raise InputError(f"max_length must be an integer >= 2 (room for [CLS] and [SEP]), got {self.max_length!r}")
        if not self.lr > 0:
            raise InputError(f"lr must be positive, got {self.lr}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.max_grad_norm < 0:
            raise InputError(
                "warmup_steps, weight_decay and max_grad_norm must be >= 0, got "
                f"{self.warmup_steps}, {self.weight_decay}, {self.max_grad_norm}"
            )
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.device not in DEVICES:
            raise InputError(f"device must be one of {list(DEVICES)}, got {self.device!r}")
        if self.device == "cpu" and self.precision == "fp16":
            raise InputError("precision fp16 needs --device cuda (CPU autocast supports bf16 or fp32)")
        if self.select_epoch not in SELECT_EPOCHS:
            raise InputError(f"select_epoch must be 'best' or 'last', got {self.select_epoch!r}")


BACKENDS = ("tfidf", "transformers")
# The options of TransformerConfig that `hardaug compare --backend transformers` takes (and its cells are keyed
# by): a cell trains for every epoch and predicts with the last, keeps no checkpoint and records no dynamics.
COMPARE_TRANSFORMER = (
    "model", "epochs", "lr", "warmup_steps", "weight_decay", "train_batch_size", "eval_batch_size", "grad_accum",
    "max_length", "max_grad_norm", "precision", "device",
)  # fmt: skip


@dataclass(frozen=True)
class OofConfig:
    """Stratified K-fold out-of-fold predictions (the notebook used 10 folds, seed 42). Only the options
    of the chosen backend (`tfidf` or `transformer`) belong to the job; the other is ignored."""

    n_folds: int = option(10, flag="--folds", dest="folds", help="number of stratified folds")
    seed: int = option(42, help="fold shuffling seed")
    backend: str = option(
        "tfidf",
        choices=BACKENDS,
        help="classifier: tfidf = character n-gram TF-IDF + logistic regression (CPU, minutes); transformers "
        "= fine-tune a pretrained encoder per fold (a GPU is advised)",
    )
    # their flags are added by `hardaug oof` in their own places of its --help (no flag of their own here)
    tfidf: TfidfConfig = field(default_factory=TfidfConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)

    def __post_init__(self) -> None:
        if self.n_folds < 2:
            raise InputError(f"n_folds must be at least 2, got {self.n_folds}")
        if self.backend not in BACKENDS:
            raise InputError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")

    def job(self) -> dict:
        """The options that decide the results (what the fingerprint and metrics.json record): the chosen
        backend's options only, without `keep_checkpoints`. For tfidf this is exactly the dict of the
        original schema; the fingerprint adds how TF-IDF models are fitted (`engine.tfidf.FIT`)."""
        job = asdict(self)
        if self.backend == "tfidf":
            job.pop("transformer")
        else:
            job.pop("tfidf")
            job["transformer"].pop("keep_checkpoints")
        return job


TOKENIZERS = ("auto", "kiwi", "whitespace")
REPORT = "report"  # its `hardaug mine` group


@dataclass(frozen=True)
class AnalysisConfig:
    """What the report compares. Hard/easy for the term statistics are taken within each class, so
    that terms typical of a class do not masquerade as signs of hardness."""

    hard_quantile: float = 0.2  # the hardest 20% of each class ...
    easy_quantile: float = 0.5  # ... against its easiest 50%
    # Caps on the rows tokenized per class and side (a uniform random sample; tokenizing is the cost): on all
    # of nsmc4, 8,000 texts instead of 94,855 (3 instead of 45 CPU seconds), the top 5 terms kept in 7 of 8
    # lists, shown shares within 2.5 points; 2,500 gave 78% instead of 72% of the top 15 for 2.4x the time
    # (benchmarks/results/mine_terms.md). z-scores shrink with the square root of the sample.
    max_hard_per_class: int | None = 1_000
    max_easy_per_class: int | None = 1_000
    min_term_count: int = 5
    # Informative Dirichlet prior (Monroe et al. 2008): pooled counts scaled to this share of a group's size.
    prior_weight: float = 0.1
    top_terms: int = 15
    n_examples: int = option(
        25, group=REPORT, flag="--examples", dest="examples", help="example rows per table in the report"
    )
    tokenizer: str = option(
        "auto",
        group=REPORT,
        choices=TOKENIZERS,
        help="terms for the report: kiwi = Korean morphemes, whitespace = words; auto picks by script",
    )
    threads: int | None = None  # tokenizer threads; None = the cores this process may use
    seed: int = 42

    def __post_init__(self) -> None:
        if not 0 < self.hard_quantile < 1 or not 0 < self.easy_quantile < 1:
            raise InputError("hard_quantile and easy_quantile must be in (0, 1)")
        if self.hard_quantile + self.easy_quantile > 1:
            raise InputError("hard_quantile + easy_quantile must be <= 1 so hard and easy do not overlap")
        if self.tokenizer not in TOKENIZERS:
            raise InputError(f"tokenizer must be auto, kiwi or whitespace, got {self.tokenizer!r}")


@dataclass(frozen=True)
class CompareConfig:
    """The experiment of `hardaug compare` (engine.experiment): seeds, the bootstrap, what counts as
    confidently wrong, when a suspected label error is relabeled, the share of a strategy's augmentations its
    budget arms use (engine.arms.budget_sets), and the classifier retrained on every arm: `tfidf` (its
    options without flags) or `transformers` (`transformer`: the oof recipe's options and flags, those of
    `COMPARE_TRANSFORMER`; each cell fine-tunes from the pretrained weights, its seed sets the new head's
    initialization, dropout and data order, and its last epoch predicts the test set: compare has no
    held-out split to pick an epoch on)."""

    seeds: tuple[int, ...] = option((0, 1, 2), type=seed_list, help="comma-separated seeds, integers >= 0")
    bootstrap: int = option(1000, help="bootstrap resamples for the intervals")
    confident_threshold: float = option(
        0.9,
        flag="--confident",
        dest="confident",
        help="a wrong prediction with top probability >= this counts as confidently wrong",
    )
    relabel_confidence: float = option(
        0.7,
        help="relabel a suspected label error only when its out-of-fold prediction has at least this probability",
    )
    budget_share: float = option(
        0.5,
        help="share of the strategy's kept augmentations the two budget arms use",
    )
    weights: tuple[str, ...] = option(
        (),
        type=scheme_list,
        metavar="SCHEMES",
        help="with --scores: an arm per weight scheme, comma-separated, of hardness (1 + hardness; control "
        "hardness-shuffled), clean-hardness (suspected label errors down-weighted; control "
        "clean-hardness-shuffled), class-balanced (inverse class frequency: the control that separates "
        "targeting from class balancing); weights have mean 1 (default: none)",
    )
    combine: tuple[str, ...] = option(
        (),
        action="append",
        metavar="NAME=SCHEME",
        cli_default=None,
        convert=lambda given: tuple(given or ()),
        help="with --scores: arm NAME+SCHEME = strategy NAME's kept augmentations with the training rows "
        "weighted by SCHEME (each augmentation weighs what its source does), compared with NAME and SCHEME "
        "(repeatable)",
    )
    backend: str = option(
        "tfidf",
        choices=BACKENDS,
        help="classifier retrained on every arm: tfidf = character n-gram TF-IDF + logistic regression (CPU, "
        "seconds per cell); transformers = fine-tune a pretrained encoder per arm and seed (the oof recipe's "
        "options below; a GPU is advised)",
    )
    tfidf: TfidfConfig = field(default_factory=TfidfConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)

    def classifier(self) -> dict:
        """The chosen classifier's options, as results.json records them and the cells are keyed by."""
        if self.backend == "tfidf":
            return {"backend": "tfidf", **asdict(self.tfidf)}
        return {"backend": "transformers", **{name: getattr(self.transformer, name) for name in COMPARE_TRANSFORMER}}

    def job(self) -> dict:
        """The options that decide the results: with tfidf exactly the fields before `backend` existed (so a
        finished TF-IDF compare stays up to date), with transformers the fine-tune's options instead."""
        job = asdict(self)
        job.pop("backend")
        job.pop("transformer")
        if self.backend != "tfidf":
            job.pop("tfidf")
            job["classifier"] = self.classifier()
        return job

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if not self.seeds:
            raise InputError("need at least one seed")
        if self.bootstrap < 100:
            raise InputError(f"bootstrap must be >= 100 resamples, got {self.bootstrap}")
        if not 0 < self.confident_threshold <= 1:
            raise InputError(f"confident_threshold must be in (0, 1], got {self.confident_threshold}")
        if not 0 < self.relabel_confidence <= 1:
            raise InputError(f"relabel_confidence must be in (0, 1], got {self.relabel_confidence}")
        if not 0 < self.budget_share <= 1:
            raise InputError(f"budget_share must be in (0, 1], got {self.budget_share}")
        check_schemes(self.weights)
        for pair in self.combine:
            name, sep, scheme = pair.partition("=")
            if not sep or not name.strip():
                raise InputError(f"combine: expected NAME=SCHEME, e.g. targeted=hardness; got {pair!r}")
            check_schemes([scheme], where=f"--combine {pair}:")

    def combined(self) -> list[tuple[str, str]]:
        """(strategy, scheme) of every `combine` arm."""
        return [(name.strip(), scheme) for name, _, scheme in (c.partition("=") for c in self.combine)]
