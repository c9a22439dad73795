"""Label consistency: does a classifier trained on the original data still give the source's label?

Three kinds of label model, chosen by `FilterConfig.label_model`:
- `tfidf`: the oof stage's character n-gram TF-IDF + logistic regression (`engine.oof.tfidf`), trained here
  on the whole original training set (about 2 minutes for 275,000 reviews on 2 cores);
- a `.npz` file written by `save` (so the TF-IDF model can be trained once and reused): the fitted
  vocabulary, idf weights and logistic-regression coefficients as plain arrays, with the options as JSON;
- a folder with config.json: a transformers sequence classifier whose output i is class id i.

Why arrays and not a pickle (joblib): unpickling runs whatever code the file names, before anything can check
what it holds, so `--label-model someone_elses.joblib` would run their code. `np.load(allow_pickle=False)`
reads numbers and strings only; the scikit-learn objects are rebuilt from them here. skops would also refuse
unknown types, but it is a new dependency whose trust list has to be kept in step with scikit-learn; two
arrays and a few options are all this model is.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.config import TfidfConfig
from engine.errors import InputError
from engine.models import check_device, resolve_model, safe_load
from engine.progress import OnProgress, report

log = logging.getLogger(__name__)

_CHUNK = 4096
SAVED_SUFFIX = ".npz"
SAVED_FORMAT = "hardaug-tfidf-logreg"
SAVED_VERSION = 1
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
# The TfidfVectorizer options that change what `transform` computes: saved, and restored on load.
_VECTORIZER_OPTIONS = (
    "analyzer", "ngram_range", "lowercase", "strip_accents", "token_pattern", "min_df", "max_df", "max_features",
    "norm", "use_idf", "smooth_idf", "sublinear_tf", "binary",
)  # fmt: skip


def label_model_kind(spec: str) -> str:
    """'tfidf', 'saved' or 'transformers'; checks that a file or folder exists, loads nothing."""
    if spec == "tfidf":
        return "tfidf"
    if spec.lower().endswith(PICKLE_SUFFIXES):
        raise InputError(
            f"--label-model {spec}: hardaug does not load pickled models (.joblib, .pkl): loading a pickle runs "
            f"code from the file. Save the TF-IDF model with --save-label-model label_model{SAVED_SUFFIX} "
            "(plain arrays, no code) and pass that file."
        )
    if spec.lower().endswith(SAVED_SUFFIX):
        if not Path(spec).is_file():
            raise InputError(f"--label-model {spec}: no such file. Train one with --save-label-model, or use tfidf.")
        return "saved"
    try:
        resolve_model(spec, option="--label-model", what="transformers classifier")
    except InputError as exc:
        raise InputError(
            f"{exc} (--label-model takes tfidf, trained on --train; a {SAVED_SUFFIX} file saved with "
            "--save-label-model; or a transformers classifier, as a folder or a hub id.)"
        ) from None
    return "transformers"


def model_arrays(model) -> dict[str, np.ndarray]:
    """The fitted TF-IDF + logistic regression pipeline as plain arrays (no objects), options as JSON."""
    vectorizer, classifier = model.steps[0][1], model.steps[-1][1]
    terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
    options = {name: getattr(vectorizer, name) for name in _VECTORIZER_OPTIONS}
    meta = {
        "format": SAVED_FORMAT,
        "version": SAVED_VERSION,
        "vectorizer": options,
        "dtype": np.dtype(vectorizer.dtype).name,
    }
    return {
        "meta": np.array(json.dumps(meta)),
        "terms": np.array(terms, dtype=np.str_),
        "idf": vectorizer.idf_,
        "coef": classifier.coef_,
        "intercept": classifier.intercept_,
        "classes": classifier.classes_,
    }


def model_from_arrays(arrays: dict[str, np.ndarray], source: str):
    """Rebuild the scikit-learn pipeline that `model_arrays` took apart."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    meta = json.loads(str(arrays["meta"]))
    if meta.get("format") != SAVED_FORMAT or meta.get("version") != SAVED_VERSION:
        raise InputError(f"--label-model {source} is not a label model saved by hardaug --save-label-model.")
    options = dict(meta["vectorizer"])
    options["ngram_range"] = tuple(options["ngram_range"])
    vectorizer = TfidfVectorizer(**options, dtype=np.dtype(meta["dtype"]).type)
    terms = arrays["terms"].tolist()
    vectorizer.vocabulary_ = {term: i for i, term in enumerate(terms)}
    if len(vectorizer.vocabulary_) != len(terms):
        raise InputError(f"--label-model {source}: its vocabulary has repeated terms; the file is damaged.")
    vectorizer.idf_ = arrays["idf"]
    classifier = LogisticRegression()
    classifier.coef_, classifier.intercept_, classifier.classes_ = (
        arrays["coef"],
        arrays["intercept"],
        arrays["classes"],
    )
    classifier.n_features_in_ = classifier.coef_.shape[1]
    if not (len(terms) == arrays["idf"].shape[0] == classifier.n_features_in_):
        raise InputError(
            f"--label-model {source}: vocabulary, idf and coefficients differ in size; the file is damaged."
        )
    return make_pipeline(vectorizer, classifier)


def load_saved(path: str | Path):
    """Read a `.npz` label model without running code from it (no pickles allowed)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in ("meta", "terms", "idf", "coef", "intercept", "classes")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(
            f"--label-model {path} is not a label model saved by hardaug --save-label-model ({exc})."
        ) from None
    return model_from_arrays(arrays, str(path))


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
        if kind == "saved":
            model = load_saved(spec)
            bad = [int(c) for c in model.classes_ if not 0 <= int(c) < k]
            if bad:
                raise InputError(f"--label-model {spec} predicts classes {bad}, outside 0..{k - 1} of --train.")
            return cls("saved", model, k)
        if kind == "transformers":
            check_device(device)
            from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

            with safe_load(spec, "--label-model"):
                num_labels = AutoConfig.from_pretrained(spec, trust_remote_code=False).num_labels
            if num_labels != k:
                raise InputError(
                    f"--label-model {spec} has {num_labels} output labels but --train has {k} classes. "
                    "Pass a classifier fine-tuned on these classes."
                )
            with safe_load(spec, "--label-model"):
                tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=False)
                model = AutoModelForSequenceClassification.from_pretrained(spec, trust_remote_code=False)
            model = model.to(device).eval()
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
        """Save the TF-IDF model as `.npz` arrays (atomically), to pass later as --label-model."""
        from engine.io import atomic_path

        with atomic_path(path) as tmp:
            self.save_to(tmp)
        return Path(path)

    def save_to(self, path: str | Path) -> None:
        """Write the `.npz` to `path` as it is (the caller renames it into place)."""
        if self.kind == "transformers":
            raise ValueError("a transformers label model is already a folder; pass it as --label-model")
        with open(path, "wb") as fh:  # a file object: np.savez would append .npz to a temporary name
            np.savez_compressed(fh, **model_arrays(self.model))

    def predict_proba(self, texts: Sequence[str], *, on_progress: OnProgress | None = None) -> np.ndarray:
        """Class probabilities, shape (len(texts), k), in input order (progress: stage "label model")."""
        texts = list(texts)
        out = np.zeros((len(texts), self.k), dtype=np.float64)
        report(on_progress, "label model", "text", 0, len(texts), 0)
        for start in range(0, len(texts), _CHUNK):
            part = texts[start : start + _CHUNK]
            out[start : start + len(part)] = self._proba(part)
            report(on_progress, "label model", "text", start + len(part), len(texts), len(part))
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
