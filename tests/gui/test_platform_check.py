"""The Linux start-up check for Qt's X11 (xcb) plugin libraries (issue 18).

The resolver is faked in most tests (which sonames the loader "cannot find"), so
they run on any machine; one test checks the real ldd-based resolver against the
real dynamic loader on this machine's PySide6 plugin.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ioi_desktop.gui import platform_check
from ioi_desktop.gui.platform_check import (
    BUNDLED_X11_LIBRARIES,
    check_platform_libraries,
    distribution_family,
    parse_ldd,
)

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
UBUNTU = 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n'
FEDORA = 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\n'
ARCH = "NAME=\"Arch Linux\"\nID=arch\n"

LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd5e9f2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f3887a00000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f3887bab000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f3887b18000)
\tlibxcb-icccm.so.4 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007f3887d65000)
"""


@pytest.fixture
def plugins(tmp_path) -> list[Path]:
    """A PySide6-like platforms folder with an xcb and a wayland plugin (contents unused)."""
    folder = tmp_path / "PySide6" / "Qt" / "plugins" / "platforms"
    folder.mkdir(parents=True)
    for name in ("libqxcb.so", "libqwayland.so", "libqoffscreen.so"):
        (folder / name).write_bytes(b"\x7fELF")
    return [folder]


def fake_resolver(missing: dict[str, list[str]], calls: list[str] | None = None):
    """Reports ``missing[plugin file name]`` (default: nothing) as the unresolved sonames."""

    def resolve(plugin: Path):
        if calls is not None:
            calls.append(plugin.name)
        return list(missing.get(plugin.name, []))

    return resolve


def never_called(plugin: Path):
    raise AssertionError(f"the check should have been skipped, but it resolved {plugin}")


def test_parse_ldd_keeps_found_paths_and_marks_missing_once():
    libs = parse_ldd(LDD_OUTPUT)
    assert libs["libxcb-icccm.so.4"] is None and libs["libxcb-keysyms.so.1"] is None
    assert libs["libxcb-cursor.so.0"] == "/lib/x86_64-linux-gnu/libxcb-cursor.so.0"
    assert [name for name, path in libs.items() if path is None] == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert "linux-vdso.so.1" not in libs  # no "=>": not a library the loader searches for


def test_missing_libraries_give_one_message_with_the_apt_command(plugins):
    env = {"DISPLAY": ":0"}
    missing = ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    message = check_platform_libraries(env, "linux", plugins, fake_resolver({"libqxcb.so": missing}), DEBIAN)
    assert message is not None and "\n" not in message
    assert "libxcb-cursor.so.0, libxcb-icccm.so.4, libxcb-keysyms.so.1" in message
    assert "sudo apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1," in message
    assert "dnf" not in message
    assert env == {"DISPLAY": ":0"}  # nothing chosen on the user's behalf


def test_ubuntu_counts_as_debian_and_fedora_gets_dnf_names(plugins):
    resolve = fake_resolver({"libqxcb.so": ["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-xkb.so.1",
                                            "libxkbcommon-x11.so.0"]})
    ubuntu = check_platform_libraries({}, "linux", plugins, resolve, UBUNTU)
    assert "sudo apt install libxcb-icccm4 libxcb-keysyms1 libxcb-xkb1 libxkbcommon-x11-0," in ubuntu
    fedora = check_platform_libraries({}, "linux", plugins, resolve, FEDORA)
    assert "sudo dnf install xcb-util-wm xcb-util-keysyms libxcb libxkbcommon-x11," in fedora
    assert "apt" not in fedora


def test_unknown_distribution_gets_both_commands_and_unknown_sonames_are_named(plugins):
    resolve = fake_resolver({"libqxcb.so": ["libxcb-icccm.so.4", "libfrobnicate.so.7"]})
    message = check_platform_libraries({}, "linux", plugins, resolve, ARCH)
    assert "(libxcb-icccm.so.4, libfrobnicate.so.7)" in message
    assert "Debian/Ubuntu: sudo apt install libxcb-icccm4;" in message
    assert "Fedora: sudo dnf install xcb-util-wm)" in message
    only_unknown = check_platform_libraries({}, "linux", plugins, fake_resolver({"libqxcb.so": ["libfoo.so.1"]}), DEBIAN)
    assert "a library that this system lacks (libfoo.so.1)" in only_unknown
    assert "sudo" not in only_unknown and "packages of your distribution that provide it," in only_unknown
    one = check_platform_libraries({}, "linux", plugins, fake_resolver({"libqxcb.so": ["libxcb-cursor.so.0"]}), DEBIAN)
    assert one.endswith("a library that this system lacks (libxcb-cursor.so.0); "
                        "install it with: sudo apt install libxcb-cursor0, then start ioi-desktop again.")


def test_all_libraries_present_prints_nothing(plugins):
    calls: list[str] = []
    assert check_platform_libraries({}, "linux", plugins, fake_resolver({}, calls), DEBIAN) is None
    assert calls == ["libqxcb.so"]  # the check did run
    assert check_platform_libraries({"QT_QPA_PLATFORM": "xcb"}, "linux", plugins, fake_resolver({}), DEBIAN) is None


@pytest.mark.parametrize("platform_name", ["offscreen", "minimal", "wayland", "vnc:size=800x600", "eglfs", "wayland;offscreen"])
def test_platforms_other_than_xcb_skip_the_check(plugins, platform_name):
    env = {"QT_QPA_PLATFORM": platform_name}
    assert check_platform_libraries(env, "linux", plugins, never_called, DEBIAN) is None
    assert env == {"QT_QPA_PLATFORM": platform_name}


