import pytest
from click.testing import CliRunner

from melodyflowd import __version__
from melodyflowd.cli import daemon_main, tools_main


def test_version() -> None:
    result = CliRunner().invoke(daemon_main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_daemon_without_chart_is_a_user_error() -> None:
    result = CliRunner().invoke(daemon_main, [])
    assert result.exit_code == 2
    assert "--chart" in result.output


def test_tools_help_lists_commands() -> None:
    result = CliRunner().invoke(tools_main, ["--help"])
    assert result.exit_code == 0
    for name in ("check", "render", "ports"):
        assert name in result.output


@pytest.mark.parametrize(("variable", "value", "accepted"), [
    ("MELODYFLOW_MATMUL", "fp16", "auto, bf16, fp32"),
    ("MELODYFLOW_ATTENTION", "flash", "auto, torch"),
    ("MELODYFLOW_THREADS", "none", "1 or more"),
])
def test_bad_kind_in_the_environment_is_one_line_and_status_2(tmp_path, monkeypatch, variable,
                                                              value, accepted) -> None:
    chart = tmp_path / "song.yaml"
    chart.write_text("title: t\ntempo: 120\nbars: [C7, F7]\n")
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(tools_main, ["render", "--chart", str(chart), "--out",
                                             str(tmp_path / "out.json")])
    assert result.exit_code == 2
    assert f"{variable}={value!r}" in result.output
    assert f"accepted: {accepted}" in result.output
    assert not (tmp_path / "out.json").exists()


def test_render_temperature_is_checked_by_the_config(tmp_path) -> None:
    """--temperature's range is the config's (one owner): one line, status 2, no file."""
    chart = tmp_path / "song.yaml"
    chart.write_text("title: t\ntempo: 120\nbars: [C7, F7]\n")
    result = CliRunner().invoke(tools_main, ["render", "--chart", str(chart), "--out",
                                             str(tmp_path / "out.json"), "--temperature", "9"])
    assert result.exit_code == 2
    assert "generation.temperature: 9" in result.output and "from 0.05 to 5" in result.output
    assert not (tmp_path / "out.json").exists()
