"""Which inputs a restarted ``score`` batch still has to do: content hashes, not timestamps.

Each scan's JSON (written last, atomically) records under ``provenance`` the SHA-256 of its
input and brain mask, a fingerprint of the model (``model.json`` and ``calibration.json``,
which hold the verified checksums of every weight file), the options that shape the outputs,
and the SHA-256 of every output file written with it. The options include the model pass's
precision and a digest of the package's code, so a change of device or an upgrade redoes
the scans. A later run skips a scan only when all of these still match, so a killed, edited
or half-deleted set is redone and an intact one is not.

Example:
    >>> import json, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> scan, heat = folder / "a.nii.gz", folder / "a_anomaly.nii.gz"
    >>> _ = scan.write_bytes(b"scan"), heat.write_bytes(b"map")
    >>> prov = scan_provenance(scan, None, "model-fingerprint", {"report": False})
    >>> _ = (folder / "a.json").write_text(json.dumps(
    ...     {"provenance": with_output_hashes(prov, {"heatmap": heat})}))
    >>> up_to_date(folder / "a.json", prov)
    True
    >>> _ = heat.write_bytes(b"damaged")
    >>> up_to_date(folder / "a.json", prov)
    False
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pipeline.io.atomic import sha256

OUTPUTS = "outputs"


def model_fingerprint(folder: Path, files: tuple[str, ...]) -> str:
    """SHA-256 over the model's JSON files (those that exist) in ``folder``."""
    digest = hashlib.sha256()
    for name in files:
        path = folder / name
        digest.update(name.encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def scan_provenance(scan: Path, mask: Path | None, model: str, options: dict[str, Any]
                    ) -> dict[str, Any]:
    """What a scan's outputs depend on (its files are hashed; raises ``OSError`` if absent)."""
    prov = {"input_sha256": sha256(scan),
            "brain_mask_sha256": sha256(mask) if mask is not None else None,
            "model_fingerprint": model, "options": options}
    return json.loads(json.dumps(prov))  # as the JSON will hold it: compared like for like


def with_output_hashes(provenance: dict[str, Any], files: dict[str, Path]) -> dict[str, Any]:
    """``provenance`` plus the SHA-256 of each written output file (by its file name)."""
    return {**provenance, OUTPUTS: {p.name: sha256(p) for p in files.values()}}


def up_to_date(json_path: Path, provenance: dict[str, Any]) -> bool:
    """Whether ``json_path`` records this provenance and every output it lists is intact."""
    try:
        recorded = json.loads(json_path.read_text())["provenance"]
        outputs = recorded.pop(OUTPUTS)
        if recorded != provenance or not outputs:
            return False
        if any(Path(name).name != name for name in outputs):
            return False  # only files beside the JSON count
        return all(sha256(json_path.parent / name) == digest
                   for name, digest in outputs.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
