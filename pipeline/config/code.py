"""The package's own source as a dependency: import closures and their digests.

What a stage or a cache depends on is derived here from the code, never listed by hand: the
import closure of a module is every ``pipeline`` module it imports, directly or through
others (imports inside functions included, and the ``__init__`` of every package on the
way), read from the source with :mod:`ast` (nothing is executed). Its digest keys the
``prepare`` cache and the training fingerprint, and the closures of the stage modules are
the code dependencies of ``dvc.yaml`` (:func:`dvc_code_deps`; a test keeps the file in step,
and ``python -m pipeline.config.code`` prints them).

Example:
    >>> "pipeline.io.errors" in closure("pipeline.io.nifti")
    True
    >>> "pipeline.preprocess.prepare" in closure("pipeline.model.training")
    False
    >>> deps = dvc_code_deps("pipeline.stages.train")
    >>> "pipeline/cli.py" in deps, "pipeline/stages/train.py" in deps
    (True, True)
    >>> [d for d in deps if d.startswith(("pipeline/evaluation", "pipeline/arguments"))]
    []
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sys
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "pipeline"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
ENTRY_POINT = f"{PACKAGE}.cli"  # every stage runs through `vae-anomaly <stage>`


def module_file(name: str) -> Path:
    """The source file of a module (a package's ``__init__.py``)."""
    path = PACKAGE_DIR.parent.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _is_module(name: str) -> bool:
    return module_file(name).is_file()


def _named(node: ast.AST) -> set[str]:
    """Modules of the package one import statement loads."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
    if not isinstance(node, ast.ImportFrom) or node.level or not node.module or \
            node.module.split(".")[0] != PACKAGE:
        return set()
    subs = {f"{node.module}.{a.name}" for a in node.names}
    return {node.module} | {s for s in subs if _is_module(s)}


@functools.cache
def direct_imports(name: str) -> frozenset[str]:
    """The package's modules that module ``name`` imports itself (with their packages)."""
    tree = ast.parse(module_file(name).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        for mod in _named(node):
            parts = mod.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(m for m in found if m != name and _is_module(m))


@functools.cache
def _closure(roots: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run too
        todo += sorted(direct_imports(name))
    return tuple(sorted(seen))


def closure(*roots: str) -> list[str]:
    """Every package module that importing ``roots`` can load, the roots included."""
    return list(_closure(tuple(sorted(roots))))


def data_files(package: str) -> list[Path]:
    """A package's files that are not Python (e.g. page templates), which shape what its
    modules produce; files of its subpackages belong to those."""
    folder = module_file(package).parent
    out = []
    for path in folder.rglob("*"):
        between = path.relative_to(folder).parents
        inside_subpackage = any((folder / p / "__init__.py").is_file()
                                for p in between if str(p) != ".")
        if path.is_file() and path.suffix not in (".py", ".pyc") and \
                "__pycache__" not in path.parts and not inside_subpackage:
            out.append(path)
    return sorted(out)


def digest(modules: Iterable[str]) -> str:
    """SHA-256 over the source (path and bytes) of ``modules`` and the data files of the
    packages among them."""
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        path = module_file(name)
        files = [path, *(data_files(name) if path.name == "__init__.py" else [])]
        for f in files:
            h.update(str(f.relative_to(PACKAGE_DIR)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def closure_digest(*roots: str) -> str:
    """The digest of the import closure of ``roots``: it changes when any module they can
    load changes."""
    return digest(closure(*roots))


@functools.cache
def package_digest() -> str:
    """The digest of every module of the package."""
    names = [".".join((PACKAGE, *p.relative_to(PACKAGE_DIR).with_suffix("").parts))
             for p in sorted(PACKAGE_DIR.rglob("*.py"))]
    return digest(n.removesuffix(".__init__") for n in names)


def dvc_code_deps(stage_module: str) -> list[str]:
    """The code dependencies of a DVC stage: the entry point's file, and every module of the
    stage module's import closure with the data files of the packages among them (paths from
    the project root). A module the stage never imports is no dependency: editing evaluation
    code re-runs no training, editing a help text (:mod:`pipeline.arguments`) nothing."""
    root = PACKAGE_DIR.parent
    found = {module_file(ENTRY_POINT).relative_to(root).as_posix()}
    for name in closure(stage_module):
        path = module_file(name)
        found.add(path.relative_to(root).as_posix())
        if path.name == "__init__.py":
            found.update(f.relative_to(root).as_posix() for f in data_files(name))
    return sorted(found)


def with_code_deps(dvc_yaml: str) -> str:
    """``dvc.yaml``'s text with each stage's ``pipeline/...`` deps replaced by the derived
    ones (everything else, comments included, kept); the stage module is the one its
    ``cmd`` (``vae-anomaly <stage> ...``) runs."""
    out: list[str] = []
    stage_module = ""
    for line in dvc_yaml.splitlines():
        text = line.strip()
        if text.startswith("cmd: vae-anomaly "):
            stage_module = f"{PACKAGE}.stages.{text.split()[2]}"
        if text.startswith(f"- {PACKAGE}/") and stage_module:
            indent = line[: len(line) - len(line.lstrip())]
            out += [f"{indent}- {dep}" for dep in dvc_code_deps(stage_module)]
            stage_module = ""  # one block per stage
            continue
        if not text.startswith(f"- {PACKAGE}/"):
            out.append(line)
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    """``python -m pipeline.config.code [dvc.yaml]``: print the code dependencies of every
    stage, or rewrite them in the given ``dvc.yaml``."""
    if argv:
        path = Path(argv[0])
        path.write_text(with_code_deps(path.read_text()))
        return 0
    for stage in sorted(p.stem for p in (PACKAGE_DIR / "stages").glob("[!_]*.py")):
        print(f"{stage}:")
        for dep in dvc_code_deps(f"{PACKAGE}.stages.{stage}"):
            print(f"  - {dep}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
