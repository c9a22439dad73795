"""The filter job on files, behind `hardaug filter`: check the inputs, run every filter, and write the kept
rows, the rejected rows and the summary together, under a job folder.

- Before any work, and before anything is written: no output on an input or on another output, every
  output folder writable, the augmented rows, the training set (and `sources`) read and checked, the label
  maps the same, the embedding model folder found, a saved label model loaded.
- The job folder `.OUT.job/` (engine.jobs) beside the kept file is locked while the job runs, so a second
  filter into the same OUT stops at once and names the first; its fingerprint covers the input files and
  local model folders by content, every option and the output paths. The outputs appear together or not at
  all (`engine.io.output_group`), then the done marker with their digests: the same job run again returns
  the saved summary (`FilterDone.up_to_date`) without embedding anything.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from engine.cluster.session import preflight
from engine.errors import InputError
from engine.filters.config import FilterConfig
from engine.filters.core import attach_sources, check_labels, filter_augmented, load_augmented, load_dataset
from engine.filters.judge import (
    FoldJudge,
    WholeJudge,
    check_markers,
    checkpoint_markers,
    expected_markers,
    load_checkpoint_folds,
    load_fold_file,
    read_folds,
    save_fold_models,
    saved_kind,
)
from engine.filters.label import LabelModel, label_model_kind
from engine.filters.on_ray import filter_models_on_ray
from engine.filters.semantic import Embedder
from engine.io import check_output, check_writable, json_text, output_group, refuse_overwrite, refuse_shared_outputs
from engine.jobs import Job, fingerprint
from engine.labels import check_same_classes, metadata, saved_classes
from engine.models import resolve_model
from engine.oof.refit import refit_tfidf_folds
from engine.progress import OnProgress, report

log = logging.getLogger(__name__)

TRAINING = "label model training"  # the progress stage reported before the TF-IDF label model is fitted


@dataclass(frozen=True)
class FilterFiles:
    """What a filter job reads and writes. `rejected` and `summary` default to OUT with `.rejected.parquet`
    and `.summary.json`; `sources` (id, text) is where the source texts are looked up (default: `train`)."""

    input: Path
    train: Path
    out: Path
    rejected: Path | None = None
    summary: Path | None = None
    sources: Path | None = None
    save_label_model: Path | None = None  # the TF-IDF label model (or fold models) trained here, as .npz
    # oof.parquet (its `fold` column): each row is judged by the fold model that held its source out
    oof: Path | None = None
    text_col: str = "text"
    label_col: str = "label"
    id_col: str = "id"

    def outputs(self) -> dict[str, Path]:
        """The outputs by option, defaults filled in."""
        out = Path(self.out)
        named = {
            "--out": out,
            "--rejected": Path(self.rejected or out.with_suffix(".rejected.parquet")),
            "--summary": Path(self.summary or out.with_suffix(".summary.json")),
            "--save-label-model": self.save_label_model,
        }
        return {option: Path(path) for option, path in named.items() if path is not None}


@dataclass(frozen=True)
class FilterDone:
    summary: dict  # what the summary file holds
    up_to_date: bool  # this very job had already finished here: nothing was run or written


def filter_files(
    files: FilterFiles,
    config: FilterConfig,
    *,
    cluster=None,
    restart: bool = False,
    on_progress: OnProgress | None = None,
) -> FilterDone:
    """Run the filter job of `files` with `config` (see the module docstring); `cluster`
    (engine.cluster.session.ClusterOptions) runs the embedding and label models on Ray actors. Progress:
    `filter_augmented`'s stages, and `TRAINING` once before the TF-IDF label model is fitted."""
    outputs = _check_paths(files, config)
    rows, train, names = _load(files)
    folds = _read_folds(files, config, train, names)
    label_model = _check_models(files, config, train, names, folds, cluster)
    with Job(
        check_output(files.out).with_name(f".{Path(files.out).name}.job"),
        _fingerprint(files, config, outputs),
        restart=restart,
        outputs=list(outputs.values()),
        what="filter job",
    ) as job:
        if (done := job.finished()) is not None:
            return FilterDone(done["summary"], up_to_date=True)
        summary = _run(files, config, rows, train, names, folds, label_model, cluster, outputs, on_progress)
        job.finish({"summary": summary})
    return FilterDone(summary, up_to_date=False)


