"""Label consistency: does a classifier trained on the original data still give the source's label?

Three kinds of label model, chosen by `FilterConfig.label_model`:
- `tfidf`: the oof stage's character n-gram TF-IDF + logistic regression (`engine.oof.tfidf`), trained here
  on the whole original training set (about 2 minutes for 275,000 reviews on 2 cores);
- a `.joblib` file: a fitted scikit-learn pipeline with `predict_proba` (what `save` writes, so the TF-IDF
  model can be trained once and reused);
- a folder with config.json: a transformers sequence classifier whose output i is class id i.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from engine.config import TfidfConfig
from engine.errors import InputError
from engine.models import check_device, resolve_model

log = logging.getLogger(__name__)

_CHUNK = 4096
JOBLIB_SUFFIXES = (".joblib", ".pkl")


def label_model_kind(spec: str) -> str:
    """'tfidf', 'joblib' or 'transformers'; checks that a file or folder exists, loads nothing."""
    if spec == "tfidf":
        return "tfidf"
    if spec.lower().endswith(JOBLIB_SUFFIXES):
        path = Path(spec)
        if not path.is_file():
            raise InputError(f"--label-model {spec}: no such file. Train one with --save-label-model, or use tfidf.")
        return "joblib"
    try:
        resolve_model(spec, option="--label-model", what="transformers classifier")
    except InputError as exc:
        raise InputError(
            f"{exc} (--label-model takes tfidf, trained on --train; a scikit-learn pipeline saved with "
            "--save-label-model; or a transformers classifier, as a folder or a hub id.)"
        ) from None
    return "transformers"


class LabelModel:
    """Class probabilities, shape (n, k), from one of the three kinds of model."""

    def __init__(
        self,
        kind: str,
        model,
        k: int,
        *,
        tokenizer=None,
        device: str = "cpu",
        batch_size: int = 64,
        max_length: int = 128,
    ) -> None:
        self.kind, self.model, self.k = kind, model, k
        self.tokenizer, self.device, self.batch_size, self.max_length = tokenizer, device, batch_size, max_length

    @classmethod
    def train_tfidf(cls, texts: Sequence[str], labels: np.ndarray, k: int, config: TfidfConfig) -> LabelModel:
        from engine.oof.tfidf import fit_model

        log.info("training the TF-IDF label model on %d texts", len(texts))
        return cls("tfidf", fit_model(config, texts, labels), k)

    @classmethod
    def load(cls, spec: str, k: int, *, device: str = "cpu", batch_size: int = 64, max_length: int = 128) -> LabelModel:
        """Load a saved model (`.joblib` or a transformers folder) for `k` classes; errors name the fix."""
        kind = label_model_kind(spec)
        if kind == "joblib":
            import joblib

            model = joblib.load(spec)
            classes = getattr(model, "classes_", None)
            if not hasattr(model, "predict_proba") or classes is None:
                raise InputError(f"--label-model {spec} holds a {type(model).__name__}, not a fitted classifier.")
            bad = [int(c) for c in classes if not 0 <= int(c) < k]
            if bad:
                raise InputError(f"--label-model {spec} predicts classes {bad}, outside 0..{k - 1} of --train.")
            return cls("joblib", model, k)
        if kind == "transformers":
            check_device(device)
            from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

            num_labels = AutoConfig.from_pretrained(spec).num_labels
            if num_labels != k:
                raise InputError(
                    f"--label-model {spec} has {num_labels} output labels but --train has {k} classes. "
                    "Pass a classifier fine-tuned on these classes."
                )
            tokenizer = AutoTokenizer.from_pretrained(spec)
            model = AutoModelForSequenceClassification.from_pretrained(spec).to(device).eval()
            return cls(
                "transformers",
                model,
                k,
                tokenizer=tokenizer,
                device=device,
                batch_size=batch_size,
                max_length=max_length,
            )
        raise ValueError(f"cannot load {spec!r}: the tfidf model is trained with train_tfidf")

    def save(self, path: str | Path) -> Path:
        """Save a scikit-learn model as .joblib (atomically), to pass later as --label-model."""
        import joblib

        from engine.io import atomic_path

        if self.kind == "transformers":
            raise ValueError("a transformers label model is already a folder; pass it as --label-model")
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            joblib.dump(self.model, fh)
        return Path(path)

    def predict_proba(self, texts: Sequence[str], *, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.k), dtype=np.float64)
        if progress is not None:
            progress(0, len(texts))
        for start in range(0, len(texts), _CHUNK):
            part = texts[start : start + _CHUNK]
            out[start : start + len(part)] = self._proba(part)
            if progress is not None:
                progress(start + len(part), len(texts))
        return out

    def _proba(self, texts: list[str]) -> np.ndarray:
        if self.kind != "transformers":
            from engine.oof.tfidf import predict_proba

            return predict_proba(self.model, texts, self.k)
        import torch

        from engine.batching import plan_batches

        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]]
        out = np.zeros((len(texts), self.k), dtype=np.float64)
        budget = self.batch_size * self.max_length
        with torch.inference_mode():
            for batch in plan_batches(lengths, max_tokens=budget, max_batch_size=self.batch_size):
                enc = self.tokenizer(
                    [texts[i] for i in batch],
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(**enc).logits.float()
                out[batch] = torch.softmax(logits, dim=-1).cpu().numpy()
        return out
