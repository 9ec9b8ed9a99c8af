"""Which inputs of a run still need the model: names, provenance, kept outputs.

Before anything is prepared, each of this rank's inputs is either settled at once (failed:
no output name, a link in the way, …; up to date: complete outputs of the same input, mask,
model and options are kept) or becomes a :class:`~pipeline.inference.batch.Job`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config.code import package_digest
from pipeline.inference.batch import MANIFEST, Job, default_workers, share
from pipeline.inference.options import AUTO, ScoreOptions, Status
from pipeline.inference.results import ScanOutcome, failed
from pipeline.io.errors import ScanError
from pipeline.io.nifti import stem
from pipeline.model.distributed import World
from pipeline.model.runtime import score_dtype
from pipeline.modelstore.folder import CALIBRATION_JSON, MODEL_JSON
from pipeline.modelstore.types import LoadedModel
from pipeline.scoring.outputs import ScanOutputs, check_output_paths, scan_outputs
from pipeline.scoring.provenance import model_fingerprint, scan_provenance, up_to_date
from pipeline.scoring.result import ScanSummary

MANIFEST_STEM = Path(MANIFEST).name.removesuffix(".json")  # no scan's output name


def fingerprint(model: LoadedModel) -> str:
    """The model's fingerprint in provenance records and the manifest."""
    return model_fingerprint(model.folder, (MODEL_JSON, CALIBRATION_JSON))


def options_record(model: LoadedModel, options: ScoreOptions) -> dict[str, Any]:
    """The options that shape a scan's outputs, as its provenance records them."""
    device = next(model.vae.parameters()).device
    return {"report": options.report, "convention": options.convention,
            "device": device.type, "code": package_digest(),
            "precision": str(score_dtype(model.params.scoring.precision, device))}


@dataclass
class Plan:
    """This rank's inputs: settled at once, or jobs for the model; ``fingerprint`` is the
    model's, as the scans' provenance and the manifest record it."""

    out: Path
    fingerprint: str
    jobs: list[Job]
    settled: list[ScanOutcome]

    @classmethod
    def of(cls, model: LoadedModel, scans: list[Path], masks: list[Path | None],
           options: ScoreOptions, world: World) -> Plan:
        names = output_names(scans)
        record, fp = options_record(model, options), fingerprint(model)
        plan = cls(options.out, fp, [], [])
        for i in share(len(scans), world):
            scan, name = scans[i], names[i]
            try:
                if isinstance(name, ScanError):
                    raise name
                files = plan.files(name)
                check_output_paths(files)  # never read or write through a link
                prov = _provenance(scan, masks[i], plan.fingerprint, record)
                if prov is not None and not options.force and up_to_date(files.json, prov):
                    verdict, kept = _kept(files)
                    plan.settled.append(ScanOutcome(scan, Status.UP_TO_DATE, i,
                                                    files.listed(options.report), verdict,
                                                    kept))
                    continue
                plan.jobs.append(Job(scan, masks[i], name, prov, index=i))
            except ScanError as exc:
                plan.settled.append(failed(scan, i, exc))
        return plan

    def files(self, name: str) -> ScanOutputs:
        return scan_outputs(self.out, name)

    def workers(self, options: ScoreOptions, world: World) -> int:
        """Preparation workers of this run."""
        if options.workers == AUTO:
            return default_workers(len(self.jobs), world)
        return int(options.workers)


def output_names(scans: list[Path]) -> list[str | ScanError]:
    """Each input's output name, or why it has none (the first of two equal names wins;
    the manifest's own name is reserved)."""
    seen: set[str] = {MANIFEST_STEM}
    names: list[str | ScanError] = []
    for scan in scans:
        name = stem(scan)
        if name in seen:
            names.append(ScanError(f"another input (or the manifest) has the same output name "
                                   f"{name!r}"))
            continue
        seen.add(name)
        names.append(name)
    return names


def _kept(files: ScanOutputs) -> tuple[str | None, ScanSummary | None]:
    """The verdict and summary recorded by the kept outputs of an up-to-date scan."""
    try:
        record = json.loads(files.json.read_text())
    except (OSError, ValueError):
        return None, None
    try:
        summary = ScanSummary.from_json(record)
    except (ValueError, TypeError, KeyError):
        summary = None
    return str(record.get("verdict")) or None, summary


def _provenance(scan: Path, mask: Path | None, fp: str, options: dict[str, Any]
                ) -> dict[str, Any] | None:
    """The scan's provenance, or None when a file cannot be hashed (loading then says why)."""
    try:
        return scan_provenance(scan, mask, fp, options)
    except OSError:
        return None
