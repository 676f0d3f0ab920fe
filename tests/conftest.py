"""Shared test fixtures."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
WJAZZD = ROOT.parent / "shared" / "data" / "wjazzd" / "wjazzd-train.db"


# What builds or loads a model, or starts the generator child: a test that calls one of these,
# in its body, in a helper of its module or in a fixture it uses, is marked `model` (make
# test-fast leaves those out).
MODEL_CALLS = re.compile(r"\b(build_tiny_model|load_model|from_pretrained|compose_bank|"
                         r"render_file|GeneratorClient|DaemonProcess)\(|\"bench\.generate\"")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seen: dict[object, bool] = {}
    for item in items:
        if isinstance(item, pytest.Function) and _uses_a_model(item, seen):
            item.add_marker(pytest.mark.model)


def _uses_a_model(item: pytest.Function, seen: dict[object, bool]) -> bool:
    functions = [item.function]
    for defs in item._fixtureinfo.name2fixturedefs.values():
        functions.extend(d.func for d in defs)
    return any(_calls_a_model(f, item.module, seen) for f in functions)


def _calls_a_model(function: object, module: object, seen: dict[object, bool]) -> bool:
    """Whether `function` or a function of `module` it names builds or loads a model."""
    if function in seen:
        return seen[function]
    seen[function] = False                     # a recursive helper ends here
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    found = MODEL_CALLS.search(source) is not None
    if not found:
        helpers = (getattr(module, name, None) for name in re.findall(r"\b(_\w+)\(", source))
        found = any(inspect.isfunction(h) and _calls_a_model(h, module, seen) for h in helpers)
    seen[function] = found
    return found


@pytest.fixture(scope="session")
def wjazzd_path() -> Path:
    """The Weimar Jazz Database training copy, beside the clone (skips when absent)."""
    path = Path(os.environ.get("MELODYFLOW_WJAZZD", WJAZZD))
    if not path.exists():
        pytest.skip(f"WJazzD not found at {path}")
    return path


@pytest.fixture(scope="session")
def jack_server():
    """A private JACK server (dummy driver) for the session; skips when jackd is absent."""
    from tests.support.jack import JackServer, jack_available
    from tests.support.jack_registry import reclaim_stale_servers

    reason = jack_available()
    if reason is not None:
        pytest.skip(reason)
    reclaim_stale_servers()          # killed servers' slots: jack2 keeps only 8
    server = JackServer().start()
    try:
        yield server
    finally:
        server.stop()
