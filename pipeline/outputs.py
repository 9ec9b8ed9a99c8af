"""The per-scan outputs of the contract: heatmap, mask, JSON summary (and HTML report).

Each file is written atomically; the JSON is written last so its presence marks a complete set.

Example:
    >>> write_outputs(Path("results"), "sub-01", result, img, summary)   # doctest: +SKIP
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from pipeline.findings import find_components
from pipeline.modelio import LoadedModel
from pipeline.nifti import (
    ScanError,
    remove_stale_temps,
    voxel_volume_mm3,
    write_json,
    write_nifti,
    write_text,
)
from pipeline.preprocess import ScanRecord
from pipeline.provenance import with_output_hashes
from pipeline.scoretypes import KINDS
from pipeline.scoring import ScanResult


def output_paths(out_dir: Path, stem: str) -> dict[str, Path]:
    return {
        "heatmap": out_dir / f"{stem}_anomaly.nii.gz",
        "mask": out_dir / f"{stem}_anomaly_mask.nii.gz",
        "json": out_dir / f"{stem}.json",
        "html": out_dir / f"{stem}.html",
        "reconstruction": out_dir / f"{stem}_reconstruction.nii.gz",
        "restoration": out_dir / f"{stem}_restoration.nii.gz",
        "uncertainty": out_dir / f"{stem}_uncertainty.nii.gz",
    }


def check_output_paths(out_dir: Path, stem: str) -> None:
    """Refuse to write a scan whose output path is a link (it could point anywhere) or would
    land outside ``out_dir``; remove the temp files a killed earlier run left for it."""
    root = out_dir.resolve()
    for path in output_paths(out_dir, stem).values():
        if path.is_symlink() or path.resolve().parent != root:
            raise ScanError(f"output {path.name} is a link or leaves the output folder "
                            f"{out_dir}: refusing to write through it")
        remove_stale_temps(path)


def extra_stem(name: str) -> str:
    """Output stem of a real lesion case of ``evaluate.extra_cases`` (never a scan's stem)."""
    return f"extra-{name}"


def _describe(name: str) -> str:
    return "; ".join(KINDS[t].description for t in name.split("+") if t in KINDS) or name


def summary(source: str | Path, result: ScanResult, loaded: LoadedModel, record: ScanRecord,
            timings: dict[str, float], warnings: list[str] | None = None) -> dict[str, Any]:
    native_affine = np.asarray(record.native_affine)
    voxel_ml = voxel_volume_mm3(native_affine) / 1000.0
    version = loaded.meta.get("mlflow", {})
    found = find_components(result.heatmap, result.mask, native_affine, record,
                            loaded.params.report.midline_mm)
    return {
        "input": str(source),
        "scan_score": round(result.scan_score, 5),
        "scan_threshold": round(result.scan_threshold, 5),
        "threshold": round(result.voxel_threshold, 5),
        "is_abnormal": bool(result.is_abnormal),
        "flagged_voxels": int(result.mask.sum()),
        "flagged_volume_ml": round(int(result.mask.sum()) * voxel_ml, 3),
        "score": result.score,
        "heatmap_units": "mean of the healthy-calibrated z-scores of: "
                         + _describe(result.score),
        "findings": [f.to_json() for f in found],
        **result.extra,
        "model": {"uri": loaded.uri, "name": version.get("registered_model"),
                  "version": version.get("version"), "run_id": version.get("run_id")},
        "trained_on": loaded.trained_on(),
        "registration": {"dice_with_template_brain": record.registration_dice,
                         "ok": record.registration_ok, "brain_mask": record.mask_source},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "warnings": warnings or [],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_outputs(out_dir: Path, stem: str, result: ScanResult, img: nib.Nifti1Image,
                  info: dict[str, Any], html: str | None = None,
                  reconstruction: bool = False) -> dict[str, Path]:
    """Write the heatmap and mask on the input's grid, optional HTML, then the JSON, which
    records the SHA-256 of every file written with it (``provenance.outputs``)."""
    check_output_paths(out_dir, stem)
    p = output_paths(out_dir, stem)
    affine, header = img.affine, img.header
    write_nifti(p["heatmap"], result.heatmap, affine, header, dtype=np.float32)
    write_nifti(p["mask"], result.mask, affine, header, dtype=np.uint8)
    if reconstruction:
        for key in ("reconstruction", "restoration", "uncertainty"):
            data = getattr(result, key)
            if data is not None:
                write_nifti(p[key], data, affine, header)
    written = {k: p[k] for k in ("heatmap", "mask")}
    if reconstruction:
        written.update({k: p[k] for k in ("reconstruction", "restoration", "uncertainty")
                        if getattr(result, k) is not None})
    if html is not None:
        write_text(p["html"], html)
        written["html"] = p["html"]
    info = {**info, "provenance": with_output_hashes(info.get("provenance", {}), written)}
    write_json(p["json"], info)
    return p
