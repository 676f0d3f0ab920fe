"""The systemd user units: what they must say, and `systemd-analyze --user verify` on them."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = {"melodyflowd.service": ROOT / "systemd" / "melodyflowd.service",
         "melodyflowd@.service": ROOT / "systemd" / "melodyflowd@.service"}
SANDBOX_NEEDING_USERNS = ("PrivateUsers", "ProtectSystem", "ProtectHome", "PrivateTmp",
                          "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values, with backslash continuation lines joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        logical.append(line)
    for line in logical:
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, line
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key, [])
    assert len(values) == 1, f"[{section}] {key}= given {len(values)} times"
    return values[0]


@pytest.mark.parametrize("name", list(UNITS))
def test_unit_says_what_issue_6_asks(name: str) -> None:
    unit = parse_unit(UNITS[name].read_text(encoding="utf-8"))
    service = "Service"
    assert one(unit, service, "Type") == "notify"
    assert one(unit, service, "NotifyAccess") == "main"
    assert one(unit, service, "Restart") == "on-failure"
    assert one(unit, service, "WatchdogSec").rstrip("s").isdigit()
    assert shlex.split(one(unit, service, "ExecReload")) == ["/bin/kill", "-HUP", "$MAINPID"]
    assert one(unit, service, "NoNewPrivileges") == "yes"
    # exit 2 is a user error (bad chart/config): restarting cannot help
    assert "2" in one(unit, service, "RestartPreventExitStatus").split()
    # Options that need user namespaces fail a user service where those are not allowed,
    # so they are offered commented out, not switched on.
    for key in SANDBOX_NEEDING_USERNS:
        assert key not in unit[service], key
    assert one(unit, "Install", "WantedBy") == "default.target"


def expand(value: str, home: Path, config: Path, instance: str) -> str:
    return (value.replace("%h", str(home)).replace("%E", str(config))
            .replace("%i", instance).replace("%I", instance))


@pytest.mark.parametrize("name", list(UNITS))
def test_exec_start_uses_options_the_cli_has(name: str, tmp_path: Path) -> None:
    unit = parse_unit(UNITS[name].read_text(encoding="utf-8"))
    argv = shlex.split(expand(one(unit, "Service", "ExecStart"), tmp_path, tmp_path / "cfg",
                              "autumn-leaves"))
    assert argv[0] == f"{tmp_path}/.local/bin/melodyflowd"
    if name == "melodyflowd@.service":
        assert argv[argv.index("--chart") + 1] == f"{tmp_path}/cfg/melodyflowd/charts/" \
                                                  "autumn-leaves.yaml"
        assert argv[argv.index("--in-name") + 1] == "melodyflowd autumn-leaves in"
        assert argv[argv.index("--out-name") + 1] == "melodyflowd autumn-leaves out"
    # click parses every option before the eager --help: an unknown one would exit 2
    result = subprocess.run(
        [sys.executable, "-c", "from melodyflowd.cli import daemon_main; daemon_main()",
         *argv[1:], "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- systemd-analyze verify -------------------------------------------------------------------

@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """A home whose ~/.local/bin/melodyflowd is the installed console script."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (make setup installs systemd)")
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    script = shutil.which("melodyflowd")
    target = home / ".local" / "bin" / "melodyflowd"
    if script:
        target.symlink_to(os.path.realpath(script))
    else:  # not installed as a console script: an equivalent launcher
        target.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'from melodyflowd.cli import "
                          "daemon_main; daemon_main()' \"$@\"\n")
        target.chmod(0o755)
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(runtime),
               XDG_CONFIG_HOME=str(home / ".config"))
    return env


def verify(path: Path, env: dict[str, str], unit_name: str | None = None
           ) -> subprocess.CompletedProcess[str]:
    target = path.parent / unit_name if unit_name else path
    return subprocess.run(["systemd-analyze", "--user", "verify", str(target)],
                          capture_output=True, text=True, env=env, timeout=120,
                          cwd=path.parent)


def copy_units(tmp_path: Path) -> Path:
    folder = tmp_path / "units"
    folder.mkdir()
    for name, path in UNITS.items():
        shutil.copy(path, folder / name)
    return folder


@pytest.mark.parametrize("name, load_as", [
    ("melodyflowd.service", None),
    ("melodyflowd@.service", None),
    ("melodyflowd@.service", "melodyflowd@autumn-leaves.service"),
])
def test_systemd_analyze_verify_passes(name: str, load_as: str | None, tmp_path: Path,
                                       user_env: dict[str, str]) -> None:
    folder = copy_units(tmp_path)
    result = verify(folder / name, user_env, load_as)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", \
        result.stdout + result.stderr


def test_verify_would_catch_a_broken_unit(tmp_path: Path, user_env: dict[str, str]) -> None:
    """The harness is not blind: a misspelt directive and a missing binary are reported."""
    folder = copy_units(tmp_path)
    unit = folder / "melodyflowd.service"
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notifyy\nWachdogSec=5"))
    result = verify(unit, user_env)
    assert "notifyy" in result.stderr and "WachdogSec" in result.stderr
    (Path(user_env["HOME"]) / ".local" / "bin" / "melodyflowd").unlink()
    result = verify(folder / "melodyflowd@.service", user_env)
    assert result.returncode != 0 and "melodyflowd" in result.stderr


@pytest.mark.parametrize("name", list(UNITS))
def test_the_stronger_sandbox_offered_in_comments_is_valid(name: str, tmp_path: Path,
                                                            user_env: dict[str, str]) -> None:
    folder = copy_units(tmp_path)
    unit = folder / name
    lines = unit.read_text().splitlines()
    uncommented = [line[1:] if line.startswith("#") and line[1:2].isupper() and "=" in line
                   else line for line in lines]
    switched_on = {line.split("=")[0] for line in uncommented} & set(SANDBOX_NEEDING_USERNS)
    assert {"PrivateUsers", "ProtectSystem", "PrivateTmp"} <= switched_on
    unit.write_text("\n".join(uncommented) + "\n")
    result = verify(unit, user_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr
