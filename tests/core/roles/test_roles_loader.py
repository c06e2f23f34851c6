"""The head-roles loader: valid files load, every kind of malformed file is refused with a clear message."""

from __future__ import annotations

import json

import pytest

from ioi_desktop.core.errors import FileFormatError
from ioi_desktop.core.paths import bundled_model_dir, resource_path
from ioi_desktop.core.roles import load_roles, parse_roles, roles_path_for_model

VALID = {
    "format": "ioi-desktop/head-roles",
    "version": 1,
    "model": "gpt2-small",
    "source": "Wang et al. 2022",
    "roles": [
        {"layer": 9, "head": 9, "role": "name mover", "evidence": "DLA +2.99"},
        {"layer": 9, "head": 6, "role": "name mover"},
        {"layer": 10, "head": 7, "role": "negative name mover", "evidence": {"dla": -1.9}},
        {"layer": 9, "head": 9, "role": "backup name mover"},
    ],
    "legend": {"negative name mover": "writes against the IO", "name mover": "copies the IO"},
}


def test_valid_document_parses_with_legend_order_and_first_role_per_head():
    roles = parse_roles(VALID)
    assert roles.model == "gpt2-small" and len(roles.roles) == 4
    assert roles.role_names() == ["negative name mover", "name mover", "backup name mover"]
    assert roles.by_head()[(9, 9)].role == "name mover"
    assert json.loads(roles.by_head()[(10, 7)].evidence) == {"dla": -1.9}
    assert [(r.layer, r.head) for r in roles.within(10, 12).roles] == [(9, 9), (9, 6), (9, 9)]


@pytest.mark.parametrize(
    "change, words",
    [
        ({"format": "something-else"}, "format"),
        ({"version": 2}, "version"),
        ({"roles": "9.9"}, "'roles' list"),
        ({"roles": [{"layer": -1, "head": 0, "role": "x"}]}, "'layer'"),
        ({"roles": [{"layer": 0, "head": True, "role": "x"}]}, "'head'"),
        ({"roles": [{"layer": 0, "head": 1, "role": "  "}]}, "'role'"),
        ({"roles": [[0, 1]]}, "not an object"),
        ({"legend": ["name mover"]}, "'legend'"),
    ],
)
def test_malformed_documents_are_refused_with_the_reason(change, words):
    with pytest.raises(FileFormatError) as info:
        parse_roles({**VALID, **change}, "roles.json")
    assert words in info.value.message and "roles.json" in info.value.message
    assert "ioi-desktop/head-roles" in info.value.hint


def test_load_roles_reads_files_and_reports_bad_ones(tmp_path):
    good = tmp_path / "roles.json"
    good.write_text(json.dumps(VALID), encoding="utf-8")
    assert len(load_roles(good).roles) == 4
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(FileFormatError, match="not valid UTF-8 JSON"):
        load_roles(broken)
    with pytest.raises(FileFormatError, match="cannot be read"):
        load_roles(tmp_path / "missing.json")
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * 2_000_001)
    with pytest.raises(FileFormatError, match="too large"):
        load_roles(huge)


def test_roles_file_is_found_for_a_model_folder_and_nothing_for_unknown_models(tmp_path):
    (tmp_path / "roles.json").write_text(json.dumps(VALID), encoding="utf-8")
    assert roles_path_for_model("my-model", tmp_path) == tmp_path / "roles.json"
    assert roles_path_for_model("my-model", tmp_path / "elsewhere") is None


def test_shipped_roles_files_are_valid():
    shipped = [bundled_model_dir() / "roles.json", resource_path("roles", "gpt2-small.json")]
    present = [path for path in shipped if path.is_file()]
    if not present:
        pytest.skip("no roles file shipped yet (resources/models/ioi-mini/roles.json, resources/roles/gpt2-small.json)")
    for path in present:
        roles = load_roles(path)
        assert roles.roles, f"{path} lists no heads"
    if resource_path("roles", "gpt2-small.json").is_file():
        assert roles_path_for_model("gpt2") == resource_path("roles", "gpt2-small.json")
        paper = load_roles(resource_path("roles", "gpt2-small.json")).by_head()
        assert paper[(9, 9)].role.lower().startswith("name mover")
