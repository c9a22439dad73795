"""Where a model comes from, for every engine: a local folder or a model-hub id, resolved by one rule.

`resolve_model(spec, ...)`:

- a path that exists must be a folder holding the files the engine needs (`needs`);
- something written as a path (starts with `.`, `/` or `~`, ends with `/`, or has more than one `/`) that
  does not exist is a missing folder, never a hub id;
- anything else is a hub id ("name" or "owner/name"): the local Hugging Face cache is looked up first
  (no network), and a complete cached snapshot is used as a local folder; otherwise, in offline mode
  (HF_HUB_OFFLINE) or when the hub does not answer within `HUB_TIMEOUT_S`, it fails at once with the fix
  (download command, HF_HUB_OFFLINE, or a flag such as --no-similarity), instead of the libraries'
  retries (about 80 s for a sentence-transformers model on a machine without hub access).

No model runs code of its own: every load passes `trust_remote_code=False`, and `resolve_model` refuses a
folder that asks for code (`refuse_custom_code`: an `auto_map` in its configs, a sentence-transformers module
from outside the library) before anything loads. Weights load through torch's safe loader (safetensors, or
`weights_only` pickles); `safe_load` turns its refusal of a pickle that holds more than tensors into
one line.

`check_device(device, option)` is the one "is that accelerator here" check of the torch-based engines.
Nothing heavy is imported at module load.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError

HUB_TIMEOUT_S = 5.0  # one request to the hub's API; a reachable hub answers in well under a second
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
CONFIG = (("config.json",),)
WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth")
# The configs in which transformers looks for `auto_map` (classes to import from the model's own .py files).
CODE_CONFIGS = (
    "config.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "feature_extractor_config.json",
    "image_processor_config.json",
)


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: what the user gave, and the local folder to load it from (the user's folder, or
    the snapshot in the hub cache), or None when the engine downloads it from the hub."""

    spec: str
    path: Path | None
    cached: bool = False  # path is a snapshot of the hub cache

    @property
    def local(self) -> bool:
        return self.path is not None

    @property
    def load_from(self) -> str:
        """What to hand to from_pretrained / LLM(model=...) / SentenceTransformer(...)."""
        return str(self.path) if self.path is not None else self.spec


def looks_like_path(spec: str) -> bool:
    """Whether `spec` can only be meant as a folder (hub ids are "name" or "owner/name")."""
    return (
        spec.startswith((".", "/", "~"))
        or spec.endswith(("/", os.sep))
        or spec.count("/") > 1
        or (os.sep != "/" and os.sep in spec)
        or not _HUB_ID.match(spec)
    )


def hub_offline() -> bool:
    """HF_HUB_OFFLINE, read now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true"):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def missing_files(folder: Path, needs: Sequence[Sequence[str]]) -> list[str]:
    """The groups of `needs` (each: glob patterns, one match is enough) that `folder` lacks, as text."""
    return [" or ".join(group) for group in needs if not any(any(folder.glob(p)) for p in group)]


def cached_snapshot(repo_id: str) -> Path | None:
    """The folder of `repo_id` in the local hub cache (HF_HUB_CACHE), or None; never touches the network."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError as exc:
        partial = getattr(exc, "snapshot_path", None)  # IncompleteSnapshotError: some files are missing
        return Path(partial) if partial else None
    except (OSError, ValueError):  # an id huggingface_hub refuses, an unreadable cache
        return None


def hub_problem(repo_id: str, timeout: float = HUB_TIMEOUT_S) -> str | None:
    """None when the hub answers for `repo_id` within `timeout`; else what went wrong, in words."""
    try:
        from huggingface_hub import HfApi, constants
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    except ImportError:
        return "huggingface_hub is not installed"
    try:
        HfApi().model_info(repo_id, timeout=timeout)
    except GatedRepoError:
        return "the model is gated: accept its terms on the hub and log in (hf auth login)"
    except RepositoryNotFoundError:
        return "the hub has no model of that name (or it is private: log in with hf auth login)"
    except Exception as exc:  # connection refused, DNS, timeouts, proxies: httpx/requests errors alike
        return (
            f"the model hub ({constants.ENDPOINT}) could not be reached within {timeout:.0f} s ({type(exc).__name__})"
        )
    return None


def _check_folder(path: Path, spec: str, option: str, needs: Sequence[Sequence[str]], what: str) -> None:
    if not path.is_dir():
        holding = f" (the one with {_needs_text(needs)})" if needs else ""
        raise InputError(f"{option} {spec} is a file; pass the {what} folder{holding}.")
    missing = missing_files(path, needs)
    if missing:
        found = sorted(p.name for p in path.iterdir())[:8]
        raise InputError(
            f"{option} {spec}: the folder has no {', '.join(missing)} (found {found}), so it is not a saved model. "
            f"Pass the {what} folder that save_pretrained wrote, or a hub id."
        )


def custom_code(folder: Path) -> list[str]:
    """What in `folder` asks to import code shipped with the model, in words ("config.json's auto_map names
    modeling_x.py"); [] when it needs none. Reads JSON only, imports nothing."""
    found = []
    for name in CODE_CONFIGS:
        config = _read_json(folder / name)
        if isinstance(config, dict) and config.get("auto_map"):
            found.append(f"{name}'s auto_map names {', '.join(_code_files(config['auto_map'])) or 'custom classes'}")
    modules = _read_json(folder / "modules.json")
    if isinstance(modules, list):
        types = [m.get("type") for m in modules if isinstance(m, dict)]
        foreign = [t for t in types if isinstance(t, str) and not t.startswith("sentence_transformers.")]
        if foreign:
            found.append(f"modules.json names modules from outside sentence-transformers ({', '.join(foreign)})")
    return found


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent or unreadable: the loaders name that themselves
        return None