def _check_paths(files: FilterFiles, config: FilterConfig) -> dict[str, Path]:
    outputs = files.outputs()
    check_output(outputs["--out"])
    check_output(outputs["--rejected"], option="--rejected")
    if files.save_label_model is not None and (not config.label_check or config.label_model != "tfidf"):
        raise InputError("--save-label-model saves the TF-IDF model trained here; use it with --label-model tfidf.")
    if files.save_label_model is not None and Path(files.save_label_model).suffix.lower() != ".npz":
        raise InputError(f"--save-label-model {files.save_label_model}: the model is saved as arrays; use a .npz name.")
    if files.oof is not None and not config.label_check:
        raise InputError("--oof gives the folds of the label check; drop it, or drop --no-label-check.")
    if config.label_check:
        kind = label_model_kind(config.label_model)  # a missing file or folder fails now, before any work
        if kind == "folds" and files.oof is None:
            raise InputError(
                f"--label-model {config.label_model} holds fold models: pass the oof.parquet of the oof job that "
                "trained them with --oof, so each row is judged by the fold that held its source out."
            )
        if kind == "transformers" and files.oof is not None:
            raise InputError(
                f"--label-model {config.label_model} is one transformers model; with --oof pass the fold "
                "checkpoints of the oof job (oof --backend transformers --keep-checkpoints: OUT_DIR/checkpoints), "
                "or drop --oof to judge every row with this one model."
            )
    inputs = {"--input": files.input, "--train": files.train, "--sources": files.sources, "--oof": files.oof}
    if config.label_check and config.label_model != "tfidf":
        inputs["--label-model"] = config.label_model
    refuse_overwrite(outputs, inputs)
    refuse_shared_outputs(outputs)
    for option, path in outputs.items():
        check_writable(path.parent, option=option)  # now, not after minutes of filtering
    return outputs


def _load(files: FilterFiles):
    """The augmented rows with their source texts, the training set and its class names, all checked."""
    columns = {"text_col": files.text_col, "id_col": files.id_col}
    augmented = load_augmented(files.input)
    train, names = load_dataset(files.train, label_col=files.label_col, complete=True, **columns)
    if (saved := saved_classes(files.input)) is not None:  # the map the augmented rows were made with
        check_same_classes(saved[0], saved[1], names, f"--train {files.train}")
    if files.sources is not None:
        sources, _ = load_dataset(files.sources, label_col=None, **columns)
        rows = attach_sources(augmented, sources, where=f"--sources {files.sources}")
    else:
        rows = attach_sources(augmented, train, where=f"--train {files.train}")
    check_labels(augmented, len(names), where=f"--train {files.train}")
    log.info("%d augmented rows, %d training rows, %d classes", rows.height, train.height, len(names))
    return rows, train, names


def _read_folds(files: FilterFiles, config: FilterConfig, train, names):
    """The fold of each training row, from --oof (None without it)."""
    if files.oof is None:
        return None
    return read_folds(files.oof, train, names)


def _check_models(files: FilterFiles, config: FilterConfig, train, names, folds, cluster):
    """Ray reachable, the embedding model found, a saved label model loaded (arrays: quick) and fold models
    checked against --oof's folds: a wrong one stops the job before its folder is made. Returns the judge
    when it is ready now (saved TF-IDF models), else None."""
    if cluster is not None:
        preflight(cluster)  # Ray installed and the cluster reachable, before any work
    if config.similarity:
        resolve_model(
            config.embed_model,
            option="--embed-model",
            needs=(("modules.json", "config.json"),),
            what="sentence-transformers",
            skip_hint="--no-similarity",
        )
    if not config.label_check:
        return None
    k, spec = len(names), config.label_model
    kind = label_model_kind(spec)
    if kind == "saved" and saved_kind(spec) == "folds":
        if folds is None:
            raise InputError(
                f"--label-model {spec} holds the fold models of an oof job: pass the oof.parquet whose folds they "
                "were fitted on with --oof."
            )
        models, markers = load_fold_file(spec, k)
        check_markers(markers, expected_markers(train, folds, names), spec, f"--oof {files.oof}")
        return FoldJudge(models, _fold_of(train, folds), where=f"--oof {files.oof}")
    if kind == "saved":
        if folds is not None:
            raise InputError(
                f"--label-model {spec} is one model trained on the whole training set; with --oof pass fold models "
                "(--label-model tfidf refits them here; --save-label-model keeps them), or drop --oof."
            )
        model = LabelModel.load(spec, k)
        return model if cluster is None else WholeJudge(model)
    if kind == "folds":
        check_markers(checkpoint_markers(spec), expected_markers(train, folds, names), spec, f"--oof {files.oof}")
    return None


