"""Grad-CAM on the mosaics and back in 3D on the MNI grid; region tables; comparison with a known pattern.

Grad-CAM (Selvaraju et al. 2017): the gradient of the class score with respect to a convolutional layer's
maps, averaged over space, weights the maps; their ReLU'd sum is the heat map. The paper uses `mixed10`, the
last concatenation of Inception v3 (10x10 at 380 px); at small inputs that map is 1x1 and carries no
location, so the layer comes from config (`explain.gradcam_layer`).

Back to 3D: each mosaic's map is upsampled to the mosaic, cut into its 16 tiles, each tile resized to the
95x95 slice it shows, the three interleaved sets put back into the 95x95x48 crop, and the crop placed on the
2 mm MNI grid, so the map opens over the MNI template in any viewer. Only the TensorFlow part (the maps)
needs a model; the geometry and the statistics are plain NumPy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd

from adtransfer.data import scale
from adtransfer.errors import InputError
from adtransfer.grid import Grid, crop, uncrop
from adtransfer.io import atomic_output, write_text
from adtransfer.mosaic import mosaics_to_volume, resize_tile
from adtransfer.roi import atlas_in


def gradcam(net, images: np.ndarray, layer: str, class_index: np.ndarray | int = 1, batch: int = 16) -> np.ndarray:
    """Grad-CAM maps (n, h, w) of `layer` for each image's `class_index` (scalar or per image), >= 0."""
    import keras
    import tensorflow as tf

    probe = keras.Model(net.input, [net.get_layer(layer).output, net.output])
    cls = np.broadcast_to(np.asarray(class_index), (len(images),))
    maps = []
    for start in range(0, len(images), batch):
        x = tf.convert_to_tensor(images[start : start + batch])
        with tf.GradientTape() as tape:
            conv, out = probe(x, training=False)
            score = tf.gather(out, cls[start : start + batch], axis=1, batch_dims=1)
        grads = tape.gradient(score, conv)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        maps.append(tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1)).numpy())
    return np.concatenate(maps) if maps else np.zeros((0, 1, 1), np.float32)


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of (n, h, w) maps to (n, size, size), cell centres aligned with the image."""
    return np.stack([resize_tile(m, size) for m in np.asarray(maps, np.float32)])


def normalize(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to max 1 (an all-zero map stays zero), so subjects weigh alike in a mean map."""
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, *([1] * (maps.ndim - 1)))
    return np.divide(maps, peak, out=np.zeros_like(maps, dtype=np.float32), where=peak > 0)


