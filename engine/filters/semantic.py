"""Semantic similarity of each augmented text to its source with a sentence-transformers model.

Each distinct text is embedded once (sources repeat across their variants), texts are sorted by length
so batches pad little, embeddings are L2-normalized, and the similarity is their dot product (cosine).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from engine.errors import InputError
from engine.models import check_device, resolve_model, safe_load
from engine.progress import OnProgress, report

log = logging.getLogger(__name__)

_CHUNK = 4096  # texts per encode call, so the caller can show progress


class Embedder:
    """Owns one SentenceTransformer; `similarity` scores text pairs."""

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 64) -> None:
        source = resolve_model(
            model,
            option="--embed-model",
            needs=(("modules.json", "config.json"),),
            what="sentence-transformers",
            skip_hint="--no-similarity",
        )
        check_device(device, "--device")
        from sentence_transformers import SentenceTransformer

        try:
            with safe_load(model, "--embed-model"):
                self.model = SentenceTransformer(source.load_from, device=device, trust_remote_code=False)
        except InputError:
            raise
        except (OSError, ValueError) as exc:
            raise InputError(
                f"--embed-model {model}: could not load it ({type(exc).__name__}: {str(exc)[:300]}). Pass a local "
                "sentence-transformers folder, or a hub id this machine can download or has cached."
            ) from exc
        self.name = model
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str], *, on_progress: OnProgress | None = None) -> np.ndarray:
        """Unit-norm embeddings, shape (len(texts), dim), float32, in input order (progress: stage
        "embeddings", unit "text")."""
        texts = list(texts)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # longest first: memory errors show early
        out = None
        report(on_progress, "embeddings", "text", 0, len(texts), 0)
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
            report(on_progress, "embeddings", "text", start + len(idx), len(texts), len(idx))
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def similarity(
        self,
        texts: Sequence[str],
        sources: Sequence[str],
        *,
        on_progress: OnProgress | None = None,
    ) -> np.ndarray:
        """Cosine of each text with the source at the same position, shape (n,), float64. Each distinct
        text is embedded once."""
        if len(texts) != len(sources):
            raise ValueError(f"{len(texts)} texts but {len(sources)} sources")
        if not texts:
            return np.zeros(0)
        distinct = list(dict.fromkeys([*sources, *texts]))
        where = {t: i for i, t in enumerate(distinct)}
        emb = self.embed(distinct, on_progress=on_progress)
        a = emb[[where[t] for t in texts]]
        b = emb[[where[s] for s in sources]]
        return np.clip(np.einsum("ij,ij->i", a, b).astype(np.float64), -1.0, 1.0)