def _code_files(auto_map: object) -> list[str]:
    """The .py files an auto_map's class references ("modeling_x.Cls", "owner/repo--modeling_x.Cls") name."""
    refs = auto_map.values() if isinstance(auto_map, dict) else [auto_map]
    flat = [r for ref in refs for r in (ref if isinstance(ref, list | tuple) else [ref]) if isinstance(r, str)]
    return sorted({ref.split("--")[-1].rsplit(".", 1)[0] + ".py" for ref in flat})


def refuse_custom_code(folder: Path, spec: str, option: str) -> None:
    """`InputError` when the model in `folder` needs code of its own: hardaug never runs it (an answer of "y"
    on stdin to transformers' prompt would otherwise import the folder's Python)."""
    found = custom_code(folder)
    if found:
        raise InputError(
            f"{option} {spec}: the model needs code of its own ({'; '.join(found)}), and hardaug never runs code "
            "from a model folder. Convert it to a model type transformers ships (save_pretrained of a standard "
            "architecture), or use a model that needs no custom code."
        )


@contextlib.contextmanager
def safe_load(spec: str, option: str) -> Iterator[None]:
    """Around a load, the refusals of the safe loaders as one line each: torch refuses a pickled weights
    file that holds more than tensors (it could run code: an `UnpicklingError` otherwise), and transformers
    refuses a hub model (not checked beforehand: it was not downloaded) that needs its own code."""
    try:
        yield
    except pickle.UnpicklingError as exc:
        # torch's first sentence says what it found; the rest is how to turn the check off
        found = re.search(r"WeightsUnpickler error: ([^\n.]+)", str(exc))
        reason = (found.group(1) if found else str(exc).split("\n")[0].split(". ")[0] or "not tensors")[:200]
        raise InputError(
            f"{option} {spec}: its weights are a pickle that torch's safe loader refuses ({reason.strip()}); a "
            "pickle that holds more than tensors could run code, so it is not loaded. Use the model's .safetensors "
            "weights (save_pretrained writes them), from a source you trust."
        ) from None
    except ValueError as exc:
        if "trust_remote_code" not in str(exc):
            raise
        raise InputError(
            f"{option} {spec}: the model needs code of its own, and hardaug never runs code that comes with a "
            "model. Use a model that needs no custom code."
        ) from None


def _needs_text(needs: Sequence[Sequence[str]]) -> str:
    return ", ".join(" or ".join(group) for group in needs)


def resolve_model(
    spec: str | Path,
    *,
    option: str = "--model",
    needs: Sequence[Sequence[str]] = CONFIG,
    what: str = "model",
    skip_hint: str | None = None,
) -> ModelSource:
    """Resolve `spec` (folder or hub id) by the module's rule; `InputError` with the fix otherwise.

    `needs` lists the files the engine needs, as groups of glob patterns (one match per group), e.g.
    `(("config.json",), WEIGHTS)`; a cached hub snapshot counts only when it has them all. `skip_hint`
    names a way to do without the model (e.g. "--no-similarity"), added to the fix.
    """
    spec = str(spec)
    path = Path(spec).expanduser()
    if path.exists():
        _check_folder(path, spec, option, needs, what)
        refuse_custom_code(path, spec, option)
        return ModelSource(spec, path)
    if looks_like_path(spec):
        raise InputError(
            f"{option} {spec}: no such model folder (no such folder as {path.absolute()}). Check the path, or pass "
            "a model-hub id such as owner/name."
        )
    snapshot = cached_snapshot(spec)
    missing = missing_files(snapshot, needs) if snapshot is not None else None
    if snapshot is not None and not missing:
        refuse_custom_code(snapshot, spec, option)
        return ModelSource(spec, snapshot, cached=True)
    cache = "the local hub cache" + (f" (only partly: no {', '.join(missing)})" if missing else "")
    fix = (
        f"Download it on a machine with hub access (`hf download {spec} --local-dir models/{spec.split('/')[-1]}`) "
        "and pass that folder, or fill this machine's cache (HF_HOME) with `hf download` and set HF_HUB_OFFLINE=1"
        + (f", or run without it ({skip_hint})" if skip_hint else "")
        + "."
    )
    if hub_offline():
        raise InputError(f"{option} {spec} is not a local folder nor in {cache}, and HF_HUB_OFFLINE is set. {fix}")
    problem = hub_problem(spec)
    if problem is not None:
        raise InputError(f"{option} {spec} is not a local folder nor in {cache}, and {problem}. {fix}")
    return ModelSource(spec, None)


def check_device(device: str, option: str = "--device") -> None:
    """Fail early, with the fix, when torch cannot use the requested accelerator here."""
    if not (device.startswith("cuda") or device == "mps"):
        return
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(
            f"{option} {device}, but torch {torch.__version__} sees no GPU (a CPU build of torch, no driver, or "
            "CUDA_VISIBLE_DEVICES empty). Use --device cpu, install the gpu extra, or see `hardaug doctor`."
        )
    if device == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"{option} mps: the MPS backend is not available here. Use --device cpu.")
