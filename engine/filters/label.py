"""Label consistency: does a classifier trained on the original data still give the source's label?

Three kinds of label model, chosen by `FilterConfig.label_model`:
- `tfidf`: the oof stage's character n-gram TF-IDF + logistic regression (`engine.tfidf`), trained here
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

from engine import tfidf
from engine.batching import plan_batches
from engine.config import TfidfConfig
from engine.errors import InputError
from engine.io import atomic_path
from engine.models import check_device, resolve_model, safe_load
from engine.progress import OnProgress, report

log = logging.getLogger(__name__)

_CHUNK = 4096
SAVED_SUFFIX = ".npz"
SAVED_FORMAT = "hardaug-tfidf-logreg"
SAVED_VERSION = 1
FOLDS_FORMAT = "hardaug-tfidf-logreg-folds"  # K fold models in one .npz (engine.filters.judge)
ARRAYS = ("terms", "idf", "coef", "intercept", "classes")  # beside "meta", the arrays of one saved model
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
# The TfidfVectorizer options that change what `transform` computes: saved, and restored on load.
_VECTORIZER_OPTIONS = (
    "analyzer", "ngram_range", "lowercase", "strip_accents", "token_pattern", "min_df", "max_df", "max_features",
    "norm", "use_idf", "smooth_idf", "sublinear_tf", "binary",
)  # fmt: skip


def label_model_kind(spec: str) -> str:
    """'tfidf', 'saved' (an .npz: one model, or the fold models of an oof job), 'folds' (a folder of
    transformers fold checkpoints) or 'transformers'; checks that a file or folder exists, loads nothing."""
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
    if (Path(spec) / "fold_00").is_dir():  # `oof --keep-checkpoints` writes OUT_DIR/checkpoints/fold_XX
        return "folds"
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


def _damaged(source: str, what: str) -> InputError:
    return InputError(
        f"--label-model {source}: {what}; the file is damaged or was not written by hardaug --save-label-model. "
        "Save the model again (--save-label-model), or use --label-model tfidf."
    )


def read_meta(arrays: dict[str, np.ndarray], source: str) -> dict:
    """The JSON options of a saved label model, checked to be a JSON object."""
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise _damaged(source, f"its options are not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise _damaged(source, "its options are not a JSON object")
    return meta


def check_arrays(arrays: dict[str, np.ndarray], meta: dict, source: str) -> None:
    """Shapes and types a rebuilt model can use: every mistake one line, not a scikit-learn traceback."""
    options = meta.get("vectorizer")
    if not isinstance(options, dict) or set(options) != set(_VECTORIZER_OPTIONS):
        found = sorted(options) if isinstance(options, dict) else type(options).__name__
        raise _damaged(source, f"its vectorizer options are {found}, expected {sorted(_VECTORIZER_OPTIONS)}")
    try:
        np.dtype(meta.get("dtype"))
    except TypeError:
        raise _damaged(source, f"its dtype {meta.get('dtype')!r} is not a NumPy type") from None
    terms, idf, coef, intercept, classes = (arrays[n] for n in ARRAYS)
    if terms.ndim != 1 or terms.dtype.kind != "U":
        raise _damaged(source, f"its terms are {terms.dtype} of shape {terms.shape}, not a list of strings")
    if classes.ndim != 1 or classes.dtype.kind not in "iu":
        raise _damaged(source, f"its classes are {classes.dtype} of shape {classes.shape}, not integer class ids")
    for name, array, ndim in (("idf", idf, 1), ("coefficients", coef, 2), ("intercepts", intercept, 1)):
        if array.ndim != ndim or array.dtype.kind != "f" or not np.isfinite(array).all():
            raise _damaged(source, f"its {name} are {array.dtype} of shape {array.shape}, not finite {ndim}-D floats")
    # scikit-learn keeps one row of coefficients for two classes, one per class otherwise
    rows = 1 if classes.size == 2 else classes.size
    if classes.size < 2 or coef.shape[0] != rows or intercept.shape[0] != rows:
        raise _damaged(
            source, f"{classes.size} classes with {coef.shape[0]} rows of coefficients and {intercept.size} intercepts"
        )
    if not (terms.shape[0] == idf.shape[0] == coef.shape[1]):
        raise _damaged(source, "vocabulary, idf and coefficients differ in size")


def model_from_arrays(arrays: dict[str, np.ndarray], source: str):
    """Rebuild the scikit-learn pipeline that `model_arrays` took apart (checked by `check_arrays`)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    meta = read_meta(arrays, source)
    if meta.get("format") != SAVED_FORMAT or meta.get("version") != SAVED_VERSION:
        raise InputError(f"--label-model {source} is not a label model saved by hardaug --save-label-model.")
    check_arrays(arrays, meta, source)
    options = dict(meta["vectorizer"])
    try:
        options["ngram_range"] = tuple(options["ngram_range"])
        vectorizer = TfidfVectorizer(**options, dtype=np.dtype(meta["dtype"]).type)
        vectorizer._validate_params()  # scikit-learn's own check of every option's type and range
    except (TypeError, ValueError) as exc:
        raise _damaged(source, f"its vectorizer options are not valid ({exc})") from None
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
    return make_pipeline(vectorizer, classifier)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an `.npz`, read without running code from it (no pickles allowed)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(
            f"--label-model {path} is not a label model saved by hardaug --save-label-model ({exc})."
        ) from None


def load_saved(path: str | Path):
    """Read a `.npz` label model (one model; fold models are read by engine.filters.judge)."""
    arrays = load_arrays(path)
    if "meta" in arrays and read_meta(arrays, str(path)).get("format") == FOLDS_FORMAT:
        raise InputError(
            f"--label-model {path} holds the fold models of an oof job: pass the oof.parquet whose folds they were "
            "fitted on with --oof."
        )
    missing = [name for name in ("meta", *ARRAYS) if name not in arrays]
    if missing:
        raise InputError(
            f"--label-model {path} is not a label model saved by hardaug --save-label-model (no {', '.join(missing)})."
        )
    return model_from_arrays(arrays, str(path))


def check_classes(classes: np.ndarray, k: int, source: str) -> None:
    """A saved model must predict exactly the K classes of --train: a missing class would get probability 0."""
    found = sorted(int(c) for c in classes)
    if found != list(range(k)):
        raise InputError(
            f"--label-model {source} predicts the classes {found}, but --train has {k} classes (0..{k - 1}). "
            "Save a label model trained on these data (--save-label-model), or use --label-model tfidf."
        )


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
        log.info("training the TF-IDF label model on %d texts", len(texts))
        return cls("tfidf", tfidf.fit_model(config, texts, labels), k)

    @classmethod
    def load(cls, spec: str, k: int, *, device: str = "cpu", batch_size: int = 64, max_length: int = 128) -> LabelModel:
        """Load a saved model (`.joblib` or a transformers folder) for `k` classes; errors name the fix."""
        kind = label_model_kind(spec)
        if kind == "saved":
            model = load_saved(spec)
            check_classes(model.classes_, k, spec)
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
            return tfidf.predict_proba(self.model, texts, self.k)
        import torch

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
