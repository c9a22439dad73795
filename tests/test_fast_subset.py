"""`make test-fast` (`pytest -m "not slow"`) keeps at least one test of every module, so a quick run before a
commit still touches every area; `make test` and CI run everything."""

from __future__ import annotations


def test_every_module_keeps_a_test_not_marked_slow(every_test):
    only_slow = sorted(module for module, slow in every_test.items() if all(slow))
    assert not only_slow, (
        f"every test of {', '.join(only_slow)} is marked slow: leave its cheapest test unmarked so "
        "`make test-fast` still runs the module"
    )
