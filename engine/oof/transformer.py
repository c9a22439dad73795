"""The transformers backend: fine-tune `AutoModelForSequenceClassification` on each fold, predict the
held-out fold and the test set, and optionally record training dynamics.

A plain torch loop, in the order a reader expects: AdamW (no decay on biases and LayerNorm weights), a
linear schedule with warmup, gradient accumulation, clipping, bf16/fp16 autocast on CUDA (fp16 with loss
scaling). No HF Trainer: the loop is ~60 lines, needs no `accelerate`, and its batching is the point.

Batching. Texts are tokenized once per run (truncated to `max_length`, no padding) and stored as one flat
int32 array with offsets. Training batches are length-grouped like HF's `group_by_length`: each epoch
shuffles the rows, cuts them into mega-batches of 50 batches, sorts each mega-batch by length (with
`engine.batching.plan_batches`) and shuffles the order of the resulting batches; each batch is then padded
only to its own longest row (dynamic padding). Prediction batches are sorted by length over the whole set.
Results go back to input order by index.

Training dynamics (Swayamdipta et al. 2020, "Dataset Cartography"). With `dynamics=True`, after every
epoch one extra forward pass (eval mode, no dropout) gives p(label) for every row of the fold's train
split; per fold, a row's confidence is the mean of its p(label) over the epochs and its variability the
standard deviation (ddof=0, as the paper's code). Each row is in the train split of K-1 folds, so
`engine.oof.kfold` reports the mean over those K-1 folds of each (`dyn_confidence`, `dyn_variability`).
With one epoch the variability is 0 by definition. The paper logs p(label) from the training forward pass
during the epoch; an end-of-epoch pass without dropout measures the model the epoch produced instead.

Devices. One process, one device (`cpu` or `cuda`, the current CUDA device). Several GPUs: run one
process per GPU on disjoint folds (`hardaug oof --only-folds ...` with `CUDA_VISIBLE_DEVICES`), then once
without `--only-folds` to assemble; distributed data parallel within a fold is not supported.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import accuracy_score, f1_score

from engine.batching import plan_batches
from engine.config import TransformerConfig
from engine.errors import InputError
from engine.models import ModelSource, check_device, resolve_model, safe_load
from engine.progress import OnProgress, report

log = logging.getLogger(__name__)

MEGA_BATCHES = 50  # batches per length-sorted mega-batch (HF LengthGroupedSampler's multiplier)
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


@dataclass(frozen=True)
class Encoded:
    """Token ids of n texts: row i is `ids[offsets[i]:offsets[i + 1]]` (with [CLS]/[SEP])."""

    ids: np.ndarray  # int32, (total tokens,)
    offsets: np.ndarray  # int64, (n + 1,)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1


@dataclass
class FoldOutput:
    """What one fold produced. Probabilities are float64 rows summing to 1, in the order of the rows given."""

    eval_probs: np.ndarray  # (n_eval, K), from the selected epoch
    test_probs: np.ndarray  # (n_test, K), from the selected epoch's model
    dyn_confidence: np.ndarray | None  # (n_train,): mean over epochs of p(label), or None without dynamics
    dyn_variability: np.ndarray | None  # (n_train,): std over epochs of p(label) (ddof=0)
    best_epoch: int  # 1-based epoch whose model made the predictions
    history: list[dict] = field(default_factory=list)  # per epoch: loss, held-out accuracy / macro-F1, time
    checkpoint: Path | None = None  # save_pretrained folder of the selected model, if one was written


# ---------------------------------------------------------------------------------------------- checks
@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """from_pretrained prints a load report and progress bars per call; once per fold is noise."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def resolve_source(model: str) -> ModelSource:
    """The model folder or hub id (`engine.models`), with config.json and weights."""
    return resolve_model(model, needs=(("config.json",), WEIGHT_FILES), what="transformers model")


