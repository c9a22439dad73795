"""Semantic similarity of each augmented text to its source with a sentence-transformers model.

Each distinct text is embedded once (sources repeat across their variants), texts are sorted by length
so batches pad little, embeddings are L2-normalized, and the similarity is their dot product (cosine).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from engine.errors import InputError

log = logging.getLogger(__name__)

_CHUNK = 4096  # texts per encode call, so the caller can show progress


def check_model_path(spec: str, *, option: str, markers: Sequence[str]) -> Path | None:
    """A local model folder (checked to hold one of `markers`), or None for a model-hub id.

    Anything that exists, or looks like a path (starts with '.', '/' or '~', or ends with '/'), must be a
    folder with one of the marker files; other strings are taken as hub ids ("jhgan/ko-sroberta-multitask").
    """
    path = Path(spec).expanduser()
    looks_local = spec.startswith((".", "/", "~")) or spec.endswith("/")
    if not path.exists():
        if looks_local:
            raise InputError(f"{option} {spec}: no such model folder. Check the path, or pass a model-hub id.")
        return None
    if not path.is_dir():
        raise InputError(f"{option} {spec} is a file; pass the model folder (the one with {' or '.join(markers)}).")
    if not any((path / m).exists() for m in markers):
        raise InputError(
            f"{option} {spec}: the folder has no {' or '.join(markers)}, so it is not a saved model "
            f"(found {sorted(p.name for p in path.iterdir())[:8]}). Pass the folder that save_pretrained/save wrote."
        )
    return path


def check_device(device: str) -> None:
    """Fail early when the requested accelerator is not there."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(
            f"--device {device}: torch sees no CUDA device here (torch {torch.__version__}). Use --device cpu."
        )
    if device == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps: the MPS backend is not available here. Use --device cpu.")


class Embedder:
    """Owns one SentenceTransformer; `similarity` scores text pairs."""

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 64) -> None:
        check_model_path(model, option="--embed-model", markers=("modules.json", "config.json"))
        check_device(device)
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(model, device=device)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"--embed-model {model}: could not load it ({type(exc).__name__}: {str(exc)[:300]}). Pass a local "
                "sentence-transformers folder; on a machine without hub access download it first (e.g. "
                f"`hf download {model} --local-dir models/{Path(model).name}`) and pass that folder."
            ) from exc
        self.name = model
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str], *, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Unit-norm embeddings, shape (len(texts), dim), float32, in input order."""
        texts = list(texts)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # longest first: memory errors show early
        out = None
        if progress is not None:
            progress(0, len(texts))
        for start in range(0, len(texts), _CHUNK):
            idx = order[start : start + _CHUNK]
            emb = self.model.encode(
                [texts[i] for i in idx],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32, copy=False)
            if out is None:
                out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
            if progress is not None:
                progress(min(start + _CHUNK, len(texts)), len(texts))
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def similarity(
        self,
        texts: Sequence[str],
        sources: Sequence[str],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Cosine of each text with the source at the same position, shape (n,), float64. Each distinct
        text is embedded once."""
        if len(texts) != len(sources):
            raise ValueError(f"{len(texts)} texts but {len(sources)} sources")
        if not texts:
            return np.zeros(0)
        distinct = list(dict.fromkeys([*sources, *texts]))
        where = {t: i for i, t in enumerate(distinct)}
        emb = self.embed(distinct, progress=progress)
        a = emb[[where[t] for t in texts]]
        b = emb[[where[s] for s in sources]]
        return np.clip(np.einsum("ij,ij->i", a, b).astype(np.float64), -1.0, 1.0)