def test_other_systems_and_unfindable_plugins_skip_the_check(plugins, tmp_path):
    for system in ("darwin", "win32"):
        assert check_platform_libraries({}, system, plugins, never_called, DEBIAN) is None
    assert check_platform_libraries({}, "linux", [tmp_path / "nowhere"], never_called, DEBIAN) is None
    # A resolver that cannot tell (no ldd): let Qt report whatever happens.
    assert check_platform_libraries({}, "linux", plugins, lambda plugin: None, DEBIAN) is None


def test_wayland_session_falls_back_to_the_wayland_plugin(plugins):
    env = {"WAYLAND_DISPLAY": "wayland-0"}
    calls: list[str] = []
    resolve = fake_resolver({"libqxcb.so": ["libxcb-cursor.so.0"]}, calls)
    assert check_platform_libraries(env, "linux", plugins, resolve, DEBIAN) is None
    assert env["QT_QPA_PLATFORM"] == "wayland"
    assert calls == ["libqxcb.so", "libqwayland.so"]
    # 'wayland;xcb' (Wayland first) also ends on Wayland.
    env = {"WAYLAND_DISPLAY": "wayland-0", "QT_QPA_PLATFORM": "wayland;xcb"}
    assert check_platform_libraries(env, "linux", plugins, resolve, DEBIAN) is None
    assert env["QT_QPA_PLATFORM"] == "wayland"


def test_no_wayland_fallback_when_it_cannot_work_or_xcb_was_asked_for(plugins, tmp_path):
    xcb_missing = {"libqxcb.so": ["libxcb-cursor.so.0"]}
    # No Wayland session.
    env: dict[str, str] = {"DISPLAY": ":0"}
    assert "libxcb-cursor0" in check_platform_libraries(env, "linux", plugins, fake_resolver(xcb_missing), DEBIAN)
    assert "QT_QPA_PLATFORM" not in env
    # Wayland session, but the wayland plugin misses libraries too.
    env = {"WAYLAND_DISPLAY": "wayland-0"}
    both = {**xcb_missing, "libqwayland.so": ["libwayland-cursor.so.0"]}
    assert "libxcb-cursor.so.0" in check_platform_libraries(env, "linux", plugins, fake_resolver(both), DEBIAN)
    assert "QT_QPA_PLATFORM" not in env
    # Wayland session, but no wayland plugin in this PySide6.
    (plugins[0] / "libqwayland.so").unlink()
    env = {"WAYLAND_DISPLAY": "wayland-0"}
    assert check_platform_libraries(env, "linux", plugins, fake_resolver(xcb_missing), DEBIAN) is not None
    # The user asked for xcb: tell them what is missing instead of switching.
    (plugins[0] / "libqwayland.so").write_bytes(b"\x7fELF")
    env = {"WAYLAND_DISPLAY": "wayland-0", "QT_QPA_PLATFORM": "xcb"}
    assert check_platform_libraries(env, "linux", plugins, fake_resolver(xcb_missing), DEBIAN) is not None
    assert env["QT_QPA_PLATFORM"] == "xcb"


def test_distribution_family_from_os_release():
    assert distribution_family(DEBIAN) == "debian"
    assert distribution_family(UBUNTU) == "debian"
    assert distribution_family('ID="linuxmint"\nID_LIKE="ubuntu debian"\n') == "debian"
    assert distribution_family(FEDORA) == "fedora"
    assert distribution_family('ID="rocky"\nID_LIKE="rhel centos fedora"\n') == "fedora"
    assert distribution_family(ARCH) is None


def test_launch_exits_2_with_the_message_before_creating_the_application(monkeypatch, capsys):
    from ioi_desktop import launch as launch_module
    from ioi_desktop.gui import app as app_module

    monkeypatch.setattr(platform_check, "check_platform_libraries", lambda: "ioi-desktop: cannot open a window: X.")

    def no_application(*args, **kwargs):
        raise AssertionError("the QApplication must not be created when the platform check fails")

    monkeypatch.setattr(app_module, "create_application", no_application)
    assert launch_module.launch([]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == "ioi-desktop: cannot open a window: X."
    assert captured.out == ""


def test_importing_the_check_imports_neither_qt_nor_torch():
    code = ("import sys, ioi_desktop.gui.platform_check as c; c.check_platform_libraries(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6', 'shiboken6')))")
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only: ldd and Qt's xcb plugin")
def test_real_ldd_verdict_matches_the_dynamic_loader():
    """On this machine: every X11 library ldd lists for the real xcb plugin is missing iff dlopen fails."""
    plugins = [d / "libqxcb.so" for d in platform_check.qt_plugin_dirs() if (d / "libqxcb.so").is_file()]
    if not plugins or platform_check.ldd(plugins[0]) is None:
        pytest.skip("no PySide6 xcb plugin or no ldd here")
    plugin = plugins[0]
    libs = parse_ldd(platform_check.ldd(plugin))
    assert "libxcb.so.1" in libs  # the plugin really was read
    checked = [name for name in libs if name in BUNDLED_X11_LIBRARIES]
    assert checked, libs
    for soname in checked:
        try:
            ctypes.CDLL(soname)
            loads = True
        except OSError:
            loads = False
        assert loads == (libs[soname] is not None), soname
    assert platform_check.default_resolver(plugin) == [name for name, path in libs.items() if path is None]
