"""Count the `from engine ...` / `import engine ...` statements that sit inside functions, outside `engine/cli/`.

An import inside a function hides a dependency from tools (and from a reader of the module's head); the CLI
keeps its imports lazy on purpose so `hardaug --help` stays fast. tests/test_function_imports.py fails on any
such import that its allow-list does not name.

    python tools/function_imports.py          # the count, then one line per import: path:line function module
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The CLI imports its commands lazily so `hardaug --help` loads no engine.
EXEMPT = ("engine/cli/",)


def engine_module(node: ast.AST) -> str | None:
    """The engine module an import statement names, or None when it imports nothing from engine."""
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [node.module]
    elif isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        return None
    hits = [name for name in names if name == "engine" or name.startswith("engine.")]
    return ", ".join(hits) or None


def function_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, enclosing function, module) of every engine import inside a function of one file."""
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, f"{function}.{child.name}" if function else child.name)
                continue
            module = engine_module(child)
            if module and function:
                found.append((child.lineno, function, module))
            visit(child, function)

    visit(ast.parse(path.read_text(), str(path)), None)
    return found


def scan(root: Path = ROOT) -> list[tuple[str, int, str, str]]:
    """(path relative to root, line, function, module) for every in-function engine import outside the CLI."""
    rows = []
    for path in sorted((root / "engine").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(EXEMPT):
            continue
        rows.extend((rel, line, function, module) for line, function, module in function_imports(path))
    return rows


def main() -> int:
    rows = scan()
    print(f"{len(rows)} engine imports inside functions outside engine/cli/")
    for rel, line, function, module in rows:
        print(f"{rel}:{line} {function} {module}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
