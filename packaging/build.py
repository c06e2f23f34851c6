"""Build the frozen app, smoke-test it, and make the Linux tarball.

    python packaging/build.py [--skip-build] [--out dist]

Steps (each prints its duration; a JSON report goes to dist/build-report.json):
1. ``pyinstaller --noconfirm --clean build_installer.spec`` -> dist/ioi-desktop/;
2. run the frozen binary with ``--smoke-test --screenshot`` offscreen (QT_QPA_PLATFORM=offscreen),
   with an empty HOME, and check: exit 0, a non-blank screenshot, nothing written into the bundle;
3. (Linux) dist/ioi-desktop-<version>-linux-<arch>.tar.gz with the bundle, a launcher script,
   a .desktop file (checked with desktop-file-validate when installed) and the icon;
4. (Linux) unpack the tarball into a fresh folder and smoke-test it again through the launcher.

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


def smoke(executable: Path, bundle: Path, label: str) -> dict:
    started = _step(f"smoke test ({label})")
    before = _snapshot(bundle)
    with tempfile.TemporaryDirectory(prefix="ioi-smoke-home-") as home:
        shot = Path(home) / "smoke.png"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "QT_QPA_PLATFORM": "offscreen",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }
        result = subprocess.run(
            [str(executable), "--smoke-test", "--screenshot", str(shot)],
            env=env, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
        )
        print(result.stdout.strip())
        if result.returncode != 0:
            raise BuildError(f"The frozen app's smoke test failed ({label}, exit {result.returncode}): {result.stderr.strip()[-2000:]}")
        if not shot.is_file() or _screenshot_is_blank(shot):
            raise BuildError(f"The frozen app's screenshot is missing or blank ({label}).")
        kept = ROOT / "artifacts" / "screenshots" / f"frozen-{label}.png"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, kept)
    changed = sorted(set(_snapshot(bundle).items()) ^ set(before.items()))
    if changed:
        raise BuildError(f"The frozen app wrote into its own folder: {[name for name, _ in changed][:5]}")
    return {"seconds": round(time.perf_counter() - started, 1), "summary": result.stdout.strip().splitlines()[-1:], "screenshot": str(kept)}


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
        return smoke(root / "ioi-desktop.sh", root / "ioi-desktop", "unpacked tarball")


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
