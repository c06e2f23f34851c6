"""docs/results-format.md is generated from the Result/Options types and must not go stale."""

from __future__ import annotations

from ioi_desktop.core import results_docs


def test_results_format_doc_is_generated_from_the_types():
    committed = results_docs.DOC_PATH.read_text(encoding="utf-8")
    assert committed == results_docs.render(), (
        "docs/results-format.md is stale: run `python -m ioi_desktop.core.results_docs`")


def test_every_array_field_is_documented():
    from ioi_desktop.core.analyses import analysis_names, result_type

    text = results_docs.render()
    for name in analysis_names():
        for spec in result_type(name).array_specs():
            assert f"| `{spec.name}` |" in text