def _fold_of(train, folds) -> dict[str, int]:
    return dict(zip(train["id"].to_list(), folds.tolist(), strict=True))


def _fingerprint(files: FilterFiles, config: FilterConfig, outputs: dict[str, Path]) -> str:
    """The input files and local model folders by content (a hub id by its name, in the options), every
    option, and where the outputs go (a job that writes elsewhere is another job)."""

    models = {"--embed-model": config.embed_model if config.similarity else None}
    models["--label-model"] = config.label_model if config.label_check and config.label_model != "tfidf" else None
    options = {
        "config": asdict(config),
        "columns": [files.text_col, files.label_col, files.id_col],
        "outputs": {option: str(path) for option, path in outputs.items()},
    }
    inputs = {"--input": files.input, "--train": files.train, "--sources": files.sources, "--oof": files.oof}
    inputs |= {option: Path(m) if m is not None and Path(m).exists() else None for option, m in models.items()}
    return fingerprint("filter", options, inputs)


def _run(files, config, rows, train, names, folds, label_model, cluster, outputs, on_progress) -> dict:
    """Load the models, check every row, write the outputs together; returns the summary."""
    k = len(names)
    embedder = None  # on Ray the models load on the actors (their hosts may have GPUs this one lacks)
    if config.similarity and cluster is None:
        embedder = Embedder(config.embed_model, device=config.device, batch_size=config.batch_size)
    load = {"device": config.device, "batch_size": config.batch_size, "max_length": config.max_length}
    fold_of = _fold_of(train, folds) if folds is not None else None
    where = f"--oof {files.oof}"
    started = time.perf_counter()
    if label_model is None and config.label_check:
        kind = label_model_kind(config.label_model)
        if kind == "folds":  # fold judges run here, also with --ray (the pool holds one model)
            label_model = FoldJudge(load_checkpoint_folds(config.label_model, k, **load), fold_of, where=where)
        elif kind != "tfidf" and cluster is None:
            label_model = LabelModel.load(config.label_model, k, **load)
        elif kind == "tfidf" and folds is not None:
            report(on_progress, TRAINING, "text", 0, train.height, 0)
            fitted = refit_tfidf_folds(
                config.tfidf, train["text"].to_list(), train["label"].to_numpy(), folds, processes=config.processes
            )
            label_model = FoldJudge([LabelModel("tfidf", m, k) for m in fitted], fold_of, where=where)
        elif kind == "tfidf":
            report(on_progress, TRAINING, "text", 0, train.height, 0)
            label_model = LabelModel.train_tfidf(train["text"].to_list(), train["label"].to_numpy(), k, config.tfidf)
    with ExitStack() as stack:
        models = (embedder, label_model)
        if cluster is not None:  # embeddings and label probabilities on actors; near-duplicates and decisions here
            judged_here = hasattr(label_model, "probabilities")  # a judge: its models stay in this process
            on_ray = replace(config, label_check=False) if judged_here else config
            fitted = None if judged_here else label_model
            models = stack.enter_context(filter_models_on_ray(on_ray, k, cluster, fitted_label_model=fitted))
            if judged_here:
                models = (models[0], label_model)
        result = filter_augmented(
            rows, train, config=config, embedder=models[0], label_model=models[1], on_progress=on_progress
        )
    summary = result.summary
    summary.update(
        {
            "input": str(files.input),
            "train": str(files.train),
            "sources": str(files.sources or files.train),
            "oof": None if files.oof is None else str(files.oof),
            "label_judge": None if not config.label_check else "out of fold" if folds is not None else "whole",
            "classes": names,
            "total_seconds": round(time.perf_counter() - started, 2),
        }
    )
    # All or nothing: a full disk or a failing write leaves none of them, not a kept file without its summary.
    with output_group() as group:
        carried = metadata(names)  # the label map travels on to compare
        kept = result.rows.filter("kept").drop("source_text")
        kept.write_parquet(group.path(outputs["--out"]), compression="zstd", statistics=True, metadata=carried)
        rejected = result.rows.filter(~result.rows["kept"])
        rejected.write_parquet(group.path(outputs["--rejected"]), compression="zstd", metadata=carried)
        if files.save_label_model is not None:
            if isinstance(label_model, FoldJudge):  # the K refitted fold models, with their job's markers
                markers = expected_markers(train, folds, names)
                save_fold_models(group.path(files.save_label_model), label_model.models, markers)
            else:
                label_model.save_to(group.path(files.save_label_model))
        group.path(outputs["--summary"]).write_text(json_text(summary), encoding="utf-8")
    return summary
