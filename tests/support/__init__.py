"""Helpers shared by the tests and the benchmarks: tiny models, prompt sets, reference computations.

Import as ``from tests.support.tiny_models import ...``. This works under pytest
(the repository root is on ``sys.path`` through ``pythonpath`` in
pyproject.toml) and for the benchmarks run from the repository root as
modules (``python -m benchmarks.bench_patching``). Nothing here is a test.
"""
