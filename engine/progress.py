"""The one progress protocol of long jobs: every engine that reports progress calls `on_progress(Progress)`.

The stage names what is counted (`unit`: "fold", "step", "source", "text", "cell", "resample"), `done` and
`total` count it over the whole job (so a resumed job starts at what earlier runs finished), and `detail`
carries what that step produced for the caller that wants it (a fold's metrics, a chunk's outputs, tokens and
seconds). The CLI turns these into tqdm bars (engine.cli.common); library callers can log or ignore them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Progress:
    stage: str  # what is running: "folds", "fold 3 steps", "eda", "embed", "cells", ...
    unit: str  # what `done` and `total` count
    done: int
    total: int
    step: int = 1  # how many units this report adds (a chunk of 256 sources: 256)
    detail: Mapping[str, Any] = field(default_factory=dict)


OnProgress = Callable[[Progress], None]


def report(
    on_progress: OnProgress | None, stage: str, unit: str, done: int, total: int, step: int = 1, **detail: Any
) -> None:
    """Call `on_progress` if there is one (engines take `on_progress=None` and call this)."""
    if on_progress is not None:
        on_progress(Progress(stage, unit, done, total, step, detail))
