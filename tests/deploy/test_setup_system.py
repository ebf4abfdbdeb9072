"""deploy/setup-system: the one script `make test`, `make demo` and CI set the system up with.

Installing is shown by hand (see the report of issue 17: chromium removed, the script put it
back); here, what a user without root is told when something is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "setup-system"
# Everything the script looks for but jq (chromium is looked for at /usr/bin/chromium).
PRESENT = ("python3", "java", "mvn", "make", "redis-server", "id", "openssl")
# The system's own tools (an unprivileged user cannot run a Python under /root/.pyenv, say).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def path_without_jq() -> Iterator[str]:
    """A PATH holding only PRESENT, readable by an unprivileged user."""
    folder = Path(tempfile.mkdtemp(prefix="fg-path-"))
    folder.chmod(0o755)
    for tool in PRESENT:
        found = shutil.which(tool, path=SYSTEM_PATH)
        if found is None:
            pytest.fail(f"{tool} is not installed: run deploy/setup-system as root", pytrace=False)
        (folder / tool).symlink_to(found)
    yield str(folder)
    shutil.rmtree(folder)


def _venv_missing(path: str) -> list[str]:
    """["python3-venv"] when the python3 on PATH cannot make a venv (the script says so too)."""
    python = Path(path) / "python3"
    works = subprocess.run([str(python), "-c", "import venv, ensurepip"], capture_output=True)
    return [] if works.returncode == 0 else ["python3-venv"]


def _as_user(argv: list[str]) -> list[str]:
    """ARGV as an unprivileged user (nobody) when the tests run as root."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv", path=SYSTEM_PATH) or "setpriv"
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]


def _setup_as_user(target: str, path: str) -> subprocess.CompletedProcess[str]:
    """``deploy/setup-system <target>`` as an unprivileged user with only ``path`` to search."""
    return subprocess.run(
        _as_user(["/bin/bash", str(SCRIPT), target]),
        env={"PATH": path, "HOME": "/tmp"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_user_without_root_is_told_what_to_install(path_without_jq: str) -> None:
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("no /usr/bin/chromium: run deploy/setup-system as root", pytrace=False)
    result = _setup_as_user("test", path_without_jq)
    missing = " ".join([*_venv_missing(path_without_jq), "jq"])
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"error: missing system packages: {missing}; run as root, or install them: "
        f"sudo apt-get install -y {missing}"
    )


def test_the_demo_needs_neither_chromium_nor_jq(path_without_jq: str) -> None:
    result = _setup_as_user("demo", path_without_jq)
    if _venv_missing(path_without_jq):
        assert "missing system packages: python3-venv;" in result.stderr
    else:
        assert (result.returncode, result.stderr) == (0, "")


def test_an_unknown_profile_is_refused() -> None:
    result = subprocess.run([str(SCRIPT), "prod"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "usage: deploy/setup-system [demo|test]" in result.stderr


def test_make_and_ci_use_it() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "test: system-test setup" in makefile
    assert "demo: system-demo setup" in makefile
    assert "\t@deploy/setup-system test\n" in makefile
    assert "\ndeploy/setup-system test\n" in (REPO / ".ci" / "run").read_text()


def test_a_missing_chromium_is_installed_with_apt_get(tmp_path: Path) -> None:
    """The root branch `make test` and CI take on a machine without Chromium: apt-get installs it.

    The script is copied with /usr/bin/chromium pointed at a path that does not exist (Chromium
    is installed here and other tests need it), `id` says root and `apt-get` only records its
    arguments: what is checked is that the script asks apt-get for chromium, not the download.
    """
    script = tmp_path / "setup-system"
    script.write_text(SCRIPT.read_text().replace("/usr/bin/chromium", str(tmp_path / "none")))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in (*PRESENT, "jq"):
        if tool == "id":
            continue
        found = shutil.which(tool, path=SYSTEM_PATH)
        if found is None:
            pytest.fail(f"{tool} is not installed: run deploy/setup-system as root", pytrace=False)
        (bin_dir / tool).symlink_to(found)
    calls = tmp_path / "calls"
    (bin_dir / "id").write_text("#!/bin/sh\necho 0\n")
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "id").chmod(0o755)
    (bin_dir / "apt-get").chmod(0o755)
    result = subprocess.run(
        ["/bin/bash", str(script), "test"],
        env={"PATH": f"{bin_dir}:/bin", "HOME": "/tmp"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    installs = [line for line in calls.read_text().splitlines() if line.startswith("install")]
    assert len(installs) == 1, installs
    assert "chromium" in installs[0].split()
    assert "installed: chromium" in result.stderr
