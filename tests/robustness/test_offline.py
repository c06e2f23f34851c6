"""The app works with networking disabled: the headless analysis and the GUI smoke test.

Two ways to take the network away from a child process:

- ``socket``: a ``sitecustomize.py`` first on PYTHONPATH replaces
  ``socket.socket``, ``socket.create_connection`` and ``socket.getaddrinfo``
  with functions raising ``OSError("network disabled by test")``, so any
  attempt to connect fails at once (and would show in the output);
- ``unshare``: ``unshare -rn`` runs the process in a new network namespace
  with no interfaces but loopback (skipped where user namespaces are not
  allowed).

HF_HUB_OFFLINE is deliberately *not* set in the child: the app itself must
not reach for the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ioi_desktop.core.paths import bundled_model_dir

ROOT = Path(__file__).resolve().parents[2]
SITECUSTOMIZE = '''
import socket

def _refuse(*args, **kwargs):
    raise OSError("network disabled by test")

class _NoSocket(socket.socket):
    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        if fileno is None and family in (-1, socket.AF_INET, socket.AF_INET6):
            raise OSError("network disabled by test")
        super().__init__(family, type, proto, fileno)

socket.socket = _NoSocket
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
'''

pytestmark = pytest.mark.skipif(not (bundled_model_dir() / "config.json").is_file(),
                                reason="the bundled model is not built (resources/models/ioi-mini)")


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _environment(tmp_path: Path, way: str) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PYTHONPATH")}
    env.update(QT_QPA_PLATFORM="offscreen", TQDM_DISABLE="1", IOI_DESKTOP_THREADS="1",
               IOI_DESKTOP_DATA=str(tmp_path / "user-data"), HF_HOME=str(tmp_path / "hf-home"))
    paths = [str(ROOT)]
    if way == "socket":
        blocker = tmp_path / "no-network"
        blocker.mkdir()
        (blocker / "sitecustomize.py").write_text(SITECUSTOMIZE)
        paths.insert(0, str(blocker))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


WAYS = ["socket", pytest.param("unshare", marks=pytest.mark.skipif(not _unshare_works(),
                                                                   reason="unshare -rn is not available here"))]


def _run(tmp_path, way, args, timeout):
    prefix = ["unshare", "-rn"] if way == "unshare" else []
    return subprocess.run([*prefix, sys.executable, "-m", "ioi_desktop.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=_environment(tmp_path, way), cwd=tmp_path)


def test_the_socket_blocker_really_blocks(tmp_path):
    out = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('example.org', 80))"],
                         capture_output=True, text=True, timeout=60, env=_environment(tmp_path, "socket"))
    assert out.returncode != 0 and "network disabled by test" in out.stderr


@pytest.mark.parametrize("way", WAYS)
def test_analyze_on_the_bundled_model_offline(tmp_path, way):
    from ioi_desktop.core.pairfiles import write_pairs
    from ioi_desktop.core.pairs import notebook_prompt_set
    from ioi_desktop.core.results import load_results

    pairs = write_pairs(tmp_path / "pairs.json", notebook_prompt_set())
    out = _run(tmp_path, way, ["analyze", "--pairs", str(pairs), "--out", str(tmp_path / "out"), "--quiet"], 300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "network disabled" not in out.stderr
    results = load_results(tmp_path / "out")
    assert results.meta["model"]["name"] == "ioi-mini" and len(results.analyses) >= 5


@pytest.mark.parametrize("way", WAYS)
def test_gui_smoke_test_offline(tmp_path, way):
    out = _run(tmp_path, way, ["--smoke-test"], 400)
    assert out.returncode == 0, (out.stdout + out.stderr)[-2000:]
    assert out.stdout.strip().splitlines()[-1].startswith("smoke test passed: model ioi-mini")
    assert "network disabled" not in out.stderr


def test_a_hub_name_offline_is_a_clear_refusal_not_a_hang(tmp_path):
    from ioi_desktop.core.pairfiles import write_pairs
    from ioi_desktop.core.pairs import notebook_prompt_set

    pairs = write_pairs(tmp_path / "pairs.json", notebook_prompt_set())
    out = _run(tmp_path, "socket", ["analyze", "--model", "gpt2", "--pairs", str(pairs), "--out",
                                    str(tmp_path / "out"), "--quiet"], 120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
    assert lines[0].startswith("ioi-desktop analyze: ") and "gpt2" in lines[0]
    assert "network disabled" not in out.stderr