def load_model_config(source: ModelSource, k: int):
    """The model's config, checked: one transformers can load, an architecture with a sequence-classification
    head, and a head of K labels if it already has one. InputError otherwise."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    model = source.spec
    with safe_load(model, "--model"):
        try:
            config = AutoConfig.from_pretrained(source.load_from, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"--model {model}: its config could not be loaded ({exc}). Pass a folder with config.json, weights "
                "and tokenizer files, or a hub id."
            ) from exc
    if config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise InputError(
            f"--model {model} is a {config.model_type!r} model, which has no sequence-classification head in "
            "transformers. Use an encoder such as BERT, RoBERTa or ELECTRA."
        )
    has_head = any(a.endswith("ForSequenceClassification") for a in config.architectures or [])
    if has_head and config.num_labels != k:
        raise InputError(
            f"--model {model} is a classifier with {config.num_labels} labels ({list(config.id2label.values())}), "
            f"but the data has {k} classes. Pass the base model it was fine-tuned from (a fresh {k}-label head is "
            f"added), or a classifier trained on these {k} classes."
        )
    return config, has_head


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    model = source.spec
    with safe_load(model, "--model"):
        try:
            tokenizer = AutoTokenizer.from_pretrained(source.load_from, trust_remote_code=False)
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(
                f"--model {model}: its tokenizer could not be loaded ({exc}). The folder needs tokenizer.json or "
                "the tokenizer's vocabulary files beside config.json (tokenizer.save_pretrained writes them)."
            ) from exc
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise InputError(f"--model {model}: the tokenizer has neither a padding nor an end token to pad with.")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_texts(frame: pl.DataFrame, source: str) -> None:
    """Refuse empty and whitespace-only texts: a transformer would see only [CLS] [SEP] and predict its
    prior, which then ranks the row as hard or easy for no reason in the text."""
    empty = pl.col("text").str.strip_chars() == ""
    n = frame.select(empty.sum()).item()
    if n:
        ids = frame.filter(empty)["id"].head(5).to_list()
        raise InputError(
            f"{source}: {n} rows have empty or whitespace-only texts (ids {ids}{' ...' if n > 5 else ''}). The "
            "transformers backend has nothing to read in them: drop those rows (or fill in the text) first."
        )


def resolve_device(name: str):
    import torch

    check_device(name)
    return torch.device(name)


def resolve_precision(precision: str, device) -> str:
    """'fp32', 'bf16' or 'fp16': auto = bf16 on a GPU that supports it, else fp16; fp32 on CPU."""
    import torch

    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


# -------------------------------------------------------------------------------------------- batching
def encode(tokenizer, texts: Sequence[str], max_length: int, chunk: int = 20_000) -> Encoded:
    """Tokenize (with special tokens, truncated to `max_length`, unpadded) in chunks to bound memory."""
    pieces, lengths = [], []
    for start in range(0, len(texts), chunk):
        ids = tokenizer(
            list(texts[start : start + chunk]),
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        lengths.extend(len(row) for row in ids)
        pieces.append(np.fromiter((t for row in ids for t in row), dtype=np.int32))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Encoded(np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32), offsets)


def train_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, *, group_by_length: bool = True
) -> list[np.ndarray]:
    """One epoch of training batches (positions into `lengths`), each of `batch_size` rows except the last
    of each mega-batch. With `group_by_length`, rows of similar length share a batch while the epoch stays
    random (see the module docstring); without, plain shuffled batches."""
    order = rng.permutation(len(lengths))
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    size = batch_size * MEGA_BATCHES
    batches = []
    for start in range(0, len(order), size):
        mega = order[start : start + size]
        # every length fits the budget, so this is a size-only cut of the mega-batch sorted by length
        for batch in plan_batches(
            lengths[mega], max_tokens=batch_size * int(lengths[mega].max()), max_batch_size=batch_size
        ):
            batches.append(mega[batch])
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(
    encoded: Encoded, rows: np.ndarray, pad_id: int, pad_to: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) of `rows`, int64, padded to the longest row (or to `pad_to`)."""
    lengths = encoded.lengths[rows]
    width = pad_to or int(lengths.max())
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, (row, n) in enumerate(zip(rows.tolist(), lengths.tolist(), strict=True)):
        start = encoded.offsets[row]
        ids[i, :n] = encoded.ids[start : start + n]
        mask[i, :n] = 1
    return ids, mask


def _to_device(array: np.ndarray, device):
    import torch

    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def _autocast(device, precision: str):
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def predict_proba(
    model, encoded: Encoded, rows: np.ndarray, *, batch_size: int, pad_id: int, device, precision: str
) -> np.ndarray:
    """Class probabilities (n, K) float64 for `rows` of `encoded`, in the order of `rows`. Batches are
    sorted by length over all rows (longest first, so an out-of-memory batch size fails at once)."""
    import torch

    model.eval()
    lengths = encoded.lengths[rows]
    out = np.empty((len(rows), model.config.num_labels), dtype=np.float64)
    if not len(rows):
        return out
    width = int(lengths.max())
    with torch.inference_mode():
        for batch in plan_batches(lengths, max_tokens=batch_size * width, max_batch_size=batch_size):
            ids, mask = collate(encoded, rows[batch], pad_id)
            with _autocast(device, precision):
                logits = model(input_ids=_to_device(ids, device), attention_mask=_to_device(mask, device)).logits
            out[batch] = torch.softmax(logits.double(), dim=-1).cpu().numpy()
    return out / out.sum(axis=1, keepdims=True)


