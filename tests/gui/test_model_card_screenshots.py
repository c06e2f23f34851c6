"""The model card's screenshots are taken from the real window and worker, on the bundled model."""

from __future__ import annotations

import json

import pytest
from PySide6.QtGui import QImage

from ioi_desktop.core.paths import bundled_model_dir
from ioi_desktop.gui.tools import screenshots

pytestmark = pytest.mark.slow


def test_screenshots_of_the_bundled_model_show_its_circuit_heads(qapp, tmp_path):
    logged = []
    roles = bundled_model_dir() / "roles.json"
    before = roles.stat().st_mtime_ns
    shots = screenshots.take_screenshots(bundled_model_dir(), tmp_path, log=logged.append)
    assert roles.stat().st_mtime_ns == before, "an up-to-date roles.json was rewritten"
    heads = screenshots.circuit_heads(bundled_model_dir())
    names = [shot.file for shot in shots]
    expected = ["patching_head_z.png", "attribution.png", "logit_lens.png", "head_types.png"]
    expected += [f"attention_{kind}_L{layer}H{head}.png" for kind, (layer, head) in heads.items()]
    assert names == expected + ["window.png"]
    assert json.loads((tmp_path / "screenshots.json").read_text()) == [shot.__dict__ for shot in shots]
    for shot in shots:
        image = QImage(str(tmp_path / shot.file))
        assert image.width() >= 800 and image.height() >= 500, (shot.file, image.size())
        colours = {image.pixel(x, y) for x in range(0, image.width(), 11) for y in range(0, image.height(), 11)}
        assert len(colours) > 20, f"{shot.file} looks blank"
        assert shot.caption
    assert any(line.startswith("ran every analysis on ") for line in logged)


def test_circuit_heads_come_from_the_recorded_evaluation(tmp_path):
    report = {
        "circuit": {
            "dla": [[0.1, -2.5], [3.0, 0.0], [0.0, 0.2]],
            "attention": {
                "s2_to_s1": [[0.0, 0.5], [0.2, 0.45], [0.9, 0.0]],
                # L0H1 attends to a fixed position (S1 in one order only); L1H1 finds S1 in both.
                "s2_to_s1_by_order": {"ABBA": [[0.0, 0.98], [0.2, 0.4], [0.9, 0.0]], "BABA": [[0.0, 0.02], [0.2, 0.5], [0.9, 0.0]]},
            },
            "criteria": {"mover_heads": [[0, 1], [1, 0]], "name_mover_heads": []},
        }
    }
    (tmp_path / "eval.json").write_text(json.dumps(report))
    # The mover with the largest |DLA|; the duplicate head before the last layer (L2's 0.9 does not count),
    # by its weaker name order (L0H1's 0.5 mean is positional).
    assert screenshots.circuit_heads(tmp_path) == {"mover": (1, 0), "duplicate": (1, 1)}
