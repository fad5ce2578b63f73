"""Per-subject preprocessing of a scan: plain functions, run directly or as the nodes of a nipype workflow.

    [dicom (a series folder -> NIfTI)] -> reorient (validate, RAS+) -> [register (space: native)]
        -> resample onto the 2 mm MNI grid -> normalize intensity -> crop -> export
                                                                          \\-> QC

Each step is a plain function here. DICOM series and native-space scans run them as a nipype workflow (one small
interface per step, adtransfer.imaging.nodes); an MNI-space NIfTI scan, the common case and one process per
subject in the workflow, runs them in the same order without nipype (`run_steps`), which spares each job nipype's
start-up; the outputs are the same to the byte. `register` (adtransfer.imaging.registration) estimates the
scanner -> MNI affine and writes it into the header, so `resample` follows it like any other affine.
Intensity: FDG is divided by its mean uptake in a reference region (whole brain by default, as ADNI's
"normalized to global brain uptake"); ECD is z-scored within the brain (mean 0, SD 1), as the paper. The crop
keeps 95x95x48 voxels (see config `crop`).

Import cost matters (one process per subject): nothing here imports nipype, scipy, pandas or matplotlib at module
level; they are imported where a step needs them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from adtransfer import __version__, modalities
from adtransfer.errors import InputError
from adtransfer.imaging.grid import Grid, crop
from adtransfer.imaging.registration import RegistrationSettings
from adtransfer.imaging.templates import MNI_2MM, load_templates
from adtransfer.io import load_volume, save_nifti, sha256_file, write_text

MODALITIES = tuple(modalities.MODALITIES)
# AAL3 name prefixes usable as FDG reference regions besides the whole brain
REFERENCE_REGIONS = {"brain": None, "cerebellum": ["Cerebellum_", "Vermis_"]}
MIN_BRAIN_COVERAGE = 0.5


@dataclass(frozen=True)
class PreprocParams:
    modality: str
    crop_grid: Grid
    reference: str = "brain"  # FDG intensity reference: brain | cerebellum
    interpolation: int = 1  # spline order for resampling (1 = trilinear)
    space: str = "mni"
    registration: RegistrationSettings = RegistrationSettings()  # space native only

    def digest(self) -> str:
        """Hash of everything that changes the output, for the cache's provenance."""
        fields = asdict(self)
        if not self.registration.nonlinear:  # its settings change nothing then: the hash stays as it was without them
            fields["registration"] = {k: v for k, v in fields["registration"].items() if not k.startswith("nonlinear")}
        payload = json.dumps({**fields, "version": __version__}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --- the steps, as plain functions -------------------------------------------------------------------


def reorient(img: nib.Nifti1Image) -> nib.Nifti1Image:
    return nib.as_closest_canonical(img)


def resample_to_mni(img: nib.Nifti1Image, grid: Grid = MNI_2MM, order: int = 1) -> np.ndarray:
    """Data on `grid`; scans already on it (ADNI's SPM grid) are taken as they are, without interpolation."""
    if grid.matches(img.shape, img.affine):
        return np.asarray(img.dataobj, dtype=np.float32)
    from nibabel.processing import resample_from_to  # scipy.ndimage: imported only when needed

    out = resample_from_to(img, (grid.shape, grid.affine), order=order, mode="constant", cval=0.0)
    return np.asarray(out.dataobj, dtype=np.float32)


def empty_brain_hint(space: str) -> str:
    """Why a scan on the MNI grid can leave most of the MNI brain empty, and what to do, by the cohort's space."""
    if space == "native":
        return (
            "after registration to the modality template: the registration failed, or the scan's field of view "
            "misses most of the brain; check the scan"
        )
    return (
        "after resampling onto the MNI grid through its header: the scan is evidently not in MNI space. If the "
        "cohort's scans are in scanner space (not spatially normalized: raw SPECT or PET, a DICOM series), set "
        "`space: native` for the cohort (config cohorts.<name>.space; `--space native` for `adtransfer "
        "preprocess` and `adtransfer predict`), which registers each scan to the modality template first"
    )


def normalize_intensity(
    data: np.ndarray, modality: str, reference: str = "brain", who: str = "", space: str = "mni"
) -> np.ndarray:
    """Statistics over the brain voxels the scan covers (see `field_of_view`). `space` (the cohort's) only words
    the error for a scan that leaves most of the MNI brain empty."""
    t = load_templates()
    brain = t.brain_mask
    coverage = np.count_nonzero(data[brain] > 0) / np.count_nonzero(brain)
    if coverage < MIN_BRAIN_COVERAGE:
        raise InputError(
            f"{who}: only {coverage:.0%} of the MNI brain mask has signal (empty brain) {empty_brain_hint(space)}"
        )
    in_view = field_of_view(data, brain)
    inside = data[brain & in_view]
    normalization = modalities.get(modality).normalization
    if normalization == "reference_ratio":
        ref = brain if REFERENCE_REGIONS[reference] is None else t.region_mask(REFERENCE_REGIONS[reference])
        if np.count_nonzero(ref & in_view) < 0.5 * np.count_nonzero(ref):
            raise InputError(
                f"{who}: the field of view misses most of the {reference} reference region; "
                "choose another reference (config preprocess.fdg_reference)"
            )
        mean = float(data[ref & in_view].mean())
        if mean <= 0:
            raise InputError(
                f"{who}: mean uptake in the {reference} reference region is {mean:g}; expected positive uptake"
            )
        return (data / mean).astype(np.float32)
    if normalization == "zscore":
        mean, sd = float(inside.mean()), float(inside.std())
        if sd <= 0:
            raise InputError(f"{who}: constant intensity inside the brain; cannot z-score")
        return ((data - mean) / sd).astype(np.float32)
    raise ValueError(f"{modality}: unknown normalization {normalization!r}")


def field_of_view(data: np.ndarray, brain: np.ndarray, max_zero_fraction: float = 0.01) -> np.ndarray:
    """Where the scan has data: everything, unless more than 1 % of the brain is exactly zero (a field of view cut
    short: no cerebellum or vertex). Then zero regions, less isolated zero voxels (clipped noise), are left out."""
    if np.count_nonzero(data[brain] == 0) <= max_zero_fraction * np.count_nonzero(brain):
        return np.ones(data.shape, bool)
    from scipy import ndimage

    return ~ndimage.binary_opening(data == 0, iterations=2)


def background_level(data: np.ndarray, margin_voxels: int = 4) -> float:
    """The normalized intensity of the scan's background: the median outside the MNI brain mask dilated by
    `margin_voxels` (scalp and skull stay out). FDG: about 0; ECD (z-scored): about -mean/SD, e.g. -5."""
    outside = ~dilate(load_templates().brain_mask, margin_voxels)
    return median(data[outside]) if outside.any() else 0.0


def median(values: np.ndarray) -> float:
    """np.median of finite values, computed as np.median computes it (np.partition, then the middle value or the
    mean of the middle two, in the values' dtype), without calling it: on its way numpy 2 imports numpy.ma (for
    np.unique's masked-array check), ~8 ms of a ~0.3 s preprocessing job. A test holds it to np.median."""
    values = np.ravel(values)
    k = values.size // 2
    if values.size % 2:  # the mean of one value, as np.median takes it: -0.0 comes out as 0.0
        return float(np.partition(values, k)[k : k + 1].mean())
    return float(np.partition(values, [k - 1, k])[k - 1 : k + 1].mean())


def crop_to_box(data: np.ndarray, box: Grid) -> np.ndarray:
    """Cut the crop box out of a normalized volume on the MNI grid. Where the box reaches outside the grid
    (x: 2 voxels each side), it is padded with the scan's own background level, not 0: a z-scored ECD scan's 0 is
    the brain mean, which would draw two bright stripes on every tile."""
    return crop(data, MNI_2MM, box, fill=background_level(data))


def dilate(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Binary dilation by the 6-neighbourhood, `iterations` times, nothing outside the array: the same voxels as
    scipy.ndimage.binary_dilation(mask, iterations=...) (its default structure), without importing scipy."""
    out = np.asarray(mask, bool)
    for _ in range(iterations):
        grown = out.copy()
        for lo, hi in _neighbour_slices(out.shape):
            grown[lo] |= out[hi]
            grown[hi] |= out[lo]
        out = grown
    return out


def erode(mask: np.ndarray) -> np.ndarray:
    """Binary erosion by the 6-neighbourhood, outside the array counting as background: the same voxels as
    scipy.ndimage.binary_erosion(mask) (its default structure and border), without importing scipy."""
    mask = np.asarray(mask, bool)
    out = mask.copy()
    for axis, (lo, hi) in enumerate(_neighbour_slices(mask.shape)):
        out[lo] &= mask[hi]
        out[hi] &= mask[lo]
        edge = [slice(None)] * mask.ndim
        for i in (0, -1):
            edge[axis] = i
            out[tuple(edge)] = False
    return out


def _neighbour_slices(shape: tuple[int, ...]):
    """Per axis, the slices of the array without its last and without its first layer."""
    for axis, n in enumerate(shape):
        lo, hi = [slice(None)] * len(shape), [slice(None)] * len(shape)
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        yield tuple(lo), tuple(hi)


def run_steps(params: PreprocParams, in_file: str, who: str) -> tuple[np.ndarray, np.ndarray]:
    """Reorient, resample, normalize and crop an MNI-space NIfTI scan in this process, without nipype: the cropped
    volume and the scan on the MNI grid, equal to the bit to what the nipype workflow (imaging.nodes) gives. The
    workflow's nodes pass float32 NIfTI files; where that is not lossless, it is done here too: the reoriented
    scan's affine (float64 in memory, float32 in the header) goes through the same bytes, and the volumes come
    back in a file's (Fortran) memory order, which decides the float32 summation order of the sidecar's mean."""
    img = reorient(load_volume(os.path.abspath(in_file), who=who))  # the Reorient node reads the absolute path
    as_written = nib.Nifti1Image(np.asarray(img.dataobj).astype(np.float32), img.affine)
    on_mni = resample_to_mni(nib.Nifti1Image.from_bytes(as_written.to_bytes()), MNI_2MM, params.interpolation)
    on_mni = np.asfortranarray(on_mni)  # as the Normalize node reads it (a copy only where resampling made one)
    normalized = normalize_intensity(on_mni, params.modality, params.reference, who, params.space)
    box = Grid(params.crop_grid.shape, MNI_2MM.voxel_mm, params.crop_grid.origin_mm)  # as the Crop node builds it
    return np.asfortranarray(crop_to_box(normalized, box), dtype=np.float32), on_mni


def preprocess_subject(
    in_file: str | os.PathLike,
    out_file: str | os.PathLike,
    params: PreprocParams,
    subject: str = "",
    qc_png: str | os.PathLike | None = None,
    sidecar: str | os.PathLike | None = None,
    registration_png: str | os.PathLike | None = None,
) -> np.ndarray:
    """Preprocess one scan (MNI-space NIfTI: `run_steps`; DICOM or native space: the nipype workflow of
    adtransfer.imaging.nodes); write the cropped volume (and QC PNG, JSON sidecar) atomically."""
    who = f"{in_file}" + (f" (subject {subject})" if subject else "")
    if params.space == "mni" and not os.path.isdir(in_file):
        data, on_mni = run_steps(params, str(in_file), who)
        records = {"registration": {"space": "mni", "registered": False}}
    else:
        from adtransfer.imaging.nodes import run_workflow

        with tempfile.TemporaryDirectory(prefix="adtransfer-preproc-") as work:
            data, on_mni, records = run_workflow(params, str(in_file), who, work)
    registration = records["registration"]
    img = nib.Nifti1Image(data, params.crop_grid.affine)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = f"adtransfer {params.modality} preprocessed"
    save_nifti(img, out_file)
    if qc_png:
        from adtransfer.imaging.qc_images import qc_mosaic_png

        qc_mosaic_png(data, qc_png, params.modality, title=subject or Path(in_file).name)
    if registration_png:
        from adtransfer.imaging.qc_images import registration_qc_png

        registration_qc_png(on_mni, registration_png, params.modality, subject or Path(in_file).name, registration)
    if sidecar:
        from adtransfer.imaging.roi import regional_means

        # the ROI baseline's features, computed here so that a changed scan recomputes only its own
        means, regions = regional_means(data[None], params.crop_grid)
        meta = {
            "subject_id": subject,
            "input": str(in_file),
            "input_sha256": sha256_file(in_file),
            "params": {**asdict(params), "crop_grid": asdict(params.crop_grid)},
            "params_hash": params.digest(),
            "adtransfer": __version__,
            "stats": {"min": float(data.min()), "max": float(data.max()), "mean": float(data.mean())},
            "roi_means": dict(zip(regions, means[0].astype(float).tolist(), strict=True)),
            "registration": registration,
            **({"dicom": records["dicom"]} if "dicom" in records else {}),  # which dcm2niix output was used
        }
        write_text(sidecar, json.dumps(meta, indent=2, default=str) + "\n")
    return data
