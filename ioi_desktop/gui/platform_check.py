"""Before the QApplication exists on Linux: can Qt's X11 (xcb) platform plugin load?

Qt's xcb plugin links a dozen X11 libraries that a fresh desktop or a minimal
container may lack (``libxcb-cursor.so.0``, ``libxcb-icccm.so.4``,
``libxcb-keysyms.so.1``, ...). Without them Qt aborts with "no Qt platform
plugin could be initialized. Reinstalling the application may fix this
problem", which names at most one library and the wrong fix. This module asks
the dynamic loader first (``ldd`` on the plugin, which lists every transitive
dependency it cannot find, honouring the plugin's RUNPATH and the process's
``LD_LIBRARY_PATH`` exactly like the real load) and, when some are missing,
returns ONE message naming them and the command that installs them.

Conventions: libraries are named by their soname (``libxcb-icccm.so.4``);
packages by the distribution's binary package name (Debian/Ubuntu: apt,
Fedora/RHEL: dnf). Nothing here imports Qt or torch; the check runs one
``ldd`` process (tens of milliseconds) and is skipped when the platform is not
xcb (``QT_QPA_PLATFORM=offscreen``, ``minimal``, ``wayland``, ...).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path

# soname -> (Debian/Ubuntu package, Fedora package). The first block is what the frozen
# Linux bundle carries (build_installer.spec) because minimal desktops and containers lack it;
# the rest are base libraries every X11 desktop has, listed so the message can name them.
BUNDLED_X11_LIBRARIES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
}
KNOWN_PACKAGES: dict[str, tuple[str, str]] = {
    **BUNDLED_X11_LIBRARIES,
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libwayland-client.so.0": ("libwayland-client0", "libwayland-client"),
    "libwayland-cursor.so.0": ("libwayland-cursor0", "libwayland-cursor"),
}
# Values of QT_QPA_PLATFORM that do not use the xcb plugin first (Qt takes a ';'-separated
# list and tries it in order; 'name:options' passes options to the plugin).
_PLATFORM_SEPARATOR = ";"
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$")
_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+(\S+)\s+\(0x[0-9a-fA-F]+\)\s*$")

Resolver = Callable[[Path], "list[str] | None"]


def parse_ldd(output: str) -> dict[str, str | None]:
    """``ldd`` output -> {soname: resolved path, or None when "not found"}."""
    libraries: dict[str, str | None] = {}
    for line in output.splitlines():
        if match := _NOT_FOUND.match(line):
            libraries[match.group(1)] = None
        elif match := _FOUND.match(line):
            libraries.setdefault(match.group(1), match.group(2))
    return libraries


def ldd(binary: Path, environ: Mapping[str, str] | None = None) -> str | None:
    """The output of ``ldd binary`` (stdout and stderr), or None when ldd cannot run."""
    tool = shutil.which("ldd")
    if tool is None:
        return None
    try:
        result = subprocess.run([tool, str(binary)], capture_output=True, text=True, timeout=20,
                                env=None if environ is None else dict(environ))
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout + result.stderr


def missing_with_ldd(binary: Path) -> list[str] | None:
    """Sonames ``binary`` needs that the loader cannot find; None when that cannot be told."""
    output = ldd(binary)
    if output is None or "=>" not in output:
        return None  # no ldd (musl, stripped image) or not a dynamic library: let Qt speak
    return [name for name, path in parse_ldd(output).items() if path is None]


def missing_with_dlopen(binary: Path, candidates: tuple[str, ...] = tuple(BUNDLED_X11_LIBRARIES)) -> list[str]:
    """Without ldd: which of the known X11 libraries the loader cannot open by soname."""
    import ctypes

    missing = []
    for soname in candidates:
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing.append(soname)
    return missing


def default_resolver(binary: Path) -> list[str] | None:
    found = missing_with_ldd(binary)
    if found is None and shutil.which("ldd") is None:
        return missing_with_dlopen(binary)
    return found


def qt_plugin_dirs() -> list[Path]:
    """Where PySide6's platform plugins may be: the wheel's or the frozen bundle's folder."""
    roots: list[Path] = []
    try:
        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        roots += [Path(location) for location in (spec.submodule_search_locations or [])]
        if spec.origin:
            roots.append(Path(spec.origin).parent)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        roots.append(Path(bundle) / "PySide6")
    dirs = []
    for root in roots:
        for candidate in (root / "Qt" / "plugins" / "platforms", root / "plugins" / "platforms"):
            if candidate.is_dir() and candidate not in dirs:
                dirs.append(candidate)
    return dirs


