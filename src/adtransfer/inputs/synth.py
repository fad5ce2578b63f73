"""Synthetic FDG PET / ECD SPECT cohorts: the embedded default data.

A cohort is written exactly as a user would provide one (participants.tsv + one NIfTI per subject, already
in MNI space on the SPM 2 mm grid, as ADNI's SPM-normalized downloads are), so it takes the same code path
as real data. Brains are built from MNI152 grey/white-matter templates; the AD pattern lowers uptake in the
posterior cingulate, precuneus, parietal, temporal and hippocampal AAL3 regions in proportion to a
per-subject severity; MCI subjects lie in between and MMSE falls with severity. Normal inter-subject regional
variation, a smooth multiplicative field, site effects, global scaling, the modality's resolution and noise
keep the task from being trivial. The ground truth (severity, altered regions, pattern map) is written beside.

Every subject draws from its own stream of the cohort's seed, so the result does not depend on how many
worker processes generate it.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from adtransfer import modalities
from adtransfer.configuration import subject_ids
from adtransfer.imaging.templates import load_templates
from adtransfer.io import atomic_output, save_nifti, write_text

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))

# AAL3 name prefix -> weight of the AD reduction there (1 = the full effect). Hypometabolism/hypoperfusion
# in AD is strongest in posterior cingulate and precuneus, then parietal and temporal association cortex,
# then the medial temporal lobe.
AD_REGIONS: dict[str, float] = {
    "Cingulate_Post": 1.0,
    "Precuneus": 0.9,
    "Parietal_Inf": 0.8,
    "Angular": 0.8,
    "SupraMarginal": 0.5,
    "Temporal_Mid": 0.7,
    "Temporal_Inf": 0.7,
    "Temporal_Pole": 0.4,
    "Hippocampus": 0.6,
    "ParaHippocampal": 0.6,
}


@dataclass(frozen=True)
class Demographics:
    age: tuple[float, float]  # mean, SD
    female: float  # fraction


@dataclass(frozen=True)
class ModalityModel:
    """How a modality's synthetic scans look beyond the registry's tissue contrast and resolution
    (adtransfer.modalities): noise, effect size, units, demographics of its cohort."""

    modality: str  # its registry name
    noise: float  # SD of voxel noise relative to local uptake
    effect: float  # fractional uptake loss at AD weight 1 and severity 1
    unit: float  # typical global mean in the file's units
    demographics: dict[str, Demographics] = field(default_factory=dict)
    n_sites: int = 4

    @property
    def wm_ratio(self) -> float:  # white-matter uptake relative to grey matter
        return modalities.get(self.modality).wm_ratio

    @property
    def fwhm_mm(self) -> float:
        return modalities.get(self.modality).fwhm_mm


# The cohorts' people: age (mean, SD) and fraction female per class, as the paper's Table 1 reports them
FDG_PEOPLE = {"NC": ((76.3, 5.8), 263 / 629), "AD": ((76.2, 7.5), 253 / 638), "MCI": ((75.9, 7.8), 236 / 654)}
ECD_PEOPLE = {"NC": ((67.0, 8.5), 88 / 134), "AD": ((74.4, 7.0), 58 / 113), "MCI": ((71.0, 8.0), 0.55)}


def _people(table: dict) -> dict[str, Demographics]:
    return {cls: Demographics(age, female) for cls, (age, female) in table.items()}


MODALITIES: dict[str, ModalityModel] = {
    m.modality: m
    for m in (
        ModalityModel("fdg_pet", noise=0.05, effect=0.19, unit=8000.0, n_sites=5, demographics=_people(FDG_PEOPLE)),
        ModalityModel("ecd_spect", noise=0.06, effect=0.18, unit=300.0, n_sites=4, demographics=_people(ECD_PEOPLE)),
    )
}


@dataclass(frozen=True)
class CohortSpec:
    name: str
    modality: str
    n_ad: int
    n_nc: int
    n_mci: int = 0
    seed: int = 0
    fwhm_mm: float | None = None  # None: the modality's default
    effect: float | None = None
    noise: float | None = None
    region_sd: float = 0.06  # normal inter-subject variation of regional uptake
    field_sd: float = 0.05  # smooth multiplicative field (scanner/attenuation/normalization residue)
    site_sd: float = 0.04  # per-site gradient amplitude
    global_sd: float = 0.2  # log-SD of per-subject global scaling
    space: str = "mni"  # mni: on the SPM 2 mm grid; native: scanner space (random rigid pose, site voxel sizes)
    native_voxel_mm: tuple[float, float, float] = (2.4, 2.4, 3.3)
    native_fov_mm: tuple[float, float, float] = (256.0, 256.0, 200.0)
    max_rotation_deg: float = 10.0
    max_translation_mm: float = 15.0
    effect_pattern: str = "regional"  # regional (painted per AAL3 region) | smooth (atlas-free; see smooth_blobs)
    jitter_mm: float = 4.0  # smooth: SD of each subject's shift of the AD pattern, per axis

    @classmethod
    def from_config(cls, name: str, modality: str, synthetic: dict, seed: int) -> CohortSpec:
        keys = set(cls.__dataclass_fields__) - {"name", "modality", "seed"}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in synthetic.items() if k in keys}
        return cls(name=name, modality=modality, seed=seed, **values)

    @property
    def model(self) -> ModalityModel:
        return MODALITIES[self.modality]

    @property
    def n(self) -> int:
        return self.n_ad + self.n_nc + self.n_mci

    def stream(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(self.name.encode()), *keys])


def draw_participants(spec: CohortSpec) -> pd.DataFrame:
    """Diagnosis, severity, MMSE, age, sex and site per subject (no images)."""
    rng = spec.stream(0)
    dx = np.array(["AD"] * spec.n_ad + ["NC"] * spec.n_nc + ["MCI"] * spec.n_mci)
    dx = dx[rng.permutation(len(dx))]
    severity = np.where(
        dx == "AD",
        rng.uniform(0.25, 1.0, len(dx)),
        np.where(dx == "MCI", rng.uniform(0.0, 0.5, len(dx)), np.abs(rng.normal(0.0, 0.05, len(dx)))),
    )
    mmse = np.where(
        dx == "AD",
        29.0 - 14.0 * severity + rng.normal(0, 2.5, len(dx)),
        np.where(
            dx == "MCI",
            28.0 - 4.0 * severity + rng.normal(0, 1.5, len(dx)),
            29.0 - 5.0 * severity + rng.normal(0, 1.0, len(dx)),
        ),
    )
    demo = spec.model.demographics
    age = np.array([rng.normal(*demo[d].age) for d in dx]).clip(50, 95)
    sex = np.where(rng.uniform(size=len(dx)) < np.array([demo[d].female for d in dx]), "F", "M")
    site = np.array([f"S{s + 1:02d}" for s in rng.integers(0, spec.model.n_sites, len(dx))])
    ids = subject_ids(spec.name, spec.n)
    return pd.DataFrame(
        {
            "subject_id": ids,
            "diagnosis": dx,
            "mmse": np.clip(np.round(mmse), 0, 30).astype(int),
            "age": np.round(age, 1),
            "sex": sex,
            "site": site,
            "path": [f"scans/{s}.nii.gz" for s in ids],
            "severity": np.round(severity, 4),
        }
    )


def ad_pattern(templates=None, smooth_mm: float = 6.0) -> np.ndarray:
    """The AD weight map on the MNI grid (0..1): AD_REGIONS painted from AAL3, softened at the edges."""
    t = templates or load_templates()
    w = np.zeros(t.atlas.shape, np.float32)
    for prefix, weight in AD_REGIONS.items():
        w[t.region_mask([prefix])] = weight
    w = ndimage.gaussian_filter(w, smooth_mm * FWHM_TO_SIGMA / t.grid.voxel_mm)
    return w * t.brain_mask


# --- the atlas-free ("smooth") effect ---------------------------------------------------------------------
# Painted per AAL3 region, the AD effect and the normal variation live in the ROI baseline's own feature space:
# a regional-mean classifier then wins by construction. The smooth kind puts the effect in Gaussian blobs
# centred on the borders *between* pairs of adjacent AD regions, each with a gradient across it (sub-regional),
# and jitters each subject's pattern (shift, per-blob amplitude); normal variation is a smooth random field.

# pairs of AD regions (AAL3 name prefixes) whose common border centres a blob, in each hemisphere
SMOOTH_PAIRS: tuple[tuple[str, str], ...] = (
    ("Cingulate_Post", "Precuneus"),
    ("Precuneus", "Parietal_Inf"),
    ("Parietal_Inf", "Angular"),
    ("Angular", "SupraMarginal"),
    ("Angular", "Temporal_Mid"),
    ("Temporal_Mid", "Temporal_Inf"),
    ("Temporal_Inf", "Temporal_Pole"),
    ("Hippocampus", "ParaHippocampal"),
)
BLOB_SIGMA_MM = 10.0
BLOB_GRADIENT = 0.6  # relative change of the blob's weight per sigma, posterior (higher) to anterior
AMPLITUDE_SD = 0.3  # log-SD of each blob's per-subject amplitude
NORMAL_VARIATION_MM = 8.0  # smoothing of the atlas-free normal variation
EFFECT_PATTERNS = ("regional", "smooth")


def _world_mm(grid) -> np.ndarray:
    idx = np.indices(grid.shape, dtype=np.float32)
    return np.stack([grid.origin_mm[k] + grid.voxel_mm * idx[k] for k in range(3)])


def smooth_blobs(templates=None) -> np.ndarray:
    """The atlas-free AD effect's blobs (B, X, Y, Z) for `templates` (default: the shipped ones, computed once)."""
    t = templates or load_templates()
    return _default_smooth_blobs() if t is load_templates() else _smooth_blobs(t)


