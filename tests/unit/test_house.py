"""The package's structure: layers, independent commands and stages, small functions, and
code dependencies (dvc.yaml, the prepare cache, the training fingerprint) derived from the
imports rather than kept by hand."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from pipeline.config import code

# bottom to top: a module may import its own package and the packages below it
LAYERS = ("io", "config", "space", "preprocess", "model", "modelstore", "scoring",
          "generative", "reporting", "inference", "cohort", "preparation", "evaluation",
          "commands", "serving", "stages")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 300


def _modules() -> list[str]:
    return sorted(".".join(("pipeline", *p.relative_to(code.PACKAGE_DIR).with_suffix("").parts))
                  .removesuffix(".__init__") for p in code.PACKAGE_DIR.rglob("*.py"))


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and
                                          (code.PACKAGE_DIR / parts[1]).is_dir()) else ""


def test_every_subpackage_has_a_layer() -> None:
    folders = {p.name for p in code.PACKAGE_DIR.iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(LAYERS)


def test_no_module_imports_a_package_above_it() -> None:
    upward = []
    for module in _modules():
        own = _package(module)
        if not own:  # top-level modules (the CLI entry point) stand above every package
            continue
        for dep in code.direct_imports(module):
            other = _package(dep)
            if other and LAYERS.index(other) > LAYERS.index(own):
                upward.append(f"{module} -> {dep}")
    assert upward == []


@pytest.mark.parametrize("package", ["commands", "stages"])
def test_commands_and_stages_never_import_each_other(package: str) -> None:
    crossing = [f"{m} -> {d}" for m in _modules() if _package(m) == package
                for d in code.direct_imports(m)
                if _package(d) == package and d != f"pipeline.{package}"]
    assert crossing == []


def test_functions_and_modules_are_small() -> None:
    long = []
    for path in sorted(code.PACKAGE_DIR.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.name} {n} lines")
    assert long == []


def _dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def test_dvc_code_deps_are_the_import_closures_of_the_stages() -> None:
    for name, stage in _dvc_stages().items():
        command = stage["cmd"].split()[1]  # vae-anomaly <stage> [options]
        listed = sorted(d for d in stage["deps"] if str(d).startswith("pipeline"))
        assert listed == code.dvc_code_deps(f"pipeline.stages.{command}"), name


def _copy_of_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "pipeline"
    shutil.copytree(code.PACKAGE_DIR, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(code, "PACKAGE_DIR", root)
    code.direct_imports.cache_clear()
    # private: pipeline.config.code offers no public way to clear its closure cache
    code._closure.cache_clear()
    return root


@pytest.mark.parametrize("root", ["pipeline.preparation.worker", "pipeline.model.training"])
def test_touching_any_module_a_key_covers_changes_the_key(
        root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The prepare cache key and the training fingerprint hash the import closure of the
    code they cover: editing any module of it, or a template of a package in it, gives a new
    key; editing a module outside it does not."""
    copy = _copy_of_the_package(tmp_path, monkeypatch)
    try:
        base = code.closure_digest(root)
        covered = code.closure(root)
        assert len(covered) > 5
        for module in covered:
            path = code.module_file(module)
            original = path.read_bytes()
            path.write_bytes(original + b"\n# touched\n")
            assert code.closure_digest(root) != base, module
            path.write_bytes(original)
        outside = [m for m in _modules() if m not in covered]
        assert outside
        for module in outside:
            code.module_file(module).write_bytes(b"# touched\n")
        assert code.closure_digest(root) == base
    finally:
        code.direct_imports.cache_clear()
        code._closure.cache_clear()
    assert copy.is_dir()


def test_a_new_module_is_covered_once_imported(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    copy = _copy_of_the_package(tmp_path, monkeypatch)
    try:
        base = code.closure_digest("pipeline.model.training")
        (copy / "model" / "newpart.py").write_text("X = 1\n")
        assert code.closure_digest("pipeline.model.training") == base
        training = copy / "model" / "training.py"
        training.write_text(training.read_text() + "\nfrom pipeline.model import newpart\n")
        code.direct_imports.cache_clear()
        code._closure.cache_clear()
        assert "pipeline.model.newpart" in code.closure("pipeline.model.training")
        assert code.closure_digest("pipeline.model.training") != base
    finally:
        code.direct_imports.cache_clear()
        code._closure.cache_clear()
