"""Model URIs → local folders: the MLflow registry, read without MLflow where that is safe.

Importing MLflow and opening its SQLAlchemy store costs seconds, a large part of a
``vae-anomaly score`` process (docs/results, performance). When the tracking
store is the embedded SQLite file and the model version's artifacts are on the local disk,
:func:`fetch` reads the registry read-only with the standard library's ``sqlite3`` and
returns the artifact folder itself (nothing is copied). That read depends on MLflow's private
database schema, so it is taken only when the database reports a schema revision this code
was tested against (:data:`TESTED_SCHEMA_REVISIONS`, MLflow's Alembic head of the pinned
release range); anything else (another revision, a remote server, an ambiguous row, artifacts
elsewhere) goes through MLflow's own client. Both paths pin an alias to one version number
and read that version's tags in the same lookup, so the alias cannot move in between; a test
checks that they agree.

Example:
    >>> fetch_local("sqlite://", "models:/m@champion") is None   # an in-memory store: MLflow
    True
"""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from pipeline.config import paths

# Alembic revisions of MLflow's tracking schema the direct read was tested on (MLflow 3.17,
# the range pyproject.toml pins); tests/test_tracking.py checks it is the installed head
TESTED_SCHEMA_REVISIONS = frozenset({"dc11669786a5"})
# MLflow's marker of a soft-deleted version
_DELETED_STAGE = "Deleted_Internal"
# the workspace every row belongs to unless MLFLOW_WORKSPACE names another
_DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True)
class Fetched:
    """A model version on the local disk."""

    folder: Path
    pinned: str                   # the URI with an alias replaced by its version number
    tags: dict[str, str]          # the version's registry tags (empty for ``runs:/``)
    run_id: str = ""              # the version's run ("" for ``runs:/``)


def parse(uri_text: str) -> tuple[str, str, str] | None:
    """``(name, "@" or "/", alias or version)`` of a ``models:/`` URI, else None.

    Example:
        >>> parse("models:/vae@champion"), parse("models:/vae/3"), parse("runs:/x/model")
        (('vae', '@', 'champion'), ('vae', '/', '3'), None)
    """
    if not uri_text.startswith("models:/"):
        return None
    body = uri_text.removeprefix("models:/").strip("/")
    name, at, alias = body.partition("@")
    if at:
        return name, "@", alias
    name, _, version = body.rpartition("/")
    return name, "/", version


def _sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (relative or absolute)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or len(tracking_uri) == len(prefix):
        return None
    path = Path(tracking_uri[len(prefix):].split("?", 1)[0])
    return path if path.is_file() else None


def fetch_local(tracking_uri: str, uri_text: str) -> Fetched | None:
    """The model version's artifact folder read straight from an embedded SQLite store, or
    None whenever that is not certain to give what MLflow would (a separate registry URI, a
    named workspace, ``latest`` or stages, a missing table or column, anything ambiguous)."""
    db, parts = _sqlite_path(tracking_uri), parse(uri_text)
    if db is None or parts is None or os.environ.get("MLFLOW_WORKSPACE") or \
            os.environ.get("MLFLOW_REGISTRY_URI", tracking_uri) != tracking_uri:
        return None
    name, kind, ref = parts
    if kind == "/" and not ref.isdigit():
        return None
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            if schema_revision(con) not in TESTED_SCHEMA_REVISIONS:
                return None
            version = ref if kind == "/" else _alias_version(con, name, ref)
            return None if version is None else _lookup(con, name, version)
        finally:
            con.close()
    except (sqlite3.Error, ValueError):
        return None


def schema_revision(con: sqlite3.Connection) -> str | None:
    """The Alembic revision the tracking database reports (None if it reports none)."""
    rows = con.execute("SELECT version_num FROM alembic_version").fetchall()
    return str(rows[0][0]) if len(rows) == 1 else None


def _workspace_filter(con: sqlite3.Connection) -> str:
    columns = {r[1] for r in con.execute("PRAGMA table_info(model_versions)")}
    return f" AND workspace = '{_DEFAULT_WORKSPACE}'" if "workspace" in columns else ""


def _alias_version(con: sqlite3.Connection, name: str, alias: str) -> str | None:
    """The version an alias names, if exactly one row says so."""
    rows = con.execute("SELECT version FROM registered_model_aliases WHERE name = ? AND "
                       f"alias = ?{_workspace_filter(con)}", (name, alias)).fetchall()
    return str(rows[0][0]) if len(rows) == 1 else None


def _lookup(con: sqlite3.Connection, name: str, version: str) -> Fetched | None:
    ws = _workspace_filter(con)
    rows = con.execute("SELECT COALESCE(NULLIF(storage_location, ''), source), status, "
                       f"current_stage FROM model_versions WHERE name = ? AND version = ?{ws}",
                       (name, int(version))).fetchall()
    if len(rows) != 1:
        return None
    location, status, stage = (str(v) for v in rows[0])
    if status != "READY" or stage == _DELETED_STAGE or not location.startswith("runs:/"):
        return None
    run_id, _, artifact_path = location.removeprefix("runs:/").partition("/")
    runs = con.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)).fetchall()
    tags = con.execute(f"SELECT key, value FROM model_version_tags WHERE name = ? AND "
                       f"version = ?{ws}", (name, int(version))).fetchall()
    root = urlparse(str(runs[0][0])) if len(runs) == 1 else None
    if root is None or root.scheme not in ("file", "") or not artifact_path:
        return None
    folder = Path(unquote(root.path)) / artifact_path
    if not folder.is_dir():
        return None
    return Fetched(folder, f"models:/{name}/{version}", {str(k): str(v) for k, v in tags},
                   run_id)


def fetch_with_mlflow(uri_text: str) -> Fetched:
    """The model version through MLflow's client: downloaded into a temporary folder that is
    removed when the process ends."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stderr: errors
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(paths.default_tracking_uri())
    pinned, tags, run_id = uri_text, {}, ""
    parts = parse(uri_text)
    if parts is not None and (parts[1] == "@" or parts[2].isdigit()):
        name, kind, ref = parts
        client = MlflowClient()
        try:
            mv = (client.get_model_version_by_alias(name, ref) if kind == "@"
                  else client.get_model_version(name, ref))
            pinned, tags = f"models:/{mv.name}/{mv.version}", dict(mv.tags)
            run_id = mv.run_id or ""
        except MlflowException:
            pass  # the download below says what is wrong
    dst = tempfile.mkdtemp(prefix="vae-anomaly-model-")
    atexit.register(shutil.rmtree, dst, ignore_errors=True)
    local = mlflow.artifacts.download_artifacts(artifact_uri=pinned, dst_path=dst)
    return Fetched(Path(local), pinned, tags, run_id)


def fetch(uri_text: str) -> Fetched:
    """A ``models:/`` or ``runs:/`` URI as a local folder with its registry tags."""
    return fetch_local(paths.default_tracking_uri(), uri_text) or fetch_with_mlflow(uri_text)