@functools.lru_cache(maxsize=1)
def _default_smooth_blobs() -> np.ndarray:
    blobs = _smooth_blobs(load_templates())
    blobs.flags.writeable = False
    return blobs


def _smooth_blobs(t) -> np.ndarray:
    """The atlas-free AD effect as (B, X, Y, Z) blobs on the MNI grid; the pattern is their voxel-wise maximum
    (overlapping blobs do not add up), which peaks at 1.

    Blob centre: the centre of the border voxels between two adjacent AD regions of one hemisphere (the midpoint
    of their centroids if they do not touch); weight: the mean of the two regions' AD_REGIONS weights; a
    posterior-to-anterior gradient across the blob, so that no region is altered uniformly."""
    xyz = _world_mm(t.grid)
    left = xyz[0] < 0
    sigma = BLOB_SIGMA_MM
    blobs = []
    for a, b in SMOOTH_PAIRS:
        for side in (left, ~left):
            ma, mb = t.region_mask([a]) & side, t.region_mask([b]) & side
            border = (ndimage.binary_dilation(ma) & mb) | (ndimage.binary_dilation(mb) & ma)
            if border.sum() >= 5:
                centre = xyz[:, border].mean(axis=1)
            else:
                centre = (xyz[:, ma].mean(axis=1) + xyz[:, mb].mean(axis=1)) / 2
            d = xyz - centre[:, None, None, None]
            blob = np.exp(-0.5 * (d**2).sum(axis=0) / sigma**2)
            blob *= np.clip(1.0 - BLOB_GRADIENT * d[1] / sigma, 0.0, None)  # y grows anterior
            blobs.append(blob * (AD_REGIONS[a] + AD_REGIONS[b]) / 2)
    out = np.stack(blobs).astype(np.float32) * t.brain_mask
    return out / out.max()


