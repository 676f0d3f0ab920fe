"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
WJAZZD = ROOT.parent / "shared" / "data" / "wjazzd" / "wjazzd-train.db"


# Test modules that load a language model or tokenizer (the embedded one, or a tiny one
# built for the test) or run the generator child: marked `model`, so that `make test-fast`
# (-m "not jack and not slow and not model") runs in well under a minute.
MODEL_MODULES = frozenset({
    "tests/generate/test_compose.py", "tests/generate/test_constraint.py",
    "tests/generate/test_fastllama.py", "tests/generate/test_model.py",
    "tests/generate/test_scale_modes.py", "tests/generate/test_worker.py",
    "tests/offline/test_render.py",
    "tests/training/test_training.py",
})


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With -m "... not model": not even imported (they import torch and transformers,
    which alone takes most of a fast run's time)."""
    if "not model" in (config.option.markexpr or "") and \
            collection_path.is_relative_to(ROOT) and \
            collection_path.relative_to(ROOT).as_posix() in MODEL_MODULES:
        return True
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.relative_to(ROOT).as_posix() in MODEL_MODULES:
            item.add_marker(pytest.mark.model)


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
    from tests.support.jack_registry import reclaim_stale_servers, remove_files_of_dead_test_runs

    reason = jack_available()
    if reason is not None:
        pytest.skip(reason)
    reclaim_stale_servers()          # killed servers' slots: jack2 keeps only 8
    remove_files_of_dead_test_runs()  # what an interrupted run left in /dev/shm
    server = JackServer().start()
    try:
        yield server
    finally:
        server.stop()
