"""The per-scan output files of the contract: their names, and writing them.

:func:`scan_outputs` is the one place that names a scan's files (heatmap, mask, JSON, HTML,
and the reconstruction images ``evaluate`` keeps). Each file is written atomically; the JSON
is written last, so its presence marks a complete set, and records the SHA-256 of every file
written with it.

Example:
    >>> from pathlib import Path
    >>> out = scan_outputs(Path("results"), "sub-01_T1")
    >>> out.heatmap.name, out.mask.name, out.json.name
    ('sub-01_T1_anomaly.nii.gz', 'sub-01_T1_anomaly_mask.nii.gz', 'sub-01_T1.json')
    >>> sorted(out.listed(report=False))
    ['heatmap', 'json', 'mask']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from pipeline.io.atomic import remove_stale_temps, write_json, write_text
from pipeline.io.errors import ScanError
from pipeline.io.nifti import write_nifti
from pipeline.scoring.provenance import with_output_hashes
from pipeline.scoring.result import ScanResult, ScanSummary

IMAGES = ("reconstruction", "restoration", "uncertainty")  # kept by evaluate for the reports


@dataclass(frozen=True)
class ScanOutputs:
    """The files of one scored scan in ``folder``, named after ``name`` (the input's stem)."""

    folder: Path
    name: str

    @property
    def heatmap(self) -> Path:
        return self.folder / f"{self.name}_anomaly.nii.gz"

    @property
    def mask(self) -> Path:
        return self.folder / f"{self.name}_anomaly_mask.nii.gz"

    @property
    def json(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def html(self) -> Path:
        return self.folder / f"{self.name}.html"

    def image(self, kind: str) -> Path:
        """One of :data:`IMAGES` (a native-grid volume evaluate keeps for the reports)."""
        return self.folder / f"{self.name}_{kind}.nii.gz"

    def listed(self, report: bool) -> dict[str, Path]:
        """The contract's files of a run (the manifest lists them), by kind."""
        files = {"heatmap": self.heatmap, "mask": self.mask, "json": self.json}
        return {**files, "html": self.html} if report else files

    def every(self) -> list[Path]:
        """Every file this scan can have."""
        return [*self.listed(report=True).values(), *(self.image(k) for k in IMAGES)]


def scan_outputs(folder: Path, name: str) -> ScanOutputs:
    return ScanOutputs(folder, name)


def extra_stem(name: str) -> str:
    """Output stem of a real lesion case of ``evaluate.extra_cases`` (never a scan's stem)."""
    return f"extra-{name}"


def check_output_paths(out: ScanOutputs) -> None:
    """Refuse to write a scan whose output path is a link (it could point anywhere) or would
    land outside its folder; remove the temp files a killed earlier run left for it."""
    root = out.folder.resolve()
    for path in out.every():
        if path.is_symlink() or path.resolve().parent != root:
            raise ScanError(f"output {path.name} is a link or leaves the output folder "
                            f"{out.folder}: refusing to write through it")
        remove_stale_temps(path)


def write_outputs(out: ScanOutputs, result: ScanResult, img: nib.Nifti1Image,
                  summary: ScanSummary, html: str | None, images: bool) -> None:
    """Write the heatmap and mask on the input's grid, the HTML report (when given), the
    reconstruction images (``images``), then the JSON, with the SHA-256 of every file
    written with it (``provenance.outputs``)."""
    check_output_paths(out)
    affine, header = img.affine, img.header
    write_nifti(out.heatmap, result.heatmap, affine, header, dtype=np.float32)
    write_nifti(out.mask, result.mask, affine, header, dtype=np.uint8)
    written = {"heatmap": out.heatmap, "mask": out.mask}
    for kind in IMAGES if images else ():
        data = getattr(result, kind)
        if data is not None:
            written[kind] = write_nifti(out.image(kind), data, affine, header)
    if html is not None:
        written["html"] = write_text(out.html, html)
    record = summary.to_json()
    record["provenance"] = with_output_hashes(record.get("provenance", {}), written)
    write_json(out.json, record)
