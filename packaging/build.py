"""Build the frozen app, smoke-test it, and make the Linux tarball.

    python packaging/build.py [--skip-build] [--out dist]

Steps (each prints its duration; a JSON report goes to dist/build-report.json):
1. ``pyinstaller --noconfirm --clean build_installer.spec`` -> dist/ioi-desktop/;
2. run the frozen binary with ``--smoke-test --screenshot`` offscreen (QT_QPA_PLATFORM=offscreen),
   with an empty HOME, and check: exit 0, a non-blank screenshot, nothing written into the bundle;
3. (Linux) dist/ioi-desktop-<version>-linux-<arch>.tar.gz with the bundle, a launcher script,
   a .desktop file (checked with desktop-file-validate when installed) and the icon;
4. (Linux) unpack the tarball into a fresh folder and smoke-test it again through the launcher;
5. (Linux) check the bundle carries the X11/xcb libraries Qt's xcb plugin needs, then run the
   unpacked app under ``xvfb-run`` on the real xcb platform (QT_QPA_PLATFORM=xcb) with a minimal
   environment whose LD_LIBRARY_PATH names only the bundle, and with those libraries hidden from
   the loader (a private mount namespace whose overlay whiteouts remove them from the system
   library folders; where namespaces are not allowed, only the ldd check below proves it). ``ldd``
   on the bundled plugin, in that environment, must resolve every one of them inside the bundle.
   Without xvfb-run this step is skipped with a message, unless IOI_DESKTOP_XCB_SMOKE=required
   (.ci/run sets it after installing the Debian packages), which makes it fail.

CI runs this after the tests; set IOI_DESKTOP_SKIP_PACKAGING=1 to skip it there.
On Windows and macOS, steps 1-2 work the same; then use packaging/windows/ioi-desktop.iss or
packaging/macos/make_dmg.sh (see README, "Installers").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ioi_desktop import __version__  # noqa: E402

SMOKE_TIMEOUT_S = 600
XVFB_SCREEN = "1600x1000x24"


class BuildError(RuntimeError):
    pass


def _step(name: str):
    print(f"== {name}", flush=True)
    return time.perf_counter()


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def build(out: Path) -> float:
    started = _step("PyInstaller build")
    if shutil.which("pyinstaller") is None and not (Path(sys.executable).parent / "pyinstaller").exists():
        raise BuildError("PyInstaller is not installed: run 'pip install -e \".[packaging]\"' first.")
    pyinstaller = shutil.which("pyinstaller") or str(Path(sys.executable).parent / "pyinstaller")
    work = Path(tempfile.mkdtemp(prefix="ioi-pyi-work-"))
    try:
        result = subprocess.run(
            [pyinstaller, "--noconfirm", "--clean", "--log-level", "WARN", "--distpath", str(out),
             "--workpath", str(work), str(ROOT / "build_installer.spec")],
            cwd=ROOT,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if result.returncode != 0:
        raise BuildError(f"PyInstaller failed with exit code {result.returncode}.")
    return time.perf_counter() - started


def _screenshot_is_blank(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as image:
        colors = image.convert("RGB").getcolors(maxcolors=1_000_000)
    return colors is None or len(colors) < 20


def _minimal_env(home: str, platform_name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "QT_QPA_PLATFORM": platform_name,
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        **(extra or {}),
    }


def smoke(executable: Path, bundle: Path, label: str, platform_name: str = "offscreen",
          prefix: list[str] | None = None, extra_env: dict[str, str] | None = None) -> dict:
    """Run ``executable --smoke-test --screenshot`` with an empty HOME on ``platform_name``.

    ``prefix`` goes before the executable (xvfb-run, the namespace that hides libraries).
    """
    started = _step(f"smoke test ({label})")
    before = _snapshot(bundle)
    with tempfile.TemporaryDirectory(prefix="ioi-smoke-home-") as home:
        shot = Path(home) / "smoke.png"
        env = _minimal_env(home, platform_name, extra_env)
        result = subprocess.run(
            [*(prefix or []), str(executable), "--smoke-test", "--screenshot", str(shot)],
            env=env, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
        )
        print(result.stdout.strip())
        if result.returncode != 0:
            raise BuildError(f"The frozen app's smoke test failed ({label}, exit {result.returncode}): "
                             f"{(result.stderr.strip() or result.stdout.strip())[-2000:]}")
        summary = (result.stdout.strip().splitlines() or [""])[-1]
        if not summary.startswith("smoke test passed") or f"on the {platform_name} platform" not in summary:
            raise BuildError(f"The frozen app's smoke line does not say it passed on the {platform_name} "
                             f"platform ({label}): {summary!r}")
        if not shot.is_file() or _screenshot_is_blank(shot):
            raise BuildError(f"The frozen app's screenshot is missing or blank ({label}).")
        kept = ROOT / "artifacts" / "screenshots" / f"frozen-{label}.png"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, kept)
    changed = sorted(set(_snapshot(bundle).items()) ^ set(before.items()))
    if changed:
        raise BuildError(f"The frozen app wrote into its own folder: {[name for name, _ in changed][:5]}")
    return {"seconds": round(time.perf_counter() - started, 1), "summary": result.stdout.strip().splitlines()[-1:],
            "screenshot": str(kept), "platform": platform_name}


def _internal_dir(bundle: Path) -> Path:
    """Where PyInstaller put the libraries (``_internal`` since PyInstaller 6)."""
    return bundle / "_internal" if (bundle / "_internal").is_dir() else bundle


def _bundled_plugin(bundle: Path) -> Path:
    for plugin in sorted(_internal_dir(bundle).rglob("platforms/libqxcb.so")):
        return plugin
    raise BuildError(f"The bundle {bundle} has no Qt xcb platform plugin (platforms/libqxcb.so).")


def check_bundled_x11(bundle: Path) -> list[str]:
    """The bundle carries every library of BUNDLED_X11_LIBRARIES at its top level; their names."""
    from ioi_desktop.gui.platform_check import BUNDLED_X11_LIBRARIES

    internal = _internal_dir(bundle)
    absent = [name for name in BUNDLED_X11_LIBRARIES if not (internal / name).is_file()]
    if absent:
        packages = " ".join(dict.fromkeys(BUNDLED_X11_LIBRARIES[name][0] for name in absent))
        raise BuildError(f"The bundle lacks X11 libraries Qt's xcb plugin needs ({', '.join(absent)}) because this "
                         f"build machine lacks them: install them (Debian/Ubuntu: sudo apt install {packages}) "
                         "and build again.")
    return list(BUNDLED_X11_LIBRARIES)


def _system_copies(names: list[str]) -> dict[Path, list[str]]:
    """{system library folder: file names} of ``names`` as this machine's loader finds them (with
    their versioned files and dev links), from ldd on the source tree's PySide6 xcb plugin."""
    from ioi_desktop.gui.platform_check import ldd, parse_ldd, qt_plugin_dirs

    plugins = [d / "libqxcb.so" for d in qt_plugin_dirs() if (d / "libqxcb.so").is_file()]
    found = parse_ldd((ldd(plugins[0]) if plugins else None) or "")
    folders: dict[Path, list[str]] = {}
    for name in names:
        if not found.get(name):
            continue
        folder = Path(found[name]).resolve().parent
        stem = name.split(".so", 1)[0] + ".so"
        for path in sorted(folder.glob(stem + "*")):
            if path.name == stem or path.name.startswith(stem + "."):
                folders.setdefault(folder, []).append(path.name)
    return folders


