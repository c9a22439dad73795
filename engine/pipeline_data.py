"""What a pipeline TOML says, checked against its data at load, before any stage runs.

A preset chosen for other data (`--preset notebook` keeps classes 1 and 3 of 4), `--classes` ids the data
does not have, class names that do not match the data's class count, or a training size the data cannot
give would otherwise stop the run after the stages before the one that reads them. `read_classes` reads
the training labels (or the given out-of-fold predictions) as the first stage will, and `check_with_data`
refuses, naming the table and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine import mine as m
from engine.errors import InputError
from engine.io import read_table
from engine.pipeline_options import StageOptions
from engine.validate import prepare_dataset


@dataclass(frozen=True)
class Classes:
    """The classes of the training rows: names in class-id order, rows of each, and whether the input has
    the training-dynamics columns (data-map steps need them)."""

    names: tuple[str, ...]
    counts: tuple[int, ...]
    dynamics: bool = False

    @property
    def k(self) -> int:
        return len(self.names)


def read_classes(path: Path, *, train: Path, predictions: Path | None, parsed: Mapping[str, StageOptions]) -> Classes:
    """The training data's classes, read with the options of the stage that reads them first (oof, or mine
    when [data] predictions skips oof). A file the stage would refuse is refused here, naming [data]."""
    import numpy as np

    try:
        if predictions is None:
            args = parsed["oof"]
            frame, names = prepare_dataset(
                read_table(train),
                source=str(train),
                text_col=args.get("text_col"),
                label_col=args.get("label_col"),
                id_col=args.get("id_col"),
                complete=True,
            )
            dynamics = args.config.transformer.dynamics
        else:
            args = parsed["mine"]
            frame, names = m.load_predictions(
                predictions,
                text_col=args.get("text_col"),
                label_col=args.get("label_col"),
                id_col=args.get("id_col"),
                prob_cols=args.get("prob_cols"),
                class_names=args.get("class_names"),
                renormalize=bool(args.get("renormalize")),
            )
            dynamics = m.has_dynamics(frame)
    except InputError as exc:
        key = "train" if predictions is None else "predictions"
        raise InputError(f"{path}: [data] {key}: {exc}") from None
    counts = np.bincount(frame["label"].to_numpy(), minlength=len(names))
    return Classes(tuple(names), tuple(int(c) for c in counts), dynamics)


def check_with_data(
    path: Path, classes: Classes, parsed: Mapping[str, StageOptions], selections: Mapping[str, str]
) -> None:
    """Refuse what cannot apply to the data's classes. `selections` maps each mine namespace in `parsed`
    to where its steps were given ("[mine] select", "[strategies] NAME"), for messages."""
    k, names = classes.k, list(classes.names)
    for where, args in parsed.items():
        if where.startswith("strategies."):  # parsed with [mine]'s options: [mine] is checked itself
            continue
        given = args.get("class_names")
        if given is not None and len(given) != k:
            raise InputError(
                f"{path}: [{where}] class-names: {len(given)} names {given} for data with {k} classes "
                f"({', '.join(names)}); give one name per class, in class-id order, or remove the key."
            )
    for where, at in selections.items():
        args = parsed[where]
        try:
            for preset in args.presets:
                m.check_preset(preset, k, names)
            m.check_steps(args.steps, k, names, dynamics=classes.dynamics)
        except InputError as exc:
            raise InputError(f"{path}: {at}: {exc}") from None
