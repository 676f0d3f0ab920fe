"""The systemd user units: what they must say, and `systemd-analyze --user verify` on them."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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


# --- the template unit, run the way systemd runs it -------------------------------------------

def unit_environment(unit: dict[str, dict[str, list[str]]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in unit["Service"].get("Environment", []):
        for assignment in shlex.split(line):
            key, _, value = assignment.partition("=")
            env[key] = value
    return env


@pytest.mark.jack
def test_template_unit_runs_as_systemd_would(jack_server, user_env: dict[str, str],
                                             tmp_path: Path) -> None:
    """ExecStart with its specifiers filled in, the unit's Environment=, a real
    NOTIFY_SOCKET and WATCHDOG_USEC: READY=1 with the ports named after the instance,
    WATCHDOG=1 from the live loop, ExecReload -> RELOADING=1 then READY=1, SIGTERM (what
    KillMode=mixed sends the main process) -> STOPPING=1 and exit 0."""
    import signal
    import time

    from tests.support.jack import NotifyListener, write_bank

    unit = parse_unit(UNITS["melodyflowd@.service"].read_text(encoding="utf-8"))
    home = Path(user_env["HOME"])
    config_home = Path(user_env["XDG_CONFIG_HOME"])
    folder = config_home / "melodyflowd"
    (folder / "charts").mkdir(parents=True)
    (folder / "charts" / "autumn-leaves.yaml").write_text(
        'title: Autumn test\ntempo: 120\nchords: "| Am7 D7 | Gmaj7 |"\n')
    write_bank(folder / "bank.json", [[("Am7", 0, 2), ("D7", 2, 2)], [("Gmaj7", 0, 4)]],
               [[[(72, 0.0, "Am7"), (66, 2.0, "D7")], [(67, 0.0, "Gmaj7")]]],
               title="Autumn test", tempo=120)
    (folder / "config.yaml").write_text("phrases: bank.json\nports:\n  backend: jack\n")
    argv = shlex.split(expand(one(unit, "Service", "ExecStart"), home, config_home,
                              "autumn-leaves"))
    notify = NotifyListener(tmp_path)
    env = {**user_env, **jack_server.env, **unit_environment(unit),
           "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1500000"}
    proc = subprocess.Popen(argv, env=env, cwd=home, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_for(line: str, count: int = 1, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if notify.lines().count(line) >= count:
                return True
            time.sleep(0.05)
        return notify.lines().count(line) >= count

    try:
        assert wait_for("READY=1"), "no READY=1"
        assert any("melodyflowd autumn-leaves in" in p for p in jack_server.ports())
        assert any("melodyflowd autumn-leaves out" in p for p in jack_server.ports())
        assert wait_for("WATCHDOG=1", count=2, timeout=10), notify.lines()
        reload_cmd = one(unit, "Service", "ExecReload").replace("$MAINPID", str(proc.pid))
        subprocess.run(shlex.split(reload_cmd), check=True)
        assert wait_for("RELOADING=1", timeout=10), notify.lines()
        assert wait_for("READY=1", count=2, timeout=10), notify.lines()
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=20)
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        notify.close()
    assert status == 0, stderr
    assert "STOPPING=1" in notify.lines()
    assert not any("autumn-leaves" in p for p in jack_server.ports())