def to_volume(mosaic_maps: np.ndarray, crop_grid: Grid, mni_grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Three (S, S) mosaic maps -> the cropped volume and the same on the MNI grid."""
    crop_vol = mosaics_to_volume(mosaic_maps, tuple(crop_grid.shape[:2]))
    return crop_vol, uncrop(crop_vol, mni_grid, crop_grid)


def region_table(volume: np.ndarray, crop_grid: Grid, name: str = "gradcam") -> pd.DataFrame:
    """Mean of a map in each atlas region inside the crop, highest first."""
    labels, table = atlas_in(crop_grid)
    flat, vals = labels.reshape(-1), np.asarray(volume, np.float64).reshape(-1)
    idx = table["index"].to_numpy()
    sums = np.bincount(flat, weights=vals, minlength=idx.max() + 1)[idx]
    counts = np.bincount(flat, minlength=idx.max() + 1)[idx]
    out = pd.DataFrame({"region": table["name"], "voxels": counts, name: sums / counts})
    return out.sort_values(name, ascending=False, kind="stable").reset_index(drop=True)


def mass_ratio(volume: np.ndarray, truth: np.ndarray, brain: np.ndarray) -> dict:
    """Share of the map's mass inside the true altered voxels, divided by their share of the brain volume.

    1 is what a map spread uniformly over the brain gives; higher means the map finds the altered regions.
    """
    brain = brain.astype(bool)
    mass = np.clip(volume, 0, None)[brain]
    inside = truth.astype(bool)[brain]
    chance = float(inside.mean())
    share = float(mass[inside].sum() / mass.sum()) if mass.sum() > 0 else float("nan")
    return {"mass_share": share, "volume_share": chance, "ratio": share / chance if chance > 0 else float("nan")}


def top_regions_hit(regions: list[str], altered_prefixes: list[str], k: int = 10) -> dict:
    """How many of the first k regions belong to the generator's altered set (AAL3 name prefixes)."""
    top = list(regions)[:k]
    hits = [r for r in top if any(r.startswith(p) for p in altered_prefixes)]
    return {"k": k, "hits": len(hits), "regions": top, "altered_in_top": hits}


# --- the explain step of one CNN (TensorFlow) ----------------------------------------------------------


def crop_grid_of(cache_attrs: dict) -> Grid:
    return Grid(
        tuple(int(v) for v in cache_attrs["crop_shape"]),
        float(cache_attrs["voxel_mm"]),
        tuple(float(v) for v in cache_attrs["crop_origin_mm"]),
    )


def altered_mask(truth_json: str | os.PathLike, crop_grid: Grid) -> tuple[np.ndarray, list[str]]:
    """The generator's altered regions (AAL3 name prefixes from ground_truth.json) on the crop."""
    from adtransfer.templates import load_templates

    prefixes = list(json.loads(Path(truth_json).read_text())["altered_regions"])
    t = load_templates()
    return crop(t.region_mask(prefixes), t.grid, crop_grid), prefixes


def run_gradcam(
    model_dir: str | os.PathLike,
    cache: str | os.PathLike,
    predictions: str | os.PathLike,
    layer: str,
    out_dir: str | os.PathLike,
    examples_png: str | os.PathLike,
    means_png: str | os.PathLike,
    truth_json: str | os.PathLike | None = None,
    n_examples: int = 2,
    threads: int = 2,
) -> dict:
    """Grad-CAM of every AD and NC test subject (each for its true class): example overlays, mean maps per
    class on the mosaics and in 3D (NIfTI on the MNI grid), a region table, and the ground-truth check."""
    from adtransfer.evaluate import read_predictions, subset
    from adtransfer.figures import overlay_rows
    from adtransfer.io import save_nifti
    from adtransfer.predict import load_trained
    from adtransfer.templates import MNI_2MM, load_templates

    net, settings = load_trained(model_dir, threads)
    try:
        net.get_layer(layer)
    except ValueError:
        raise InputError(f"{model_dir}: no layer {layer!r} for Grad-CAM (explain.gradcam_layer)") from None
    test = subset(read_predictions(predictions), "test", classify=True).sort_values("subject_id")
    with h5py.File(cache, "r") as h5:
        index = {s: i for i, s in enumerate(h5["subject_id"].asstr()[()])}
        rows = np.array([index[s] for s in test["subject_id"]])
        order = np.argsort(rows)  # h5py fancy indexing wants increasing rows
        mosaics = np.empty((len(rows), *h5["mosaics"].shape[1:]), np.float32)
        mosaics[order] = h5["mosaics"][rows[order]]
        attrs = dict(h5.attrs)
    n, k, size, _ = mosaics.shape
    labels = test["target"].to_numpy(int)
    x = scale(mosaics.reshape(-1, size, size, 1), settings["intensity_range"])
    raw = gradcam(net, x, layer, class_index=np.repeat(labels, k))
    map_size = raw.shape[1]
    maps = normalize(upsample(raw, size)).reshape(n, k, size, size)

    crop_grid = crop_grid_of(attrs)
    out = Path(out_dir)
    summary: dict = {
        "layer": layer,
        "map_size": [int(raw.shape[1]), int(raw.shape[2])],
        "mosaic_size": size,
        "n_test": {"AD": int(labels.sum()), "NC": int((labels == 0).sum())},
    }
    tables, volumes = [], {}
    for cls, name in ((1, "AD"), (0, "NC")):
        if not (labels == cls).any():
            continue
        crop_vol, mni_vol = to_volume(maps[labels == cls].mean(axis=0), crop_grid, MNI_2MM)
        volumes[name] = crop_vol
        save_nifti(nib.Nifti1Image(mni_vol.astype(np.float32), MNI_2MM.affine), out / f"gradcam_{name}.nii.gz")
        tables.append(region_table(crop_vol, crop_grid, f"gradcam_{name}").set_index(["region", "voxels"]))
    regions = pd.concat(tables, axis=1).reset_index()
    regions = regions.sort_values(regions.columns[2], ascending=False, kind="stable")
    with atomic_output(out / "gradcam_regions.tsv") as tmp:
        regions.to_csv(tmp, sep="\t", index=False, float_format="%.4g")
    if truth_json and "AD" in volumes:
        mask, prefixes = altered_mask(truth_json, crop_grid)
        brain = crop(load_templates().brain_mask, MNI_2MM, crop_grid)
        summary["ground_truth"] = {
            **mass_ratio(volumes["AD"], mask, brain),
            "top_regions": top_regions_hit(regions["region"].tolist(), prefixes),
        }
    write_text(out / "gradcam_summary.json", json.dumps(summary, indent=2) + "\n")

    # figures: example subjects of each class (first ids, deterministic), then the class means
    examples = []
    for cls, name in ((1, "AD"), (0, "NC")):
        for i in np.flatnonzero(labels == cls)[:n_examples]:
            p = float(test["ensemble"].iloc[i])
            examples.append((f"{test['subject_id'].iloc[i]} {name} P(AD)={p:.2f}", list(mosaics[i]), list(maps[i])))
    what = f"Grad-CAM, layer {layer} ({map_size}x{raw.shape[2]} map on {size} px mosaics)"
    overlay_rows(examples, examples_png, f"{what}: test examples", vmin=0, vmax=1, cbar_label="Grad-CAM")
    means = [
        (
            f"mean {name} (n={int((labels == cls).sum())})",
            list(mosaics[labels == cls].mean(axis=0)),
            list(maps[labels == cls].mean(axis=0)),
        )
        for cls, name in ((1, "AD"), (0, "NC"))
        if (labels == cls).any()
    ]
    overlay_rows(
        means, means_png, f"{what}: class means over the test set", vmin=0, vmax=None, cbar_label="mean Grad-CAM"
    )
    return summary