_HIDE_SCRIPT = """set -e
scratch=$(mktemp -d "$1/run.XXXXXX"); shift
{mounts}
for f in {hidden}; do [ ! -e "$f" ] || {{ echo "still visible: $f" >&2; exit 97; }}; done
exec "$@"
"""


def hiding_prefix(names: list[str], scratch: Path) -> tuple[list[str], list[str]]:
    """A command prefix that runs its command with the system copies of ``names`` hidden.

    A private mount namespace (``unshare -m``; ``-r -m`` when not root) overlays each system
    library folder with whiteouts of those files, so the loader finds them only in the bundle.
    Returns (prefix, hidden paths); ([], []) when this machine does not allow it (with a message).
    """
    unshare = shutil.which("unshare")
    folders = _system_copies(names)
    if unshare is None or not folders:
        print("not hiding the system X11 libraries: " + ("unshare is not installed" if unshare is None else
                                                        "none of them are installed here"))
        return [], []
    mounts, hidden = [], []
    for i, (folder, files) in enumerate(folders.items()):
        upper, work = f'"$scratch/{i}/upper"', f'"$scratch/{i}/work"'
        mounts.append(f"mkdir -p {upper} {work}")
        mounts += [f"mknod {upper}/{name} c 0 0" for name in files]
        mounts.append(f"mount -t overlay overlay -o lowerdir={folder},upperdir=$scratch/{i}/upper,"
                      f"workdir=$scratch/{i}/work {folder}")
        hidden += [str(folder / name) for name in files]
    script = _HIDE_SCRIPT.format(mounts="\n".join(mounts), hidden=" ".join(hidden))
    prefix = [unshare, "-m"] if os.geteuid() == 0 else [unshare, "-r", "-m"]
    prefix += ["sh", "-c", script, "hide-x11-libs", str(scratch)]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        print(f"not hiding the system X11 libraries: this machine does not allow a private mount namespace "
              f"with an overlay ({probe.stderr.strip()[-300:]})")
        return [], []
    return prefix, hidden