def effect_pattern_map(kind: str = "regional", templates=None) -> np.ndarray:
    """The cohort's AD weight map (0..1) on the MNI grid: the voxel-level ground truth (for the smooth kind, the
    pattern before each subject's jitter)."""
    if kind == "regional":
        return ad_pattern(templates)
    if kind == "smooth":
        return smooth_blobs(templates).max(axis=0)
    raise ValueError(f"unknown effect pattern {kind!r}; expected one of {', '.join(EFFECT_PATTERNS)}")


def regions_covered(pattern: np.ndarray, templates=None, mass: float = 0.8) -> dict[str, float]:
    """The AAL3 regions a voxel-level pattern mostly covers: the fewest regions holding `mass` of its in-atlas
    mass, largest first, each with its mean pattern weight (what the regional kind lists as its weights)."""
    t = templates or load_templates()
    labels = t.atlas.reshape(-1)
    weights = pattern.reshape(-1).astype(np.float64)
    sums = np.bincount(labels, weights=weights, minlength=max(t.labels) + 1)
    counts = np.bincount(labels, minlength=max(t.labels) + 1)
    sums[0] = 0.0
    order = np.argsort(sums)[::-1]
    cum = np.cumsum(sums[order]) / sums.sum()
    chosen = order[: int(np.searchsorted(cum, mass)) + 1]
    return {t.labels[int(i)]: round(float(sums[i] / counts[i]), 4) for i in chosen if i in t.labels}