def _find_plugin(names: tuple[str, ...], dirs: list[Path]) -> Path | None:
    for folder in dirs:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def distribution_family(os_release: str | None = None) -> str | None:
    """'debian', 'fedora' or None, from /etc/os-release (ID and ID_LIKE)."""
    if os_release is None:
        try:
            os_release = Path("/etc/os-release").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    ids: list[str] = []
    for line in os_release.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("ID", "ID_LIKE"):
            ids += value.strip().strip("\"'").lower().split()
    if any(i in ("debian", "ubuntu") for i in ids):
        return "debian"
    if any(i in ("fedora", "rhel", "centos") for i in ids):
        return "fedora"
    return None


def _packages(missing: list[str], column: int) -> list[str]:
    packages: list[str] = []
    for soname in missing:
        if soname in KNOWN_PACKAGES and KNOWN_PACKAGES[soname][column] not in packages:
            packages.append(KNOWN_PACKAGES[soname][column])
    return packages


def install_hint(missing: list[str], family: str | None) -> str:
    """How to install the packages that provide ``missing`` on this distribution."""
    them = "it" if len(missing) == 1 else "them"
    apt = "sudo apt install " + " ".join(_packages(missing, 0))
    dnf = "sudo dnf install " + " ".join(_packages(missing, 1))
    if not _packages(missing, 0):
        return f"install the packages of your distribution that provide {them}"
    if family == "debian":
        return f"install {them} with: {apt}"
    if family == "fedora":
        return f"install {them} with: {dnf}"
    return f"install {them} with your package manager (Debian/Ubuntu: {apt}; Fedora: {dnf})"


def missing_message(missing: list[str], family: str | None) -> str:
    """The one message for a missing-library start: what is missing and the command that fixes it."""
    return (
        "ioi-desktop: cannot open a window: Qt's X11 (xcb) platform plugin needs "
        f"{'a library' if len(missing) == 1 else 'libraries'} that this system lacks "
        f"({', '.join(missing)}); {install_hint(missing, family)}, then start ioi-desktop again."
    )


def _platforms(environ: Mapping[str, str]) -> list[str]:
    value = environ.get("QT_QPA_PLATFORM", "")
    return [entry.split(":", 1)[0].strip().lower() for entry in value.split(_PLATFORM_SEPARATOR) if entry.strip()]


def check_platform_libraries(
    environ: MutableMapping[str, str] | None = None,
    platform: str = sys.platform,
    plugin_dirs: list[Path] | None = None,
    resolve: Resolver = default_resolver,
    os_release: str | None = None,
) -> str | None:
    """None when Qt can start (possibly after choosing Wayland), else the message to print.

    Skipped (None) off Linux, when ``QT_QPA_PLATFORM`` names only non-xcb platforms,
    when the xcb plugin is not found, or when its libraries cannot be resolved (no ldd).
    When libraries are missing, ``WAYLAND_DISPLAY`` is set, Qt's wayland plugin resolves
    and the user did not ask for xcb explicitly, sets ``QT_QPA_PLATFORM=wayland`` in
    ``environ`` and returns None.
    """
    environ = os.environ if environ is None else environ
    if not platform.startswith("linux"):
        return None
    requested = _platforms(environ)
    if requested and "xcb" not in requested:
        return None
    dirs = qt_plugin_dirs() if plugin_dirs is None else plugin_dirs
    xcb = _find_plugin(("libqxcb.so",), dirs)
    if xcb is None:
        return None
    missing = resolve(xcb)
    if not missing:
        return None
    if environ.get("WAYLAND_DISPLAY") and requested[:1] != ["xcb"]:
        wayland = _find_plugin(("libqwayland.so", "libqwayland-generic.so"), dirs)
        if wayland is not None and resolve(wayland) == []:
            environ["QT_QPA_PLATFORM"] = "wayland"
            return None
    return missing_message(missing, distribution_family(os_release))
