"""No engine import hides inside a function outside `engine/cli/` (the CLI stays lazy so `hardaug --help` is
fast): a dependency belongs at the top of its module, where readers and tools see it. The exceptions are
listed here, each with why; tools/function_imports.py prints them all."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SIZES = "cycle: pipeline_load imports sizes' parsers and run_sizes drives pipelines (until it moves to pipeline_run)"

# (file, enclosing function, module) -> why it stays inside the function
ALLOWED = {
    ("engine/filters/__init__.py", "__getattr__", "engine.filters"): (
        "lazy re-export of filters.core (NumPy, SciPy) so `hardaug --help` needs only FilterConfig"
    ),
    ("engine/sizes.py", "run_sizes", "engine.pipeline_plan"): _SIZES,
    ("engine/sizes.py", "run_sizes", "engine.pipeline_run"): _SIZES,
    ("engine/augment/backtranslate.py", "check_device_here", "engine.cuda_libs"): (
        "loads CUDA 12 cuBLAS only when a back-translation runs on a GPU"
    ),
}


def _tool():
    spec = importlib.util.spec_from_file_location("function_imports", ROOT / "tools" / "function_imports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_engine_import_hides_in_a_function_outside_the_allow_list():
    found = _tool().scan(ROOT)
    new = [f"{path}:{line} {function}: {module}" for path, line, function, module in found
           if (path, function, module) not in ALLOWED]  # fmt: skip
    assert not new, (
        "engine imports inside functions: " + "; ".join(new) + ". Import at the top of the module; if that makes "
        "a cycle, fix its direction, or add the import to ALLOWED in tests/test_function_imports.py with the reason"
    )
    stale = sorted(set(ALLOWED) - {(path, function, module) for path, _, function, module in found})
    assert not stale, f"no longer inside a function, remove from ALLOWED: {stale}"


def test_the_scan_finds_imports_in_nested_functions_and_methods(tmp_path):
    (tmp_path / "engine" / "cli").mkdir(parents=True)
    (tmp_path / "engine" / "mod.py").write_text(
        "import engine.io\n"
        "from engine import jobs\n"
        "class A:\n"
        "    def m(self):\n"
        "        def inner():\n"
        "            from engine.labels import metadata\n"
        "        import engine.text, json\n"
        "        from json import dumps\n"
    )
    (tmp_path / "engine" / "cli" / "main.py").write_text("def run():\n    from engine.io import read_table\n")
    found = _tool().scan(tmp_path)  # module level and the CLI are not counted, nor imports of other packages
    assert found == [("engine/mod.py", 6, "m.inner", "engine.labels"), ("engine/mod.py", 7, "m", "engine.text")]