def check_resolution_in_bundle(bundle: Path, names: list[str], prefix: list[str]) -> dict[str, str]:
    """ldd on the bundled xcb plugin, in the smoke test's environment: all resolve, ``names`` inside the bundle."""
    from ioi_desktop.gui.platform_check import parse_ldd

    plugin = _bundled_plugin(bundle)
    internal = _internal_dir(bundle)
    env = _minimal_env(str(bundle), "xcb", {"LD_LIBRARY_PATH": str(internal)})
    result = subprocess.run([*prefix, "ldd", str(plugin)], env=env, capture_output=True, text=True, timeout=60)
    found = parse_ldd(result.stdout + result.stderr)
    if not found:
        raise BuildError(f"ldd could not read the bundled xcb plugin {plugin}: {result.stderr.strip()[-500:]}")
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise BuildError(f"The bundled xcb plugin cannot find {', '.join(missing)} with the system X11 libraries hidden.")
    outside = {name: found[name] for name in names if name in found and not Path(found[name]).resolve().is_relative_to(bundle.resolve())}
    if outside:
        raise BuildError(f"The bundled xcb plugin would load these from outside the bundle: {outside}")
    return {name: str(Path(found[name]).resolve().relative_to(bundle.resolve())) for name in names if name in found}


def smoke_xcb(launcher: Path, bundle: Path) -> dict:
    """The unpacked app under xvfb-run on the real xcb platform, system X11 libraries hidden."""
    _step("X11 libraries in the bundle")
    names = check_bundled_x11(bundle)
    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is None:
        message = "xvfb-run is not installed (Debian/Ubuntu: sudo apt install xvfb xauth)"
        if os.environ.get("IOI_DESKTOP_XCB_SMOKE") == "required":
            raise BuildError(f"The xcb smoke test is required but {message}.")
        print(f"xcb smoke test skipped: {message}")
        return {"skipped": message}
    with tempfile.TemporaryDirectory(prefix="ioi-hide-", ignore_cleanup_errors=True) as scratch:
        hide, hidden = hiding_prefix(names, Path(scratch))
        resolved = check_resolution_in_bundle(bundle, names, hide)
        print(f"bundled xcb plugin resolves {len(resolved)} X11 libraries inside the bundle"
              + (f", {len(hidden)} system copies hidden" if hidden else " (system copies not hidden)"))
        prefix = [xvfb_run, "--auto-servernum", "--server-args", f"-screen 0 {XVFB_SCREEN}", *hide]
        report = smoke(launcher, bundle, "unpacked tarball xcb", "xcb", prefix,
                       {"LD_LIBRARY_PATH": str(_internal_dir(bundle))})
    report.update(hidden_system_libraries=hidden, resolved_in_bundle=resolved)
    return report


