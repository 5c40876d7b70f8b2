"""README.md stays true: the two set-up commands match .ci/run, and every setting is documented."""

from __future__ import annotations

from pathlib import Path

from voxgate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_first_lines_are_the_two_commands_and_ci_runs_the_second() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1 : lines.index("```sh") + 3]
    assert block[0].endswith("voxgate serve") and "pip install -e ." in block[0]
    assert "pytest" in block[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert block[1].replace("pip install -e", "pip install -q -e") in ci


def test_every_setting_is_in_the_configuration_table() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        flag = extra.get("flag") or f"--{name.replace('_', '-')}"  # e.g. --upstream, given once per item
        assert f"`{flag}`" in readme, name
        assert f"`VOXGATE_{name.upper()}`" in readme, name