# -------------------------------------------------------------------------------------------- training
def make_optimizer(model, config: TransformerConfig, device):
    import torch

    # As the HF Trainer: no weight decay on biases and normalization weights.
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, fused=device.type == "cuda")


def train_epoch(
    model,
    encoded: Encoded,
    rows: np.ndarray,
    labels: np.ndarray,
    batches: list[np.ndarray],
    *,
    optimizer,
    scheduler,
    scaler,
    grad_accum: int,
    max_grad_norm: float,
    pad_id: int,
    device,
    precision: str,
    pad_to: int | None = None,
    weights: np.ndarray | None = None,
    on_step: Callable[[], None] | None = None,
) -> float:
    """One pass over `batches` (positions into `rows`, the rows of `encoded` to train on, and `labels`,
    their labels). Returns the mean training loss. The loss of each optimizer step is the mean over all
    rows of its `grad_accum` batches, so a short last batch weighs what its rows weigh. `weights` (one per
    row of `rows`): weighted cross-entropy, each row's loss times its weight, still divided by the number
    of rows (not the sum of weights), as scikit-learn's sample_weight scales a row's share of the loss; all
    weights 1 give the unweighted model bit for bit."""
    import torch
    import torch.nn.functional as F

    model.train()
    total = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: no sync per step
    n_rows = 0
    for start in range(0, len(batches), grad_accum):
        group = batches[start : start + grad_accum]
        group_rows = sum(len(b) for b in group)
        for batch in group:
            ids, mask = collate(encoded, rows[batch], pad_id, pad_to)
            target = _to_device(labels[batch].astype(np.int64), device)
            with _autocast(device, precision):
                logits = model(input_ids=_to_device(ids, device), attention_mask=_to_device(mask, device)).logits
            # per row, then summed, with or without weights: one reduction, so weights of 1 change no bit
            loss = F.cross_entropy(logits.float(), target, reduction="none")
            if weights is not None:
                loss = loss * _to_device(weights[batch].astype(np.float32), device)
            loss = loss.sum()
            total += loss.detach()
            loss = loss / group_rows
            (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.unscale_(optimizer)
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        n_rows += group_rows
        if on_step is not None:
            on_step()
    return float(total.item()) / max(n_rows, 1)


def _save_checkpoint(model, tokenizer, path: Path) -> None:
    """Replace `path` with the model: write beside it, then swap, so a crash leaves one whole checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


class TransformerBackend:
    """Owns the tokenizer of one run; encodes its texts and trains one model per fold.

    Building it checks everything that could fail later (model folder, head size, tokenizer, device,
    max_length) and raises InputError, so a bad job stops before any output exists.
    """

    def __init__(self, config: TransformerConfig, *, k: int, class_names: Sequence[str]) -> None:
        self.config = config
        self.k = k
        self.class_names = list(class_names)
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        if self.precision == "fp16" and self.device.type != "cuda":
            raise InputError("precision fp16 needs --device cuda (CPU autocast supports bf16 or fp32)")
        source = resolve_source(config.model)
        model_config, self.has_head = load_model_config(source, k)
        positions = getattr(model_config, "max_position_embeddings", None)
        if positions is not None and config.max_length > positions:
            raise InputError(
                f"--max-length {config.max_length} is longer than the {positions} positions {config.model} was "
                f"built with; use --max-length {positions} or less."
            )
        self.source = source.load_from
        self.tokenizer = load_tokenizer(source)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self._load_model(seed=0)  # fails here, before any output, if the weights do not load
        log.info(
            "model %s (%s, %s head), %s, %s",
            config.model,
            model_config.model_type,
            "its own" if self.has_head else f"a fresh {k}-label",
            self.device,
            self.precision,
        )

    def _load_model(self, seed: int):
        import torch
        from transformers import AutoModelForSequenceClassification

        torch.manual_seed(seed)  # the fresh head's initialization
        try:
            with _quiet_transformers(), safe_load(self.config.model, "--model"):
                model = AutoModelForSequenceClassification.from_pretrained(
                    self.source,
                    num_labels=self.k,
                    id2label=dict(enumerate(self.class_names)),
                    label2id={name: i for i, name in enumerate(self.class_names)},
                    trust_remote_code=False,
                )
        except InputError:
            raise
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(f"--model {self.config.model}: the weights could not be loaded ({exc}).") from exc
        return model.float()

    def encode(self, texts: Sequence[str]) -> Encoded:
        return encode(self.tokenizer, texts, self.config.max_length)

    def fine_tune(
        self,
        *,
        seed: int,
        encoded: Encoded,
        train_rows: np.ndarray,
        train_labels: np.ndarray,
        weights: np.ndarray | None = None,
        after_epoch: Callable[[int, object], dict] | None = None,
        state: Path | None = None,
        on_progress: OnProgress | None = None,
    ):
        """Fine-tune a fresh model (from the pretrained weights; `seed` sets the new head's initialization,
        dropout and the data order) on `train_rows` of `encoded` for `config.epochs` epochs; returns the model
        after the last epoch and the history (one dict per epoch). The one training loop of `oof` folds and
        `compare` cells.

        `weights`: one per training row, for weighted cross-entropy (`train_epoch`). `after_epoch(epoch,
        model)` runs after each epoch's training (epoch 0-based) and returns fields for that epoch's record
        (oof: held-out metrics, dynamics, the best epoch's checkpoint). `state`: a file the whole training
        state (weights, optimizer, schedule, loss scaler, both random generators, history) is saved to after
        every epoch but the last, and resumed from when it exists, so a killed fine-tune continues at its next
        epoch and ends with the same model as an uninterrupted one (bit for bit on CPU). The caller deletes it
        once the result is saved. `on_progress` hears of each optimizer step ("steps", unit "step", detail:
        epoch) over the whole fine-tune (a resumed one starts at the steps done) and of each epoch ("epochs",
        unit "epoch", detail: loss)."""
        import torch
        from transformers import get_linear_schedule_with_warmup

        config = self.config
        model = self._load_model(seed).to(self.device)
        rng = np.random.default_rng(seed)
        lengths = encoded.lengths[train_rows]
        # every mega-batch but the last is a whole number of batches, so an epoch has ceil(n / batch) batches
        steps_per_epoch = math.ceil(math.ceil(len(train_rows) / config.train_batch_size) / config.grad_accum)
        total_steps = steps_per_epoch * config.epochs
        optimizer = make_optimizer(model, config, self.device)
        scheduler = get_linear_schedule_with_warmup(optimizer, config.warmup_steps, total_steps)
        scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        history: list[dict] = []
        first = 0
        if state is not None and state.exists():
            first, history = _load_state(state, model, optimizer, scheduler, scaler, rng, self.device)
            log.info("resuming the fine-tune after epoch %d of %d (%s)", first, config.epochs, state)
        done = first * steps_per_epoch

        def step() -> None:
            nonlocal done
            done += 1
            report(on_progress, "steps", "step", done, total_steps, epoch=epoch + 1)

        for epoch in range(first, config.epochs):
            epoch_started = time.perf_counter()
            batches = train_batches(lengths, config.train_batch_size, rng)
            loss = train_epoch(
                model,
                encoded,
                train_rows,
                train_labels,
                batches,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                grad_accum=config.grad_accum,
                max_grad_norm=config.max_grad_norm,
                pad_id=self.pad_id,
                device=self.device,
                precision=self.precision,
                weights=weights,
                on_step=step,
            )
            train_seconds = time.perf_counter() - epoch_started
            extra = after_epoch(epoch, model) if after_epoch is not None else {}
            record = {
                "epoch": epoch + 1,
                "train_loss": loss,
                **extra,
                "train_seconds": round(train_seconds, 3),
                "train_samples_per_s": round(len(train_rows) / max(train_seconds, 1e-9), 1),
                "seconds": round(time.perf_counter() - epoch_started, 3),
            }
            if self.device.type == "cuda":  # what a larger batch or max length would have to fit in
                record["max_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2)
            history.append(record)
            log.info(
                "epoch %d/%d: loss %.4f%s (%.0f rows/s)",
                epoch + 1,
                config.epochs,
                loss,
                "".join(f", {k} {v:.4f}" for k, v in extra.items() if k in ("accuracy", "macro_f1")),
                record["train_samples_per_s"],
            )
            report(on_progress, "epochs", "epoch", epoch + 1, config.epochs, loss=loss)
            if state is not None and epoch < config.epochs - 1:
                _save_state(state, epoch + 1, history, model, optimizer, scheduler, scaler, rng, self.device)
        return model, history

    def fit_predict_fold(
        self,
        *,
        seed: int,
        encoded: Encoded,
        train_rows: np.ndarray,
        train_labels: np.ndarray,
        eval_rows: np.ndarray,
        eval_labels: np.ndarray,
        test: Encoded | None,
        checkpoint: Path,
        on_progress: OnProgress | None = None,
    ) -> FoldOutput:
        """Train on `train_rows` of `encoded`, select an epoch on `eval_rows`, predict them and `test`.

        `checkpoint` is where the selected epoch's model is kept while later epochs train (one folder,
        replaced when a better epoch comes); the caller moves or deletes it after saving the predictions.
        `on_progress` hears of each optimizer step ("steps", unit "step", over the fold's steps).
        """
        config = self.config
        started = time.perf_counter()
        predict = {
            "batch_size": config.eval_batch_size,
            "pad_id": self.pad_id,
            "device": self.device,
            "precision": self.precision,
        }
        shutil.rmtree(checkpoint, ignore_errors=True)
        p_true = np.zeros((len(train_rows), config.epochs)) if config.dynamics else None
        best = {"epoch": 0, "accuracy": -1.0, "probs": None, "saved": False}

        def held_out(epoch: int, model) -> dict:
            nonlocal best
            probs = predict_proba(model, encoded, eval_rows, **predict)
            pred = probs.argmax(axis=1)
            record = {
                "accuracy": float(accuracy_score(eval_labels, pred)),
                "macro_f1": float(f1_score(eval_labels, pred, average="macro", zero_division=0)),
            }
            if p_true is not None:
                train_probs = predict_proba(model, encoded, train_rows, **predict)
                p_true[:, epoch] = train_probs[np.arange(len(train_rows)), train_labels]
            last = epoch == config.epochs - 1
            if config.select_epoch == "last" or record["accuracy"] > best["accuracy"]:
                best = {"epoch": epoch + 1, "accuracy": record["accuracy"], "probs": probs, "saved": False}
                # The model in memory is the selected one if no later epoch beats it; keep a copy on disk
                # only while a later epoch could replace it (or when the user keeps checkpoints).
                if (not last and config.select_epoch == "best") or (last and config.keep_checkpoints):
                    _save_checkpoint(model, self.tokenizer, checkpoint)
                    best["saved"] = True
            return record

        model, history = self.fine_tune(
            seed=seed,
            encoded=encoded,
            train_rows=train_rows,
            train_labels=train_labels,
            after_epoch=held_out,
            on_progress=on_progress,
        )
        if best["epoch"] != config.epochs:
            log.info("using epoch %d (best held-out accuracy %.4f)", best["epoch"], best["accuracy"])
            del model
            with _quiet_transformers():
                from transformers import AutoModelForSequenceClassification

                model = (
                    AutoModelForSequenceClassification.from_pretrained(checkpoint, trust_remote_code=False)
                    .float()
                    .to(self.device)
                )
        elif not best["saved"]:
            shutil.rmtree(checkpoint, ignore_errors=True)  # an earlier epoch's copy, superseded
        test_probs = (
            predict_proba(model, test, np.arange(len(test)), **predict) if test is not None else np.zeros((0, self.k))
        )
        log.info("fold trained and predicted in %.1f s", time.perf_counter() - started)
        return FoldOutput(
            eval_probs=best["probs"],
            test_probs=test_probs,
            dyn_confidence=p_true.mean(axis=1) if p_true is not None else None,
            dyn_variability=p_true.std(axis=1) if p_true is not None else None,
            best_epoch=best["epoch"],
            history=history,
            checkpoint=checkpoint if checkpoint.exists() else None,
        )


# ------------------------------------------------------------------------------------- resumable state
def _save_state(path: Path, epochs: int, history, model, optimizer, scheduler, scaler, rng, device) -> None:
    """Everything the next epoch depends on, written beside `path` and swapped in (a kill leaves the old one)."""
    import torch

    state = {
        "epochs": epochs,
        "history": history,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_state(path: Path, model, optimizer, scheduler, scaler, rng, device) -> tuple[int, list[dict]]:
    import torch

    state = torch.load(path, map_location=device, weights_only=False)  # written by this job, in its scratch
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"].cpu())
    if state["cuda_rng"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
    return int(state["epochs"]), list(state["history"])
