"""Test hygiene, checked on the test sources: no clocks and no private attributes.

- No test reads a clock (``time.perf_counter``, ``time.time``, ``time.monotonic``,
  ...): a duration depends on how loaded the machine is, so timings live in
  ``benchmarks/`` and tests assert behaviour.
- No test reaches into private attributes (``obj._name``, ``from m import _name``,
  ``monkeypatch.setattr(m, "_name", ...)``): tests go through the public
  interface, so internals can change without rewriting tests. ``ALLOWED`` lists
  the remaining exceptions with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCKS = {"perf_counter", "perf_counter_ns", "time", "time_ns", "monotonic", "monotonic_ns", "process_time"}
# Underscore names that are public API (namedtuple methods).
PUBLIC_UNDERSCORE = {"_replace", "_asdict", "_fields", "_make"}
# (file name, private name): the size limits of the file readers, lowered to test them with small files.
ALLOWED = {
    ("test_file_readers.py", "_MAX_UNPACKED_BYTES"),
    ("test_file_readers.py", "_MAX_JSON_BYTES"),
}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in PUBLIC_UNDERSCORE


def findings(source: str, where: str) -> list[str]:
    """What ``source`` (the file ``where``) does that is forbidden, as ``where:line: what``."""
    name_of_file = Path(where).name
    found = []

    def report(node: ast.AST, what: str, name: str | None = None) -> None:
        if name is None or (name_of_file, name) not in ALLOWED:
            found.append(f"{where}:{node.lineno}: {what}")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "time" and node.attr in CLOCKS:
                report(node, f"reads a clock (time.{node.attr})")
            elif _private(node.attr) and ast.unparse(node.value) not in ("self", "cls"):
                report(node, f"private attribute {ast.unparse(node)}", node.attr)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if node.module == "time" and alias.name in CLOCKS:
                    report(node, f"reads a clock (from time import {alias.name})")
                elif _private(alias.name):
                    report(node, f"imports private {node.module}.{alias.name}", alias.name)
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("setattr"):
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _private(arg.value):
                    report(node, f"patches private {arg.value}", arg.value)
    return found


def test_tests_read_no_clock_and_no_private_attribute():
    problems = [line for path in sorted(TESTS.rglob("*.py"))
                for line in findings(path.read_text(encoding="utf-8"), str(path.relative_to(TESTS)))]
    assert problems == [], "\n".join(problems)


def test_the_check_finds_what_it_forbids():
    sample = (
        "import time\n"
        "from time import monotonic\n"
        "from m import _hidden\n"
        "def test_x(worker, monkeypatch, point):\n"
        "    began = time.perf_counter()\n"
        "    worker._runner.clear_cache()\n"
        "    monkeypatch.setattr(worker, '_limit', 1)\n"
        "    return self._fine, point._replace(x=1), worker.__dict__\n"
    )
    assert sorted(findings(sample, "sample.py")) == [
        "sample.py:2: reads a clock (from time import monotonic)",
        "sample.py:3: imports private m._hidden",
        "sample.py:5: reads a clock (time.perf_counter)",
        "sample.py:6: private attribute worker._runner",
        "sample.py:7: patches private _limit",
    ]
