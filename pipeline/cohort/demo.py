"""The embedded demo cohort: synthetic "subjects" made from nilearn's ICBM152 T1 template.

Per subject (seeded): a smooth random non-linear deformation, an affine pose change, a
subject-specific native grid (axis order, flips, slight obliquity, spacing, field of view),
a multiplicative bias field, a contrast (gamma) change and Rician noise. Written as
``t1/<id>_T1.nii.gz`` and ``brainmask/<id>_brainmask.nii.gz`` like a real cohort folder.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
from nibabel.affines import voxel_sizes
from scipy import ndimage
from scipy.spatial.transform import Rotation

from pipeline.config.data_schema import DemoParams
from pipeline.config.schema import Params
from pipeline.io.atomic import atomic_write
from pipeline.io.nifti import write_nifti

_FOV_MARGIN_MM = (8.0, 25.0)   # extra field of view around the brain, per side
_GRID_OBLIQUE_DEG = 8.0        # obliquity of the native grid itself
_SCANNER_SCALE = (300.0, 1200.0)  # arbitrary scanner intensity units


def template_source() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=1)
    mask = datasets.load_mni152_brain_mask(resolution=1)
    brain = np.asarray(mask.get_fdata()) > 0.5
    image = np.where(brain, np.asarray(t1.get_fdata(), dtype=np.float32), 0.0)
    return image.astype(np.float32), brain.astype(np.float32), np.asarray(t1.affine)


def _native_grid(rng: np.random.Generator, lo_mm: np.ndarray, hi_mm: np.ndarray,
                 p: DemoParams) -> tuple[tuple[int, int, int], np.ndarray]:
    """Random orientation/spacing/FOV grid covering the box ``lo_mm``..``hi_mm``."""
    perm = rng.permutation(3)
    flips = rng.choice([-1.0, 1.0], size=3)
    axes = np.eye(3)[:, perm] * flips
    oblique = Rotation.from_rotvec(rng.normal(size=3) / np.sqrt(3)
                                   * np.deg2rad(rng.uniform(0, _GRID_OBLIQUE_DEG))).as_matrix()
    axes = oblique @ axes
    spacing = rng.uniform(p.spacing_mm_range[0], p.spacing_mm_range[1], size=3)
    margin = rng.uniform(_FOV_MARGIN_MM[0], _FOV_MARGIN_MM[1], size=3)
    centre = (lo_mm + hi_mm) / 2.0
    extent = np.abs(np.linalg.inv(axes) @ (hi_mm - lo_mm)) + 2 * margin
    shape = tuple(int(v) for v in np.ceil(extent / spacing) + 1)
    affine = np.eye(4)
    affine[:3, :3] = axes * spacing
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return (shape[0], shape[1], shape[2]), affine


def _smooth_field(rng: np.random.Generator, n_ctrl: int, shape: tuple[int, ...]) -> np.ndarray:
    ctrl = rng.normal(size=(n_ctrl,) * 3)
    return ndimage.zoom(ctrl, [s / n_ctrl for s in shape], order=3, mode="nearest")[
        tuple(slice(0, s) for s in shape)]


def make_subject(rng: np.random.Generator, image: np.ndarray, brain: np.ndarray,
                 src_affine: np.ndarray, p: DemoParams
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic subject: ``(image, brain mask, native affine)``."""
    idx = np.argwhere(brain > 0.5)
    corners = np.array(list(itertools.product(*zip(idx.min(0), idx.max(0), strict=True))))
    world = corners @ src_affine[:3, :3].T + src_affine[:3, 3]
    shape, affine = _native_grid(rng, world.min(0), world.max(0), p)

    rot = Rotation.from_rotvec(rng.normal(size=3) / np.sqrt(3)
                               * np.deg2rad(rng.uniform(0, p.rotation_deg))).as_matrix()
    scale = rng.uniform(p.scale_range[0], p.scale_range[1], size=3)
    shift = rng.uniform(-p.translation_mm, p.translation_mm, size=3)
    pose = rot @ np.diag(scale)
    centre = world.mean(0)

    ijk = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape],
                               indexing="ij"), axis=-1).reshape(-1, 3)
    pts = ijk @ affine[:3, :3].T + affine[:3, 3]               # native world (subject)
    pts = (pts - centre - shift) @ np.linalg.inv(pose).T + centre  # → template world
    disp = np.stack([_smooth_field(rng, p.deformation_control_points, shape) for _ in range(3)],
                    axis=-1).reshape(-1, 3)
    pts = pts + disp * p.deformation_mm
    src_idx = (pts - src_affine[:3, 3]) @ np.linalg.inv(src_affine[:3, :3]).T
    coords = src_idx.T.reshape(3, *shape)
    warped = ndimage.map_coordinates(image, coords, order=1, cval=0.0)
    mask = ndimage.map_coordinates(brain, coords, order=1, cval=0.0) > 0.5

    gamma = rng.uniform(p.gamma_range[0], p.gamma_range[1])
    peak = float(np.percentile(warped[mask], 99.5))
    out = np.clip(warped / peak, 0.0, None) ** gamma
    bias = np.exp(p.bias_field_strength * _smooth_field(rng, 3, shape))
    out = out * bias * rng.uniform(_SCANNER_SCALE[0], _SCANNER_SCALE[1])
    sigma = p.noise_fraction * float(np.median(out[mask]))
    out = np.sqrt((out + rng.normal(0, sigma, shape)) ** 2 + rng.normal(0, sigma, shape) ** 2)
    out = np.where(mask, out, out * 0.0).astype(np.float32)     # skull-stripped demo
    return out, mask, affine


def generate_cohort(folder: Path, params: Params) -> list[str]:
    """Write the demo cohort to ``folder``; return the subject ids."""
    image, brain, src_affine = template_source()
    ids = []
    rows = []
    for i in range(params.demo.n_subjects):
        sid = f"demo{i:03d}"
        rng = np.random.default_rng([params.seed, i])
        data, mask, affine = make_subject(rng, image, brain, src_affine, params.demo)
        write_nifti(folder / "t1" / f"{sid}_T1.nii.gz", data, affine)
        write_nifti(folder / "brainmask" / f"{sid}_brainmask.nii.gz", mask, affine, dtype=np.uint8)
        ids.append(sid)
        rows.append({"MRID": sid, "shape": "x".join(map(str, data.shape)),
                     "spacing_mm": "x".join(f"{s:.2f}" for s in
                                            voxel_sizes(affine))})

    def table(path: Path) -> None:
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(folder / "participants.csv", table)
    return ids