def make_tarball(out: Path) -> Path:
    _step("Linux tarball")
    arch = platform.machine() or "x86_64"
    name = f"ioi-desktop-{__version__}-linux-{arch}"
    stage = Path(tempfile.mkdtemp(prefix="ioi-stage-")) / name
    stage.mkdir()
    shutil.copytree(out / "ioi-desktop", stage / "ioi-desktop", symlinks=True)
    for file in ("ioi-desktop.sh", "install-desktop-entry.sh", "ioi-desktop.desktop"):
        shutil.copy(ROOT / "packaging" / "linux" / file, stage / file)
    shutil.copy(ROOT / "resources" / "icons" / "ioi-desktop.png", stage / "ioi-desktop.png")
    validator = shutil.which("desktop-file-validate")
    if validator:
        probe = stage.parent / "probe.desktop"
        probe.write_text((stage / "ioi-desktop.desktop").read_text().replace("@LAUNCHER@", str(stage / "ioi-desktop.sh")))
        check = subprocess.run([validator, str(probe)], capture_output=True, text=True)
        probe.unlink()
        if check.returncode != 0:
            raise BuildError(f"desktop-file-validate rejected the .desktop file: {check.stdout}{check.stderr}")
    else:
        print("desktop-file-validate not installed: .desktop file not validated")
    tarball = out / f"{name}.tar.gz"
    with tarfile.open(tarball, "w:gz", compresslevel=6) as archive:
        archive.add(stage, arcname=name)
    shutil.rmtree(stage.parent, ignore_errors=True)
    return tarball


def smoke_unpacked(tarball: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="ioi-unpacked-") as elsewhere:
        with tarfile.open(tarball) as archive:
            archive.extractall(elsewhere, filter="tar")
        (root,) = Path(elsewhere).iterdir()
        report = smoke(root / "ioi-desktop.sh", root / "ioi-desktop", "unpacked tarball")
        report["xcb"] = smoke_xcb(root / "ioi-desktop.sh", root / "ioi-desktop")
        return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    parser.add_argument("--skip-build", action="store_true", help="reuse an existing build in --out")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    report: dict = {"version": __version__, "platform": platform.platform()}
    try:
        if not args.skip_build:
            report["build_seconds"] = round(build(out), 1)
        bundle = out / "ioi-desktop"
        executable = bundle / ("ioi-desktop.exe" if sys.platform == "win32" else "ioi-desktop")
        if not executable.exists():
            raise BuildError(f"No frozen app at {executable}: build first.")
        report["bundle_bytes"] = _folder_bytes(bundle)
        report["smoke"] = smoke(executable, bundle, "bundle")
        if sys.platform.startswith("linux"):
            tarball = make_tarball(out)
            report["tarball"] = str(tarball)
            report["tarball_bytes"] = tarball.stat().st_size
            report["smoke_unpacked"] = smoke_unpacked(tarball)
    except (BuildError, subprocess.TimeoutExpired) as error:
        print(f"packaging failed: {error}", file=sys.stderr)
        return 1
    (out / "build-report.json").write_text(json.dumps(report, indent=2))
    mb = 2**20
    print(
        f"OK: build {report.get('build_seconds', 0):.0f} s, bundle {report['bundle_bytes'] / mb:.0f} MB"
        + (f", tarball {report['tarball_bytes'] / mb:.0f} MB" if "tarball_bytes" in report else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
