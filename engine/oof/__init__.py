"""Out-of-fold predictions: every training row is predicted by a model that never saw it."""

from engine.oof.job import OofRun, run_oof_job
from engine.oof.kfold import OofResult, assign_folds, run_oof

__all__ = ["OofResult", "OofRun", "assign_folds", "run_oof", "run_oof_job"]
