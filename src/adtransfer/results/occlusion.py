"""Region occlusion: how much P(AD) drops when one AAL3 region of the scan looks normal.

For every AAL3 region inside the crop (at least 10 voxels there, as for the ROI baseline's features), the
region's voxels in a test subject's normalized 95x95x48 volume are replaced by the mean volume of the NC
subjects the model was trained on (its split column == "train": no validation or test subject enters the
reference), the three mosaics are rebuilt exactly as the cache builds them (`mosaic.make_mosaics`, float16),
and the model predicts them. The drop is P(AD) of the intact scan minus P(AD) of the occluded one, each the
ensemble mean over the three mosaics as in the paper, averaged over the AD test subjects (and the NC test
subjects when asked). It needs no gradient and no particular layer, works at any input size, and ranks the
same regions the ROI baseline weighs, so the two read side by side.

Regions the crop does not reach (or reaches with fewer than 10 voxels) cannot be occluded: the table lists them
as not measurable (NaN), never as a drop of 0. The volumes come from the preprocessed crops
(results/preproc/{cohort}/{subject}.nii.gz), checked against the cache's scan hashes: the cache keeps only the
mosaics, possibly at a reduced size, and the occlusion has to act on the full-resolution volume before mosaics
are made.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import pandas as pd

from adtransfer.errors import InputError
from adtransfer.imaging.cache import read_preprocessed
from adtransfer.imaging.grid import Grid, uncrop
from adtransfer.imaging.mosaic import N_SETS, TILES, make_mosaics, resize_tile, slice_image
from adtransfer.io import atomic_output, write_text

if TYPE_CHECKING:
    from adtransfer.learning.predict import TrainedModel

log = logging.getLogger("adtransfer")

MIN_VOXELS = 10  # as roi.atlas_in: a region needs this many voxels in the crop to be measured


def cached_mosaics(volume: np.ndarray, size: int) -> np.ndarray:
    """The three mosaics of a volume as the cache stores them (float16), back as float32."""
    return make_mosaics(volume, size).astype(np.float16).astype(np.float32)


def occluded_mosaics(base: np.ndarray, volume: np.ndarray, mask: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`cached_mosaics` of `volume` with the voxels of `mask` taken from `reference`, given the intact volume's
    mosaics `base`: only the tiles of the slices the mask touches are rebuilt (the same function on the same
    slice, so the result equals rebuilding all three mosaics)."""
    out = base.copy()
    tile = base.shape[-1] // TILES
    for z in np.flatnonzero(mask.any(axis=(0, 1))):
        sl = np.where(mask[:, :, z], reference[:, :, z], volume[:, :, z])
        k, (r, c) = z % N_SETS, divmod(z // N_SETS, TILES)
        img = resize_tile(slice_image(sl[:, :, None], 0), tile).astype(np.float16)
        out[k, r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = img
    return out


def occlude_regions(
    predict: Callable[[np.ndarray], np.ndarray],
    volumes: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray,
    region_index: Sequence[int],
    size: int,
    chunk_regions: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """P(AD) of each intact volume (n,) and with each region occluded (n, R): ensemble means over 3 mosaics.

    `predict` maps mosaics (m, S, S) in cache units to P(AD) (m,); it is called on up to 3 * chunk_regions
    mosaics at a time (the forward passes are batched)."""
    n, n_regions = len(volumes), len(region_index)
    masks = [labels == idx for idx in region_index]
    base = np.empty(n, np.float64)
    occluded = np.empty((n, n_regions), np.float64)
    for i, vol in enumerate(volumes):
        intact = cached_mosaics(vol, size)
        base[i] = float(np.mean(predict(intact)))
        for start in range(0, n_regions, chunk_regions):
            batch = [occluded_mosaics(intact, vol, mask, reference) for mask in masks[start : start + chunk_regions]]
            p = np.asarray(predict(np.concatenate(batch)), np.float64).reshape(len(batch), -1)
            occluded[i, start : start + len(batch)] = p.mean(axis=1)
        if (i + 1) % 10 == 0 or i + 1 == n:
            log.info("occlusion: %d/%d subjects", i + 1, n)
    return base, base[:, None] - occluded


def region_inventory(crop_grid: Grid) -> tuple[np.ndarray, pd.DataFrame]:
    """AAL3 labels on the crop and every atlas region with its voxels in the atlas and in the crop, and whether
    occlusion can measure it (at least MIN_VOXELS voxels in the crop)."""
    from adtransfer.imaging.grid import crop
    from adtransfer.imaging.templates import load_templates

    t = load_templates()
    labels = crop(t.atlas, t.grid, crop_grid)
    in_crop = np.bincount(labels.reshape(-1), minlength=max(t.labels) + 1)
    in_atlas = np.bincount(t.atlas.reshape(-1), minlength=max(t.labels) + 1)
    rows = []
    for idx, name in t.labels.items():
        n_crop = int(in_crop[idx])
        note = (
            ""
            if n_crop >= MIN_VOXELS
            else ("outside the crop" if n_crop == 0 else f"only {n_crop} voxel(s) in the crop")
        )
        rows.append((idx, name, int(in_atlas[idx]), n_crop, n_crop >= MIN_VOXELS, note))
    columns = ["index", "region", "voxels_atlas", "voxels_crop", "measurable", "note"]
    return labels, pd.DataFrame(rows, columns=columns)


def ranked_table(
    inventory: pd.DataFrame, drops: np.ndarray, targets: np.ndarray, classes: Sequence[str]
) -> pd.DataFrame:
    """The region table: mean drop per class (and its standard error for AD), measurable regions ranked by
    the AD drop (the first class), the not measurable ones after them with NaN."""
    table = inventory.copy()
    measured = table["measurable"].to_numpy()
    code = {"AD": 1, "NC": 0}
    for name in classes:
        rows = drops[targets == code[name]]
        col = np.full(len(table), np.nan)
        col[measured] = rows.mean(axis=0)
        table[f"drop_{name}"] = col
        if name == classes[0]:
            sem = np.full(len(table), np.nan)
            sem[measured] = rows.std(axis=0, ddof=1) / np.sqrt(len(rows)) if len(rows) > 1 else np.nan
            table[f"drop_{name}_sem"] = sem
    first = f"drop_{classes[0]}"
    table = table.sort_values([first], ascending=False, kind="stable", na_position="last").reset_index(drop=True)
    return table.drop(columns="index")


def region_map(labels: np.ndarray, inventory: pd.DataFrame, values: pd.Series) -> np.ndarray:
    """A value per region painted on its voxels of the crop; NaN where nothing was measured."""
    lut = np.full(int(max(labels.max(), inventory["index"].max())) + 1, np.nan, np.float32)
    lut[inventory["index"].to_numpy()] = values.to_numpy(np.float32)
    return lut[labels]


def load_volumes(preproc_dir: Path, ids: Sequence[str], sha256: dict[str, str], shape: tuple) -> np.ndarray:
    """Preprocessed crops of `ids`, each checked to come from the scan the cache was built from."""
    out = np.empty((len(ids), *shape), np.float32)
    for i, sid in enumerate(ids):
        out[i] = load_volume(preproc_dir, sid, sha256, shape)
    return out


def mean_volume(preproc_dir: Path, ids: Sequence[str], sha256: dict[str, str], shape: tuple) -> np.ndarray:
    """Mean of the preprocessed crops of `ids`, one volume in memory at a time (hundreds at the paper's scale)."""
    total = np.zeros(shape, np.float64)
    for sid in ids:
        total += load_volume(preproc_dir, sid, sha256, shape)
    return (total / len(ids)).astype(np.float32)


def load_volume(preproc_dir: Path, sid: str, sha256: dict[str, str], shape: tuple) -> np.ndarray:
    """One subject's preprocessed crop, checked to come from the scan the cache was built from."""
    nii, sidecar = preproc_dir / f"{sid}.nii.gz", preproc_dir / f"{sid}.json"
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{sidecar}: cannot read the sidecar of subject {sid} ({exc})") from None
    data, _ = read_preprocessed(nii)
    if meta.get("input_sha256") != sha256[sid]:
        raise InputError(f"{nii}: preprocessed from another scan than the cache's (sha256); rebuild the cache")
    if tuple(data.shape) != tuple(shape):
        raise InputError(f"{nii}: shape {data.shape}, the cache's crop is {tuple(shape)}")
    return data


def select_subjects(member: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the NC reference (the model's NC training subjects only: never validation or test) and of the
    test subjects to occlude (those of `classes`), given each subject's split membership and label."""
    wanted = [{"AD": 1, "NC": 0}[c] for c in classes]
    return (member == "train") & (labels == 0), (member == "test") & np.isin(labels, wanted)


def run_occlusion(
    trained: TrainedModel,
    preproc_dir: str | os.PathLike,
    summary_json: str | os.PathLike,
    regions_tsv: str | os.PathLike,
    nifti: str | os.PathLike,
    png: str | os.PathLike,
    truth_json: str | os.PathLike | None = None,
    classes: Sequence[str] = ("AD",),
    threads: int = 2,
    chunk_regions: int = 32,
) -> dict:
    """Region occlusion of one CNN classifier on its test subjects: occlusion_regions.tsv (ranked),
    occlusion_AD.nii.gz (mean AD drop per region on the MNI grid, NaN where not measured), a brain-map PNG and
    occlusion_summary.json (subjects, time, images, and on synthetic cohorts the ground-truth scores)."""
    from adtransfer.imaging.cache import crop_grid_of, read_cache
    from adtransfer.imaging.grid import crop
    from adtransfer.imaging.templates import MNI_2MM, load_templates
    from adtransfer.io import save_nifti
    from adtransfer.learning.data import scale
    from adtransfer.results.figures import brain_map_figure
    from adtransfer.results.truth import truth_scores

    classes = list(classes)
    if not classes or classes[0] != "AD" or not set(classes) <= {"AD", "NC"}:
        raise InputError(f"occlusion classes must start with AD (AD, or AD and NC), got {classes}")
    data = read_cache(trained.cache, with_mosaics=False)
    ids, labels_dx = np.asarray(data["subject_id"]), np.asarray(data["label"]).astype(int)
    crop_grid = crop_grid_of(data["attrs"])
    size = int(data["attrs"]["mosaic_size"])
    member = trained.membership(ids)
    reference_sel, test_sel = select_subjects(member, labels_dx, classes)
    reference_ids, test_ids, targets = ids[reference_sel], ids[test_sel], labels_dx[test_sel]
    wanted = [{"AD": 1, "NC": 0}[c] for c in classes]
    if len(reference_ids) == 0:
        raise InputError(
            f"{trained.splits}: no NC training subjects in {trained.set_column} for the occlusion reference"
        )
    if not (targets == 1).any():
        raise InputError(f"{trained.splits}: no AD test subjects to occlude")
    sha = dict(zip(ids, data["sha256"], strict=True))
    preproc_dir = Path(preproc_dir)
    reference = mean_volume(preproc_dir, reference_ids, sha, crop_grid.shape)
    volumes = load_volumes(preproc_dir, test_ids, sha, crop_grid.shape)

    labels, inventory = region_inventory(crop_grid)
    measured = inventory[inventory["measurable"]]
    net, settings = trained.load(threads)
    if settings["task"] != "classify":
        raise InputError(
            f"{trained.model}: occlusion needs a classifier (P(AD)); this model's task is {settings['task']}"
        )
    batch = settings["batch_size"]

    def predict(mosaics: np.ndarray) -> np.ndarray:  # predict_on_batch: no tf.data pipeline built per call
        x = scale(mosaics[..., None], settings["intensity_range"])
        return np.concatenate(
            [np.asarray(net.predict_on_batch(x[j : j + batch]))[:, 1] for j in range(0, len(x), batch)]
        )

    start = time.perf_counter()
    base, drops = occlude_regions(predict, volumes, reference, labels, measured["index"].tolist(), size, chunk_regions)
    seconds = time.perf_counter() - start
    n_images = len(volumes) * 3 * (len(measured) + 1)
    log.info(
        "occlusion %s: %d subjects x %d regions x 3 mosaics = %d images in %.1f s (%.1f images/s)",
        trained.model,
        len(volumes),
        len(measured),
        n_images,
        seconds,
        n_images / seconds,
    )

    table = ranked_table(inventory, drops, targets, classes)
    with atomic_output(regions_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4g", na_rep="NaN")
    by_index = inventory.merge(table[["region", "drop_AD"]], on="region", how="left")
    crop_map = region_map(labels, by_index, by_index["drop_AD"])
    save_nifti(
        nib.Nifti1Image(uncrop(crop_map, MNI_2MM, crop_grid, fill=np.nan), MNI_2MM.affine),
        nifti,
    )
    gm = crop(load_templates().gm, MNI_2MM, crop_grid)
    brain_map_figure(
        np.nan_to_num(crop_map, nan=0.0),
        gm,
        png,
        f"Region occlusion: mean drop in P(AD) over {int((targets == 1).sum())} AD test subjects "
        "(region replaced by the NC training mean)",
        cmap="RdBu_r",
        symmetric=True,
        cbar_label="drop in P(AD)",
    )
    summary: dict = {
        "method": "region occlusion",
        "set": trained.set_column,
        "mosaic_size": size,
        "reference": {"what": "mean of the NC training subjects", "n": int(len(reference_ids))},
        "n_test": {c: int((targets == code).sum()) for c, code in zip(classes, wanted, strict=True)},
        "p_ad_intact": {c: float(base[targets == code].mean()) for c, code in zip(classes, wanted, strict=True)},
        "regions": {"measured": int(len(measured)), "not_measurable": int((~inventory["measurable"]).sum())},
        "images": n_images,
        "seconds": round(seconds, 2),
        "images_per_second": round(n_images / seconds, 2) if seconds > 0 else None,
    }
    if truth_json:
        ranked = table.loc[table["measurable"], "region"].tolist()
        summary["ground_truth"] = truth_scores(crop_map, ranked, truth_json, crop_grid)
    write_text(summary_json, json.dumps(summary, indent=2) + "\n")
    return summary
