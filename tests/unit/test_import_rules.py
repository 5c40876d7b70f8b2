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
    "voices": {"engines.base", "engines.ortsession", "errors", "audio", "safefs"},
    "text": {"errors"},
    "audio": {"errors"},
}
# `safefs` (symlink-safe atomic writes) is a leaf like `errors`: it imports nothing from voxgate. So is
# `engines.ortsession` (onnxruntime session options), which the speaker encoder in voices/ shares with the engines.
PACKAGE_ROOT = {"__version__"}  # `from voxgate import __version__` reads the package's own attribute


def _imports(path: Path) -> set[str]:
    """What `path` imports from voxgate, without the prefix. `from voxgate.x import y` counts as x and as x.y
    (y may be a module: `from voxgate.dialects import openai` is an import of dialects.openai)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return {n.removeprefix("voxgate.") for n in names if n.startswith("voxgate.")} - PACKAGE_ROOT


def _relative_imports(path: Path) -> list[int]:
    return [node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.ImportFrom) and node.level > 0]


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


def test_the_leaves_import_nothing_from_voxgate() -> None:
    """What the rules above let several layers import must not bring the rest of voxgate along."""
    for leaf in ("safefs.py", "errors.py", "engines/ortsession.py"):
        assert not _imports(SRC / leaf), leaf


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


SHARED_DIALECT_MODULES = ("dialects.common", "dialects.auth", "dialects.base")
# No sideways import: a path two dialects share is settled in dialects/compose.py, which asks each dialect.
SIDEWAYS: set[tuple[str, str]] = set()


def test_dialects_import_only_shared_helpers_not_each_other() -> None:
    violations = []
    for package in sorted(p for p in (SRC / "dialects").iterdir() if p.is_dir() and p.name != "__pycache__"):
        for path in package.rglob("*.py"):
            for target in _imports(path):
                if not target.startswith("dialects.") or target.startswith(f"dialects.{package.name}"):
                    continue
                if _allowed(target, set(SHARED_DIALECT_MODULES)) or (package.name, target) in SIDEWAYS:
                    continue
                violations.append(f"{path.relative_to(SRC)} imports voxgate.{target}")
    assert not violations, "\n".join(violations)


def test_no_dialect_module_imports_the_composition_module() -> None:
    importers = sorted(str(path.relative_to(SRC)) for path in (SRC / "dialects").rglob("*.py")
                       if any(_allowed(t, {"dialects.compose"}) for t in _imports(path)))
    assert importers == []  # only app.py composes dialects


def test_no_dialect_imports_an_engine_or_the_backend() -> None:
    """A dialect speaks through the core: not through an engine, the worker pool or a backend."""
    violations = sorted(f"{path.relative_to(SRC)} imports voxgate.{target}"
                        for path in (SRC / "dialects").rglob("*.py") for target in _imports(path)
                        if _allowed(target, {"engines", "scheduling", "voices", "text", "cluster"}))
    assert not violations, "\n".join(violations)


def test_the_shared_dialect_modules_import_no_dialect() -> None:
    """base, common, auth and compose serve every dialect, so none of them may lean on one."""
    dialects = {p.name for p in (SRC / "dialects").iterdir() if p.is_dir() and p.name != "__pycache__"}
    violations = sorted(f"{path.name} imports voxgate.{target}"
                        for path in (SRC / "dialects").glob("*.py") for target in _imports(path)
                        if target.split(".")[:2][-1] in dialects and target.startswith("dialects."))
    assert not violations, "\n".join(violations)


def test_no_relative_imports() -> None:
    """Relative imports would slip past the rules above, which read absolute module names."""
    found = {str(path.relative_to(SRC)): lines for path in SRC.rglob("*.py") if (lines := _relative_imports(path))}
    assert not found


def test_the_import_reader_sees_every_form(tmp_path: Path) -> None:
    """`from voxgate.dialects import openai` and `from voxgate import engines` are imports of those modules."""
    probe = tmp_path / "probe.py"
    probe.write_text("from voxgate.dialects import openai\nfrom voxgate import engines, __version__\n"
                     "import voxgate.core.types\n", encoding="utf-8")
    found = _imports(probe)
    assert {"dialects", "dialects.openai", "engines", "core.types"} <= found and "__version__" not in found


def test_only_engines_read_a_voice_s_engine_data() -> None:
    """Typed voices: what the core, the backends or a dialect need of a voice is a field of VoiceInfo;
    `engine_data` is the engine's own (core/types.py declares it)."""
    readers = sorted(str(path.relative_to(SRC)) for path in SRC.rglob("*.py")
                     if "engine_data" in path.read_text(encoding="utf-8")
                     and path.relative_to(SRC).parts[0] != "engines" and path.name != "types.py")
    assert readers == []