def synthetic_kind(truth: dict) -> tuple[str, str]:
    """The kind of a synthetic cohort's AD effect (from its ground_truth.json) and what it implies for the
    CNN-vs-ROI-baseline comparison, in one sentence (for the summary)."""
    kind = truth.get("effect_pattern", "regional")
    if kind == "smooth":
        return kind, (
            "the synthetic AD effect is atlas-free (smooth blobs centred between AAL3 regions, with sub-regional "
            "gradients and per-subject jitter), not painted in the regional-mean baseline's AAL3 feature space, "
            "so that baseline has no built-in advantage (it still captures much of a smooth effect: README, "
            "Synthetic cohorts)"
        )
    return kind, (
        "the synthetic AD effect and normal variation are painted per AAL3 region, the ROI baseline's own "
        "feature space, so the comparison favours the regional-mean baseline by construction"
    )


def effect_truth(spec: CohortSpec, templates=None) -> tuple[np.ndarray, dict]:
    """The cohort's voxel-level truth map and the ground_truth.json entries describing the effect."""
    t = templates or load_templates()
    kind = spec.effect_pattern
    pattern = effect_pattern_map(kind, t)
    if kind == "regional":
        altered = dict(AD_REGIONS)
        note = "uptake = tissue * regional * (1 - effect * severity * pattern) * fields, smoothed, noised"
    else:
        altered = regions_covered(pattern, t)
        note = (
            "uptake = tissue * smooth_variation * (1 - effect * severity * pattern_i) * fields, smoothed, noised; "
            "pattern_i = the blobs of pattern_map with per-subject amplitudes, shifted by the subject's jitter; "
            "altered_regions = AAL3 regions holding 80 % of the pattern's mass, with their mean weight"
        )
    _, implication = synthetic_kind({"effect_pattern": kind})
    entries = {
        "effect_pattern": kind,
        "effect_pattern_implication": implication,
        "altered_regions": altered,
        "note": note,
    }
    if kind == "smooth":
        entries["jitter_mm"] = spec.jitter_mm
    return pattern.astype(np.float32), entries


COARSE_FIELD = (6, 7, 6)  # control points of a subject's smooth multiplicative field


def zoom_matrices(shape_in: tuple[int, ...], shape_out: tuple[int, ...]) -> list[np.ndarray]:
    """One (n_out, n_in) matrix per axis; column j: ndimage.zoom(order=3) of the j-th unit vector, n_in -> n_out.

    ndimage's spline zoom is linear and separable, so upsample() with these equals ndimage.zoom(x, shape_out /
    shape_in, order=3) (to < 1e-14 for the smooth field) in 7 ms instead of 0.4 s (60 % of a subject's simulation).
    Same seed, same machine: the same scans; the last bit may differ between BLAS builds."""
    return [
        np.stack([ndimage.zoom(e, n_out / n_in, order=3) for e in np.eye(n_in)], axis=1)
        for n_in, n_out in zip(shape_in, shape_out, strict=True)
    ]


def upsample(coarse: np.ndarray, matrices: list[np.ndarray]) -> np.ndarray:
    """The 3-D array of zoom_matrices' per-axis products."""
    return np.einsum("ia,jb,kc,abc->ijk", *matrices, coarse, optimize=True)


