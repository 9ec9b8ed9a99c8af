"""Per-scan reports and their parts: orientation, findings, self-containment, in a browser."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO, oblique_affine, phantom
from markupsafe import Markup

from pipeline.config.params import load_params
from pipeline.preprocess.record import ScanRecord
from pipeline.reporting import render
from pipeline.reporting.cohort_page import CaseRow, render_index
from pipeline.reporting.scan_report import CanonicalVolumes, ReportVolumes, render_scan_report
from pipeline.scoring.findings import find_components, find_located
from pipeline.scoring.result import ScanSummary
from pipeline.space.geometry import affine_transform_to_json
from pipeline.space.grid import to_canonical

REPORT = load_params(REPO / "configs" / "params.yaml").report


def _blob(shape: tuple[int, ...], centre: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def _synthetic_case() -> tuple[ReportVolumes, ScanSummary]:
    image, brain = phantom()
    affine = oblique_affine((2.2, 1.8, 2.5))
    heat = np.zeros(image.shape, np.float32)
    heat[_blob(image.shape, (12, 20, 18), 3)] = 6.0
    heat[_blob(image.shape, (28, 30, 14), 2)] = 9.0
    heat += 0.5 * brain
    mask = (heat > 4.0).astype(np.uint8)
    info = ScanSummary(
        input="/data/sub 01 ü 'x'<b>.nii.gz", threshold=4.0, scan_score=7.5,
        scan_threshold=5.0, is_abnormal=True, flagged_voxels=int(mask.sum()),
        flagged_volume_ml=1.2, score="nll", heatmap_units="z-score",
        findings=find_components(heat, mask, affine),
        created="2026-11-24T00:00:00+00:00",
        model={"name": "m", "version": "3", "uri": "models:/m@champion"},
        trained_on={"modality": "T1w", "space": "MNI152", "cohort": "test", "n_train": 9},
        registration={"dice_with_template_brain": 0.95, "brain_mask": "given"},
        timings_s={}, warnings=[])
    vols = ReportVolumes(image, affine, heat, mask, reconstruction=image * 0.9,
                         restoration=image * 0.95, truth=_blob(image.shape, (12, 20, 18), 2))
    return vols, info


def test_views_put_each_direction_on_its_labelled_edge() -> None:
    # a permuted, flipped native grid: i runs posterior, j runs inferior, k runs left
    affine = np.array([[0.0, 0.0, -2.0, 40], [-2.0, 0, 0, 50], [0, -2.0, 0, 60], [0, 0, 0, 1]])
    shape = (30, 32, 34)
    centre = np.array(shape) // 2
    world_dirs = {"L": [-1, 0, 0], "R": [1, 0, 0], "P": [0, -1, 0], "A": [0, 1, 0],
                  "I": [0, 0, -1], "S": [0, 0, 1]}
    for letter, direction in world_dirs.items():
        vox = np.linalg.solve(affine[:3, :3], np.asarray(direction, float) * 20.0)
        point = np.rint(centre + vox).astype(int)
        vol = np.zeros(shape, np.float32)
        vol[tuple(point)] = 1.0
        canon = to_canonical(vol, affine)[0]
        peak = np.argwhere(canon == 1.0)[0]
        for plane, normal in (("axial", "SI"), ("coronal", "AP"), ("sagittal", "LR")):
            if letter in normal:
                continue  # the marker sits at the centre of that plane's view
            axis = {"axial": 2, "coronal": 1, "sagittal": 0}[plane]
            for convention in ("radiological", "neurological"):
                view = render.display_slice(canon, plane, int(peak[axis]), convention)
                r, c = np.argwhere(view == 1.0)[0]
                edges = render.labels(plane, convention)
                h, w = view.shape
                nearest = min({"left": c, "right": w - 1 - c, "top": r, "bottom": h - 1 - r}
                              .items(), key=lambda kv: kv[1])[0]
                assert edges[nearest] == letter, (letter, plane, convention)


def test_findings_volumes_peaks_and_mni_location() -> None:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-90.0, -126.0, -72.0]  # MNI152 2 mm corner
    shape = (91, 109, 91)
    wm = tuple(int(v) for v in np.rint(np.linalg.solve(affine[:3, :3],
                                                       np.array([-26, -10, 30]) - affine[:3, 3])))
    outside = (45, 54, 88)  # above the head, near the top of the MNI box
    heat = np.zeros(shape, np.float32)
    heat[_blob(shape, wm, 2)] = 5.0
    heat[_blob(shape, outside, 1)] = 8.0
    mask = heat > 1
    identity = affine_transform_to_json(sitk.AffineTransform(3))
    record = ScanRecord(list(shape), affine.tolist(), [], list(shape), affine.tolist(),
                        identity, affine.tolist(), list(shape), "MNI", "given", 1.0, 1.0, True,
                        0.0, 1.0)
    rows = find_located(heat, mask, record, midline_mm=4.0)
    assert [r.peak for r in rows] == [8.0, 5.0]  # strongest first
    assert rows[1].voxels == int(_blob(shape, wm, 2).sum())
    assert rows[1].volume_ml == pytest.approx(rows[1].voxels * 8 / 1000, abs=1e-3)
    assert rows[1].centroid_mni == pytest.approx([-26, -10, 30], abs=1.5)
    assert rows[1].hemisphere == "left"
    label, prob = rows[1].tissue.split(" (")
    assert label == "white matter" and 0.5 <= float(prob.rstrip(")")) <= 1.0
    assert rows[0].hemisphere == "midline"
    assert rows[0].tissue == "CSF or outside GM/WM"
    assert tuple(rows[1].peak_voxel) in {tuple(p) for p in np.argwhere(_blob(shape, wm, 2))}
    # a real registration (rotation, translation, centre): MNI = its inverse at the centroid,
    # in SimpleITK's LPS millimetres
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(sitk.VersorTransform((0.1, -0.2, 0.3), 0.4).GetMatrix())
    tx.SetTranslation((5.0, -7.0, 3.0))
    tx.SetCenter((10.0, 20.0, -5.0))
    record.transform = affine_transform_to_json(tx)
    for row in find_located(heat, mask, record, 4.0, tissue=False):
        x, y, z = row.centroid_mm
        lps = tx.GetInverse().TransformPoint((-x, -y, z))
        assert row.centroid_mni == pytest.approx([-lps[0], -lps[1], lps[2]], abs=0.11)


def test_report_is_self_contained_and_complete() -> None:
    vols, info = _synthetic_case()
    page = render_scan_report(CanonicalVolumes(vols), info, [3.0, 4.0, 6.0, 8.0], REPORT)
    srcs = re.findall(r"src='([^']*)'", page)
    assert srcs and all(s.startswith("data:image/") for s in srcs)
    assert "http-equiv='Content-Security-Policy'" in page and "default-src 'none'" in page
    assert not re.search(r"(href|src|url)\s*=?\s*\(?['\"]?https?:", page)
    assert "pseudo-healthy restoration" in page and "reconstruction" in page
    assert "sub 01 ü &#39;x&#39;&lt;b&gt;.nii.gz" in page and "<b>.nii" not in page
    assert "ABNORMAL" in page
    assert "radiological convention" in page
    assert "higher than 75% of the 4 healthy calibration scans" in page
    findings = re.search(r"<h2>Findings \((\d+)\)</h2>", page)
    assert findings is not None and int(findings.group(1)) == 2
    assert "Green outline: known lesions" in page


def _index_page(tmp_path: Path) -> Path:
    rows = [CaseRow("b-scan", "test_healthy", 2.0, "normal", 0.0, 0, 0.0, "case.html"),
            CaseRow("c'<img src=x onerror=alert(1)>", "test_healthy", 1.0, "normal", 0.0, 0, 0.0,
                    "cases/sub#1 'q'.html"),
            CaseRow("a-scan", "test_lesion", 9.0, "abnormal", 1.5, 2, 7.5, "case.html")]
    metrics = {"voxel_auroc": 0.9, "voxel_auprc": 0.5, "score": "nll",
               "score_types": {"nll": {"voxel_auroc": 0.9}, "autoencoder": {"voxel_auroc": 0.8}}}
    curves: dict[str, Any] = {"roc": ([0.0, 0.1, 1.0], [0.0, 0.8, 1.0]),
                              "pr": ([0.0, 0.5, 1.0], [1.0, 0.6, 0.1])}
    vols, _ = _synthetic_case()
    from pipeline.reporting.cohort_page import gallery_tile

    c = CanonicalVolumes(vols)
    gallery = [gallery_tile(c, 4.0, REPORT, "b-scan: 0.00 mL", "case.html"),
               gallery_tile(c, 4.0, REPORT, "c'<img src=x onerror=alert(1)>", None)]
    page = tmp_path / "index.html"
    text = render_index(metrics, rows, {"modality": "T1w"}, curves, gallery, {}, Markup(""),
                        {})
    assert "<img src=x" not in text and "href='cases/sub%231%20%27q%27.html'" in text
    page.write_text(text)
    return page


@pytest.mark.browser
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    from browser import Browser, require_browser

    require_browser()
    from PIL import Image

    vols, info = _synthetic_case()
    case = tmp_path / "case.html"
    case.write_text(render_scan_report(CanonicalVolumes(vols), info, [3.0, 4.0, 6.0], REPORT))
    index = _index_page(tmp_path)
    with Browser() as b:
        for page in (case, index):
            result = b.load(page)
            assert result.console_errors == [], page.name
            outside = [u for u in result.requests
                       if not (u.startswith("data:") or u == page.resolve().as_uri())]
            assert outside == [], page.name
            assert result.images and all(i["ok"] and i["w"] > 0 and i["h"] > 0
                                         for i in result.images), result.images
            shot = np.asarray(Image.open(io.BytesIO(result.screenshot_png)).convert("L"))
            background = np.bincount(shot.ravel()).argmax()
            assert (shot != background).mean() > 0.01 and shot.std() > 10, page.name
            if page is case:  # the slice viewer moves its sprites
                moved = b.evaluate(
                    "(function(){var v=document.querySelector('.viewer');"
                    "var r=v.querySelector('input[type=range]');r.value=0;"
                    "r.dispatchEvent(new Event('input'));var a=v.querySelector('img').style"
                    ".transform;r.value=r.max;r.dispatchEvent(new Event('input'));"
                    "return [a, v.querySelector('img').style.transform,"
                    "v.querySelector('.pos').textContent];})()")
                assert moved[0] == "translateY(0px)" and moved[1] != moved[0]
                assert moved[2].startswith("slice ")
            else:  # the scan table sorts on a header click
                order = b.evaluate(
                    "(function(){var t=document.querySelectorAll('table.sortable')[1];"
                    "t.querySelectorAll('th')[2].click();var first=t.tBodies[0].rows[0]"
                    ".cells[0].textContent;t.querySelectorAll('th')[2].click();"
                    "return [first, t.tBodies[0].rows[0].cells[0].textContent];})()")
                # lowest score first, then highest; the hostile name shows as plain text
                assert order == ["c'<img src=x onerror=alert(1)>", "a-scan"]

