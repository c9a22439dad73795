"""CUDA 12 cuBLAS for CTranslate2 in an environment whose torch brings CUDA 13.

CTranslate2's PyPI wheels (4.x) are built against CUDA 12 and open `libcublas.so.12` by name
(`dlopen`) at their first GPU call; the gpu extra's torch ships CUDA 13 libraries only, so on a node
without a system CUDA 12 toolkit that call fails with "Library libcublas.so.12 is not found or cannot
be loaded" (OpenNMT/CTranslate2#1933, SYSTRAN/faster-whisper#1431). The gpu extra therefore installs
the `nvidia-cublas-cu12` wheel, and `load_cublas12()` loads its two libraries once, before CTranslate2
needs them. A library already loaded in the process is found again by its SONAME, so CTranslate2's own
`dlopen("libcublas.so.12")` then succeeds without LD_LIBRARY_PATH.

Loaded RTLD_LOCAL (ctypes' default): CTranslate2 resolves its cuBLAS symbols through its own handle,
and keeping the CUDA 12 symbols out of the global scope keeps them from shadowing torch's CUDA 13 cuBLAS.
Nothing here runs at import, and nothing is loaded on CPU-only runs.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from engine.errors import InputError

log = logging.getLogger(__name__)

# libcublas.so.12 needs libcublasLt.so.12: load Lt first, so the dependency resolves by SONAME to it.
CUBLAS12 = ("libcublasLt.so.12", "libcublas.so.12")
WHEEL = "nvidia-cublas-cu12"


def wheel_lib_dirs() -> list[Path]:
    """Folders where the nvidia-cublas-cu12 wheel puts its libraries (`<site-packages>/nvidia/cublas/lib`)."""
    dirs: list[Path] = []
    try:
        spec = importlib.util.find_spec("nvidia.cublas")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        dirs += [Path(p) / "lib" for p in spec.submodule_search_locations or []]
    # `nvidia` is a namespace package spread over site folders; look in each in case another package
    # shadows it on sys.path.
    dirs += [Path(p) / "nvidia" / "cublas" / "lib" for p in sys.path if p]
    return list(dict.fromkeys(d for d in dirs if (d / CUBLAS12[-1]).is_file()))


def loadable(name: str) -> bool:
    """Whether the dynamic loader finds `name` (a SONAME such as libcublas.so.12) as CTranslate2 would:
    on the system search path, LD_LIBRARY_PATH, or already loaded in this process."""
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def mapped_files(soname: str, maps: str | None = None) -> list[str]:
    """The files named `soname` (or a versioned file behind it, libcublas.so.12.9.1.4) that this process has
    mapped, from `/proc/self/maps` (or `maps`, its text). Which file answers a dlopen by name is what
    matters, not whether some folder on the library path holds one: importing a CUDA torch already maps
    the nvidia-cublas-cu12 wheel's copy, which every later dlopen("libcublas.so.12") then gets."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:  # not Linux
            return []
    files = []
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and Path(parts[5]).name.startswith(soname):
            files.append(parts[5].removesuffix(" (deleted)"))
    return list(dict.fromkeys(files))


def describe_source(path: str, wheel_dirs: Iterable[Path]) -> str:
    """Where a mapped library comes from, in words: a wheel's folder or the system's."""
    folder = Path(path).parent
    if any(folder == Path(d) for d in wheel_dirs) or "/nvidia/cublas/lib" in str(folder):
        return f"the {WHEEL} wheel ({path})"
    return f"the system ({path})"


@functools.cache
def load_cublas12(search: tuple[Path, ...] | None = None) -> str:
    """Make `libcublas.so.12` loadable for CTranslate2; say where it comes from (a file or folder).

    Loads nothing more when the loader already finds it (a system CUDA 12 toolkit, LD_LIBRARY_PATH, an
    earlier call, or the copy a CUDA torch mapped at import) and returns the mapped file. Otherwise loads
    the libraries from the first folder of `search` (default: the folders of the nvidia-cublas-cu12 wheel)
    that holds them. InputError with the fix when there is none.
    """
    if loadable(CUBLAS12[-1]):
        return next(iter(mapped_files(CUBLAS12[-1])), "system")
    folders: Iterable[Path] = search if search is not None else wheel_lib_dirs()
    for folder in folders:
        if all((folder / name).is_file() for name in CUBLAS12):
            for name in CUBLAS12:
                ctypes.CDLL(str(folder / name))
            log.info("CTranslate2: CUDA 12 cuBLAS loaded from %s", folder)
            return str(folder)
    raise InputError(
        "CTranslate2 on CUDA needs the CUDA 12 cuBLAS (libcublas.so.12), which is neither on the library path "
        f"nor installed as the {WHEEL} wheel. Install the gpu extra with its constraints "
        "(pip install -e '.[gpu]' -c constraints/gpu.txt) or `pip install nvidia-cublas-cu12`; `hardaug doctor` "
        "shows what is found."
    )