class _Simulator:
    """Per-process state: templates and the fixed maps every subject of a cohort shares."""

    def __init__(self, spec: CohortSpec):
        self.spec = spec
        self.t = t = load_templates()
        m = spec.model
        self.fwhm = spec.fwhm_mm if spec.fwhm_mm is not None else m.fwhm_mm
        self.effect = spec.effect if spec.effect is not None else m.effect
        self.noise = spec.noise if spec.noise is not None else m.noise
        csf = np.clip(1.0 - t.gm - t.wm, 0, 1) * t.brain_mask
        head = ndimage.binary_dilation(t.brain_mask, iterations=5)
        self.tissue = (t.gm + m.wm_ratio * t.wm + 0.08 * csf + 0.04 * (head & ~t.brain_mask)).astype(np.float32)
        self.head = head
        if spec.effect_pattern not in EFFECT_PATTERNS:
            raise ValueError(f"unknown effect pattern {spec.effect_pattern!r}; expected one of {EFFECT_PATTERNS}")
        self.blobs = smooth_blobs(t) if spec.effect_pattern == "smooth" else None
        self.pattern = ad_pattern(t) if self.blobs is None else self.blobs.max(axis=0)
        labels = np.unique(t.atlas)
        self.label_index = np.searchsorted(labels, t.atlas)  # atlas label -> 0..R
        self.n_labels = len(labels)
        self.zoom_axes = zoom_matrices(COARSE_FIELD, t.grid.shape)
        z = np.linspace(-1.0, 1.0, t.grid.shape[2], dtype=np.float32)
        self.site_fields = {}
        site_rng = spec.stream(1)
        for s in range(m.n_sites):
            gain = site_rng.normal(1.0, 0.1)
            slope = site_rng.normal(0.0, spec.site_sd)
            self.site_fields[f"S{s + 1:02d}"] = (gain * (1.0 + slope * z))[None, None, :].astype(np.float32)

    def simulate(self, index: int, severity: float, site: str) -> np.ndarray:
        spec, t = self.spec, self.t
        rng = spec.stream(2, index)
        lut = rng.normal(1.0, spec.region_sd, self.n_labels).astype(np.float32)
        lut[0] = 1.0
        regional = lut[self.label_index]
        coarse = rng.normal(0.0, 1.0, COARSE_FIELD)
        smooth_field = upsample(coarse, self.zoom_axes)
        smooth_field = 1.0 + spec.field_sd * smooth_field / (smooth_field.std() + 1e-6)
        pattern = self.pattern
        if self.blobs is not None:
            regional, pattern = self._atlas_free(spec.stream(3, index))
        uptake = self.tissue * regional * (1.0 - self.effect * severity * pattern)
        uptake *= smooth_field.astype(np.float32) * self.site_fields[site]
        uptake = ndimage.gaussian_filter(uptake, self.fwhm * FWHM_TO_SIGMA / t.grid.voxel_mm)
        noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, uptake.shape).astype(np.float32), 0.8)
        noise *= self.noise / (noise.std() + 1e-6)
        uptake *= 1.0 + noise
        scale = spec.model.unit * np.exp(rng.normal(0.0, spec.global_sd))
        return (np.clip(uptake, 0, None) * scale * self.head).astype(np.float32)

    def _atlas_free(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The smooth kind's normal variation (a smooth random field, region_sd) and this subject's AD pattern
        (each blob's amplitude drawn, the whole pattern shifted by jitter_mm)."""
        spec, t = self.spec, self.t
        field = ndimage.gaussian_filter(
            rng.normal(0.0, 1.0, t.grid.shape).astype(np.float32), NORMAL_VARIATION_MM / t.grid.voxel_mm
        )
        variation = 1.0 + spec.region_sd * field / (field.std() + 1e-6)
        amplitude = np.exp(rng.normal(0.0, AMPLITUDE_SD, len(self.blobs))).astype(np.float32)
        pattern = (amplitude[:, None, None, None] * self.blobs).max(axis=0)
        shift = rng.normal(0.0, spec.jitter_mm, 3) / t.grid.voxel_mm
        pattern = ndimage.shift(pattern, shift, order=1, mode="constant", cval=0.0) * t.brain_mask
        return variation.astype(np.float32), pattern.astype(np.float32)


_WORKER: _Simulator | None = None


def _init_worker(spec: CohortSpec) -> None:
    global _WORKER
    _WORKER = _Simulator(spec)


def _write_subject(args: tuple[int, float, str, str]) -> tuple[str, list | None]:
    index, severity, site, path = args
    volume = _WORKER.simulate(index, severity, site)
    truth = None
    if _WORKER.spec.space == "native":
        img, scanner_to_mni = to_native_space(volume, _WORKER.t.grid.affine, _WORKER.spec, index)
        truth = np.round(scanner_to_mni, 9).tolist()
    else:
        img = nib.Nifti1Image(volume, _WORKER.t.grid.affine)
    img.header.set_xyzt_units("mm")
    save_nifti(img, path)
    return path, truth


# --- native-space scans: what a scanner writes before any spatial normalization ----------------------------


def random_rigid(rng: np.random.Generator, max_rotation_deg: float, max_translation_mm: float) -> np.ndarray:
    """A 4x4 rigid transform: rotations about x, y, z up to +-max degrees, translations up to +-max mm."""
    ax, ay, az = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    out = np.eye(4)
    out[:3, :3] = rz @ ry @ rx
    out[:3, 3] = rng.uniform(-max_translation_mm, max_translation_mm, 3)
    return out


def native_grid(voxel_mm, fov_mm) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of a scanner grid: LAS storage order (x flipped, as many SPECT systems write), the
    field of view centred on the scanner origin."""
    voxel = np.asarray(voxel_mm, float)
    shape = tuple(int(np.ceil(f / v)) for f, v in zip(fov_mm, voxel, strict=True))
    affine = np.diag([-voxel[0], voxel[1], voxel[2], 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return shape, affine


def to_native_space(
    volume: np.ndarray, mni_affine: np.ndarray, spec: CohortSpec, index: int
) -> tuple[nib.Nifti1Image, np.ndarray]:
    """Resample an MNI-space volume into scanner space under a random rigid pose (the subject's own stream).

    Returns the native image and the true scanner-mm -> MNI-mm transform (what registration should recover).
    """
    from nibabel.processing import resample_from_to

    rng = spec.stream(3, index)
    scanner_to_mni = random_rigid(rng, spec.max_rotation_deg, spec.max_translation_mm)
    shape, affine = native_grid(spec.native_voxel_mm, spec.native_fov_mm)
    # the MNI voxels placed in scanner mm: voxel -> MNI mm -> scanner mm
    placed = nib.Nifti1Image(volume, np.linalg.inv(scanner_to_mni) @ mni_affine)
    native = resample_from_to(placed, (shape, affine), order=1, mode="constant", cval=0.0)
    return nib.Nifti1Image(np.asarray(native.dataobj, np.float32), affine), scanner_to_mni


def generate_cohort(
    spec: CohortSpec, out_dir: str | os.PathLike, workers: int = 1, progress: bool = True
) -> pd.DataFrame:
    """Write participants.tsv, scans/<id>.nii.gz and the ground truth under `out_dir`."""
    if spec.modality not in MODALITIES:
        raise ValueError(f"unknown modality {spec.modality!r}; expected one of {', '.join(MODALITIES)}")
    out = Path(out_dir)
    (out / "scans").mkdir(parents=True, exist_ok=True)
    people = draw_participants(spec)
    jobs = [(i, float(r.severity), r.site, str(out / r.path)) for i, r in enumerate(people.itertuples())]
    done = 0
    transforms = {}
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(spec,)) as pool:
            for sid, (_, transform) in zip(
                people["subject_id"], pool.map(_write_subject, jobs, chunksize=4), strict=True
            ):
                transforms[sid] = transform
                done += 1
                _progress(progress, done, len(jobs))
    else:
        _init_worker(spec)
        for sid, job in zip(people["subject_id"], jobs, strict=True):
            transforms[sid] = _write_subject(job)[1]
            done += 1
            _progress(progress, done, len(jobs))
    t = load_templates()
    pattern, effect_entries = effect_truth(spec, t)
    img = nib.Nifti1Image(pattern, t.grid.affine)
    save_nifti(img, out / "ad_pattern.nii.gz")
    truth = {
        "modality": spec.modality,
        "seed": spec.seed,
        "effect": spec.effect if spec.effect is not None else spec.model.effect,
        "fwhm_mm": spec.fwhm_mm if spec.fwhm_mm is not None else spec.model.fwhm_mm,
        "pattern_map": "ad_pattern.nii.gz",
        **effect_entries,
    }
    if spec.space == "native":
        truth.update(native_truth(spec, transforms))
    write_text(out / "ground_truth.json", json.dumps(truth, indent=2) + "\n")
    write_text(
        out / "ground_truth.tsv",
        people[["subject_id", "diagnosis", "severity"]].to_csv(sep="\t", index=False),
    )
    # the table last: its presence means the cohort is complete
    with atomic_output(out / "participants.tsv") as tmp:
        people.drop(columns="severity").to_csv(tmp, sep="\t", index=False)
    return people


def native_truth(spec: CohortSpec, transforms: dict) -> dict:
    """Ground-truth entries of a native-space cohort: its geometry and every scan's true scanner->MNI transform."""
    return {
        "space": "native",
        "native_voxel_mm": list(spec.native_voxel_mm),
        "native_fov_mm": list(spec.native_fov_mm),
        "max_rotation_deg": spec.max_rotation_deg,
        "max_translation_mm": spec.max_translation_mm,
        "affine_scanner_to_mni": transforms,
    }


def _progress(enabled: bool, done: int, total: int) -> None:
    if enabled and (done % 25 == 0 or done == total):
        print(f"synth: {done}/{total} scans written", file=sys.stderr, flush=True)
