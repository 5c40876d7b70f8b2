"""The import rules of DESIGN.md, checked on the source: the architecture stays what the folders say."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "voxgate"

# package → voxgate packages it may import (besides itself). `engines.base` is the engine interface, and
# `core.types` the leaf of plain types (VoiceInfo, Piece) that engines return and everyone else reads.
ALLOWED: dict[str, set[str]] = {
    "dialects": {"core", "errors", "audio", "dialects", "safefs"},
    "core": {"text", "voices", "scheduling", "audio", "errors", "engines.base", "safefs"},
    "scheduling": {"engines.base", "errors"},
    "engines": {"engines", "errors", "safefs", "core.types"},
    "voices": {"engines.base", "errors", "audio", "safefs"},
    "text": {"errors"},
    "audio": {"errors"},
}
# `safefs` (symlink-safe atomic writes) is a leaf like `errors`: it imports nothing from voxgate.


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found |= {n.removeprefix("voxgate.") for n in names if n.startswith("voxgate.")}
    return found


def _allowed(target: str, allowed: set[str]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


def test_layers_import_only_what_design_allows() -> None:
    violations = []
    for package, allowed in ALLOWED.items():
        for path in (SRC / package).rglob("*.py"):
            for target in _imports(path):
                if not _allowed(target, allowed | {package}):
                    violations.append(f"{path.relative_to(SRC)} imports voxgate.{target}")
    assert not violations, "\n".join(violations)


def test_only_the_composition_root_imports_dialects() -> None:
    importers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "dialects" not in path.relative_to(SRC).parts
        and any(t == "dialects" or t.startswith("dialects.") for t in _imports(path))
    )
    assert importers == ["app.py"]


def test_engines_import_heavy_packages_only_inside_adapters() -> None:
    tree = ast.parse((SRC / "engines" / "piper.py").read_text(encoding="utf-8"))
    top_level = {
        alias.name.split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert not top_level & {"piper", "onnxruntime"}, "heavy engine imports must stay inside functions"


SHARED_DIALECT_MODULES = {"dialects.common", "dialects.auth", "dialects.base"}
# No sideways import: a path two dialects share is settled in dialects/compose.py, which asks each dialect.
SIDEWAYS: set[tuple[str, str]] = set()


def test_dialects_import_only_shared_helpers_not_each_other() -> None:
    violations = []
    for package in sorted(p for p in (SRC / "dialects").iterdir() if p.is_dir() and p.name != "__pycache__"):
        for path in package.rglob("*.py"):
            for target in _imports(path):
                if not target.startswith("dialects.") or target.startswith(f"dialects.{package.name}"):
                    continue
                if target in SHARED_DIALECT_MODULES or (package.name, target) in SIDEWAYS:
                    continue
                violations.append(f"{path.relative_to(SRC)} imports voxgate.{target}")
    assert not violations, "\n".join(violations)


def test_no_dialect_module_imports_the_composition_module() -> None:
    importers = sorted(str(path.relative_to(SRC)) for path in (SRC / "dialects").rglob("*.py")
                       if "dialects.compose" in _imports(path))
    assert importers == []  # only app.py composes dialects
