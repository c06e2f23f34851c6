"""packaging/build.py's gates for the Linux bundle's X11 libraries and the smoke line (issue 18).

The real build (PyInstaller, minutes) runs in CI through ``.ci/run``; these tests run the
same check functions on small fake bundles and fake apps.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from pathlib import Path

import pytest

from ioi_desktop.gui.platform_check import BUNDLED_X11_LIBRARIES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("ioi_packaging_build", REPO / "packaging" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bundle(tmp_path: Path, libraries) -> Path:
    bundle = tmp_path / "ioi-desktop"
    (bundle / "_internal").mkdir(parents=True)
    for name in libraries:
        (bundle / "_internal" / name).write_bytes(b"\x7fELF")
    return bundle


def test_a_bundle_without_the_x11_libraries_fails_naming_the_packages(build, tmp_path):
    carried = [name for name in BUNDLED_X11_LIBRARIES if name not in ("libxcb-icccm.so.4", "libxcb-keysyms.so.1")]
    with pytest.raises(build.BuildError) as error:
        build.check_bundled_x11(_bundle(tmp_path, carried))
    message = str(error.value)
    assert "(libxcb-icccm.so.4, libxcb-keysyms.so.1)" in message
    assert "sudo apt install libxcb-icccm4 libxcb-keysyms1" in message


def test_a_bundle_with_every_x11_library_passes(build, tmp_path):
    assert build.check_bundled_x11(_bundle(tmp_path, BUNDLED_X11_LIBRARIES)) == list(BUNDLED_X11_LIBRARIES)


def _fake_app(tmp_path: Path, platform_said: str) -> Path:
    """An executable that acts like ``ioi-desktop --smoke-test --screenshot FILE``."""
    pytest.importorskip("PIL")
    app = tmp_path / "fake-app"
    app.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "from PIL import Image\n"
        "image = Image.new('RGB', (64, 64))\n"
        "image.putdata([(i % 64 * 4, i // 64 * 4, 128) for i in range(64 * 64)])\n"
        "image.save(sys.argv[sys.argv.index('--screenshot') + 1])\n"
        f"print('smoke test passed: model fake, window shown after 0.10 s on the {platform_said} platform')\n"
    )
    app.chmod(app.stat().st_mode | stat.S_IXUSR)
    return app


@pytest.mark.skipif(os.name != "posix", reason="runs a script with a #! line")
def test_the_smoke_gate_wants_the_platform_it_asked_for(build, tmp_path, monkeypatch):
    monkeypatch.setattr(build, "ROOT", tmp_path)  # keep the copied screenshot out of the checkout
    bundle = _bundle(tmp_path, [])
    report = build.smoke(_fake_app(tmp_path, "offscreen"), bundle, "fake")
    assert report["platform"] == "offscreen"
    assert (tmp_path / "artifacts" / "screenshots" / "frozen-fake.png").is_file()
    with pytest.raises(build.BuildError, match="on the xcb platform"):
        build.smoke(_fake_app(tmp_path, "offscreen"), bundle, "fake", "xcb")
