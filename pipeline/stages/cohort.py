"""``vae-anomaly cohort``: materialise the demo cohort (or check a real cohort folder).

For the demo preset (``cohort.folder`` = ``data/cohort``) the synthetic ICBM152 subjects are
generated; for a real cohort the folder is only listed, nothing is copied. ``cohort.json``
names each scan relative to the project root (``../shared/...`` for a cohort beside it, as
``cohort.folder`` gives it), so it is the same wherever the project lives.
"""

from __future__ import annotations

import logging
import shutil

from pipeline.cohort.demo import generate_cohort
from pipeline.cohort.subjects import list_subjects
from pipeline.config import paths
from pipeline.config.schema import Params
from pipeline.io.atomic import write_json

log = logging.getLogger(__name__)


def run(params: Params) -> None:
    folder = params.cohort_folder()
    demo = paths.cohort_dir(params.root).resolve()
    if folder.resolve() == demo:
        if demo.exists():
            shutil.rmtree(demo)
        ids = generate_cohort(demo, params)
        log.info("generated %d demo subjects in %s", len(ids), demo)
    else:
        demo.mkdir(parents=True, exist_ok=True)
    subjects = list_subjects(params)
    write_json(demo / "cohort.json", {
        "name": params.cohort.name, "folder": str(params.cohort.folder),
        "subjects": [{"id": s.id, "image": paths.stored(s.image, params.root),
                      "mask": paths.stored(s.mask or "", params.root),
                      "bytes": s.image.stat().st_size}
                     for s in subjects]})
    log.info("cohort %s: %d scans", params.cohort.name, len(subjects))
