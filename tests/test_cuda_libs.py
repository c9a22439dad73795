"""Loading the CUDA 12 cuBLAS of the nvidia-cublas-cu12 wheel for CTranslate2 (engine.cuda_libs).

The test builds a real folder laid out like the wheel (`<site>/nvidia/cublas/lib/libcublas.so.12` and
`libcublasLt.so.12`, real shared libraries with those SONAMEs, libcublas needing libcublasLt) and checks,
in a fresh process, what CTranslate2 relies on: after `load_cublas12()`, `dlopen("libcublas.so.12")` by
name succeeds and its functions run, without LD_LIBRARY_PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.cuda_libs import load_cublas12, loadable

ROOT = Path(__file__).resolve().parents[1]
VERSION = 120903

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the stand-in libraries")


def _build_wheel_layout(site: Path) -> Path:
    lib = site / "nvidia" / "cublas" / "lib"
    lib.mkdir(parents=True)
    (site / "nvidia" / "cublas" / "__init__.py").write_text("")
    (lib / "lt.c").write_text(f"int cublasLtGetVersion(void) {{ return {VERSION}; }}\n")
    (lib / "cublas.c").write_text(
        "extern int cublasLtGetVersion(void);\n"
        "int cublasGetVersion_v2(void *handle, int *version) { *version = cublasLtGetVersion(); return 0; }\n"
    )
    gcc = ["gcc", "-shared", "-fPIC"]
    subprocess.run([*gcc, "-Wl,-soname,libcublasLt.so.12", "-o", "libcublasLt.so.12", "lt.c"], cwd=lib, check=True)
    subprocess.run(
        [*gcc, "-Wl,-soname,libcublas.so.12", "-o", "libcublas.so.12", "cublas.c", "-L.", "-l:libcublasLt.so.12"],
        cwd=lib,
        check=True,
    )
    return lib


def _run(code: str, *, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in [ROOT, *pythonpath])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory) -> Path:
    if loadable("libcublas.so.12"):
        pytest.skip("this machine has a system libcublas.so.12: the wheel's libraries would never be needed")
    site = tmp_path_factory.mktemp("site")
    _build_wheel_layout(site)
    return site


def test_wheel_libraries_become_loadable_by_name(wheel_site):
    result = _run(
        f"""
        import ctypes
        from engine.cuda_libs import load_cublas12, loadable, wheel_lib_dirs

        assert not loadable("libcublas.so.12")  # what CTranslate2 meets without the helper
        lib = {str(wheel_site / "nvidia" / "cublas" / "lib")!r}
        assert [str(d) for d in wheel_lib_dirs()] == [lib], wheel_lib_dirs()
        assert load_cublas12() == lib
        cublas = ctypes.CDLL("libcublas.so.12")  # by name, as CTranslate2's dlopen asks for it
        version = ctypes.c_int()
        assert cublas.cublasGetVersion_v2(None, ctypes.byref(version)) == 0
        assert version.value == {VERSION}
        assert load_cublas12() == lib  # once per process
        # Local, not global: the CUDA 12 symbols cannot shadow torch's CUDA 13 cuBLAS
        assert not hasattr(ctypes.CDLL(None), "cublasGetVersion_v2")
        print("ok")
        """,
        pythonpath=[wheel_site],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_libcublas_alone_does_not_load_without_its_lt(wheel_site):
    """Why the order matters: libcublas.so.12 needs libcublasLt.so.12, which is not on the search path."""
    lib = wheel_site / "nvidia" / "cublas" / "lib"
    result = _run(f"import ctypes; ctypes.CDLL({str(lib / 'libcublas.so.12')!r})", pythonpath=[])
    assert result.returncode != 0
    assert "libcublasLt.so.12" in result.stderr


def test_no_cublas_anywhere_says_how_to_install_it(tmp_path):
    if loadable("libcublas.so.12"):
        pytest.skip("this machine has a system libcublas.so.12")
    from engine.errors import InputError

    with pytest.raises(InputError, match="nvidia-cublas-cu12"):
        load_cublas12((tmp_path,))
