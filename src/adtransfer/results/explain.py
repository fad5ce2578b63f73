"""Grad-CAM on the mosaics and back in 3D on the MNI grid; region tables; comparison with a known pattern.

Grad-CAM (Selvaraju et al. 2017): the gradient of the class score with respect to a convolutional layer's
maps, averaged over space, weights the maps; their ReLU'd sum is the heat map. The class score is the logit,
taken before the softmax: with a saturated softmax (P(AD) = 1.0 in float32) the gradient of the probability
vanishes and the map degenerates. The paper uses `mixed10`, the last concatenation of Inception v3 (10x10 at
380 px); at small inputs that map is 1x1 and carries no location, so the layer comes from config
(`explain.gradcam_layer`; `explain.gradcam_score_layers` scores more layers against a known pattern).

Back to 3D, tile by tile: a mosaic's map is first cut into its 4x4 tiles, then each tile is resized to the
95x95 slice it shows, so a cell never leaks into a neighbouring tile (a slice 6 mm or more away). When the map
side is not a multiple of 4 (10x10 for mixed10, 22x22 for mixed7 at 380 px), cells straddle tile borders: the
map is first expanded by nearest neighbour to the least common multiple of its side and 4, which splits each
straddling cell between the tiles it covers in proportion to its area there. The three interleaved sets go back
into the 95x95x48 crop, and the crop onto the 2 mm MNI grid, so the map opens over the MNI template in any
viewer. Only the TensorFlow part (the maps) needs a model; the geometry and the statistics are plain NumPy.
"""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING

import h5py
import nibabel as nib
import numpy as np
import pandas as pd

from adtransfer.errors import InputError
from adtransfer.imaging.cache import cache_rows, crop_grid_of
from adtransfer.imaging.grid import Grid, uncrop
from adtransfer.imaging.mosaic import TILES, mosaics_to_volume, resize_tile
from adtransfer.imaging.roi import atlas_in
from adtransfer.io import atomic_output, write_text
from adtransfer.learning.data import scale
from adtransfer.results.truth import truth_scores

if TYPE_CHECKING:
    from adtransfer.learning.predict import TrainedModel


def class_score_model(net, layer: str):
    """A function image batch -> (the layer's maps, class scores before the softmax).

    The paper's head ends in Dense(2, softmax): its logits are computed from the Dense layer's input with its
    own kernel and bias. Any other last layer (no softmax) gives its output as the score."""
    import keras

    last = net.layers[-1]
    maps = net.get_layer(layer).output
    if isinstance(last, keras.layers.Dense) and last.get_config().get("activation") == "softmax":
        probe = keras.Model(net.input, [maps, last.input])

        def scores(x):
            conv, hidden = probe(x, training=False)
            logits = keras.ops.matmul(hidden, last.kernel)
            return conv, logits + last.bias if last.use_bias else logits

        return scores
    probe = keras.Model(net.input, [maps, net.output])
    return lambda x: probe(x, training=False)


def gradcam(net, images: np.ndarray, layer: str, class_index: np.ndarray | int = 1, batch: int = 16) -> np.ndarray:
    """Grad-CAM maps (n, h, w) of `layer` for each image's `class_index` (scalar or per image), >= 0.

    Gradients are those of the class logit (before the softmax), so a confident prediction keeps its map."""
    import tensorflow as tf

    scores = class_score_model(net, layer)
    cls = np.broadcast_to(np.asarray(class_index), (len(images),))
    maps = []
    for start in range(0, len(images), batch):
        x = tf.convert_to_tensor(images[start : start + batch])
        with tf.GradientTape() as tape:
            conv, out = scores(x)
            score = tf.gather(out, cls[start : start + batch], axis=1, batch_dims=1)
        grads = tape.gradient(score, conv)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        maps.append(tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1)).numpy())
    return np.concatenate(maps) if maps else np.zeros((0, 1, 1), np.float32)


def on_tile_grid(maps: np.ndarray) -> np.ndarray:
    """Maps (..., h, h) expanded by nearest neighbour to a side that is a multiple of the 4 tiles.

    The new side is the least common multiple of h and 4, so every new pixel lies inside one map cell and one
    tile: a cell that straddles a tile border (10x10 or 22x22 maps) is split between the tiles in proportion to
    its area in each. Maps whose side is already a multiple of 4 are returned as they are."""
    maps = np.asarray(maps, np.float32)
    h, w = maps.shape[-2:]
    if h != w:
        raise ValueError(f"square maps expected, got {h}x{w}")
    if h % TILES == 0:
        return maps
    rep = math.lcm(h, TILES) // h
    return np.repeat(np.repeat(maps, rep, axis=-2), rep, axis=-1)


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """(n, h, w) maps to (n, size, size), tile by tile: cut into the 4x4 tiles first (see on_tile_grid), then
    each tile resized bilinearly on its own, so nothing crosses a tile border (= a slice boundary)."""
    if size % TILES:
        raise ValueError(f"mosaic size {size} is not a multiple of {TILES}")
    grid_maps = on_tile_grid(maps)
    t_in, t_out = grid_maps.shape[-1] // TILES, size // TILES
    out = np.empty((len(grid_maps), size, size), np.float32)
    for i, m in enumerate(grid_maps):
        for r in range(TILES):
            for c in range(TILES):
                tile = m[r * t_in : (r + 1) * t_in, c * t_in : (c + 1) * t_in]
                out[i, r * t_out : (r + 1) * t_out, c * t_out : (c + 1) * t_out] = resize_tile(tile, t_out)
    return out


def normalize(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to max 1 (an all-zero map stays zero), so subjects weigh alike in a mean map."""
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, *([1] * (maps.ndim - 1)))
    return np.divide(maps, peak, out=np.zeros_like(maps, dtype=np.float32), where=peak > 0)


def to_volume(mosaic_maps: np.ndarray, crop_grid: Grid, mni_grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Three (h, h) mosaic maps -> the cropped volume and the same on the MNI grid.

    Any map side works: a Grad-CAM map at its own resolution (4x4, 10x10, 22x22 ...) or a map already
    upsampled to the mosaic. The maps are cut into their tiles first (see on_tile_grid), each tile resized to
    its slice."""
    crop_vol = mosaics_to_volume(on_tile_grid(mosaic_maps), tuple(crop_grid.shape[:2]))
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


# --- the explain step of one CNN (TensorFlow) ----------------------------------------------------------


def load_test_mosaics(
    cache: str | os.PathLike, predictions: str | os.PathLike
) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """The AD and NC test subjects of a prediction table (sorted by id), their mosaics (n, 3, S, S) as float32
    and the cache's attributes."""
    from adtransfer.results.evaluate import read_predictions, subset

    test = subset(read_predictions(predictions), "test", classify=True).sort_values("subject_id")
    with h5py.File(cache, "r") as h5:
        rows = cache_rows(h5["subject_id"].asstr()[()], test["subject_id"], cache, f"test subjects of {predictions}")
        order = np.argsort(rows)  # h5py fancy indexing wants increasing rows
        mosaics = np.empty((len(rows), *h5["mosaics"].shape[1:]), np.float32)
        mosaics[order] = h5["mosaics"][rows[order]]
        attrs = dict(h5.attrs)
    return test, mosaics, attrs


def class_volumes(maps: np.ndarray, labels: np.ndarray, crop_grid: Grid) -> dict[str, np.ndarray]:
    """Mean normalized map per class (n, 3, h, w) -> {"AD"|"NC": volume on the crop}."""
    from adtransfer.imaging.templates import MNI_2MM

    return {
        name: to_volume(maps[labels == cls].mean(axis=0), crop_grid, MNI_2MM)[0]
        for cls, name in ((1, "AD"), (0, "NC"))
        if (labels == cls).any()
    }


def run_gradcam(
    trained: TrainedModel,
    predictions: str | os.PathLike,
    layer: str,
    summary_json: str | os.PathLike,
    regions_tsv: str | os.PathLike,
    map_files: dict[str, str | os.PathLike],
    examples_png: str | os.PathLike,
    means_png: str | os.PathLike,
    truth_json: str | os.PathLike | None = None,
    n_examples: int = 2,
    threads: int = 2,
    score_layers: list[str] | tuple[str, ...] = (),
) -> dict:
    """Grad-CAM of every AD and NC test subject (each for its true class): example overlays, mean maps per
    class on the mosaics and in 3D (`map_files`: class -> NIfTI on the MNI grid), a region table, and the
    ground-truth check of `layer` and of every layer in `score_layers` (scores only: the figures and maps are
    `layer`'s)."""
    from adtransfer.imaging.templates import MNI_2MM
    from adtransfer.io import save_nifti
    from adtransfer.results.figures import overlay_rows

    net, settings = trained.load(threads)
    layers = [layer] + [name for name in score_layers if name != layer]
    for name in layers:
        try:
            net.get_layer(name)
        except ValueError:
            raise InputError(
                f"{trained.model}: no layer {name!r} for Grad-CAM (explain.gradcam_layer / gradcam_score_layers)"
            ) from None
    test, mosaics, attrs = load_test_mosaics(trained.cache, predictions)
    n, k, size, _ = mosaics.shape
    labels = test["target"].to_numpy(int)
    x = scale(mosaics.reshape(-1, size, size, 1), settings["intensity_range"])
    crop_grid = crop_grid_of(attrs)
    summary: dict = {
        "layer": layer,
        "mosaic_size": size,
        "n_test": {"AD": int(labels.sum()), "NC": int((labels == 0).sum())},
    }
    summary["layers"] = {}
    for name in layers:
        raw = gradcam(net, x, name, class_index=np.repeat(labels, k))
        map_size = int(raw.shape[1])
        maps = normalize(raw).reshape(n, k, map_size, map_size)
        volumes = class_volumes(maps, labels, crop_grid)
        entry = {"map_size": [map_size, map_size], "straddles_tiles": bool(map_size % TILES)}
        if name == layer:
            summary.update(entry)
            main_maps, main_volumes = maps, volumes
        if truth_json and "AD" in volumes:
            ranked = region_table(volumes["AD"], crop_grid, "gradcam_AD")["region"].tolist()
            entry["ground_truth"] = truth_scores(volumes["AD"], ranked, truth_json, crop_grid)
        summary["layers"][name] = entry

    tables = []
    for name, crop_vol in main_volumes.items():
        mni_vol = uncrop(crop_vol, MNI_2MM, crop_grid)
        save_nifti(nib.Nifti1Image(mni_vol.astype(np.float32), MNI_2MM.affine), map_files[name])
        tables.append(region_table(crop_vol, crop_grid, f"gradcam_{name}").set_index(["region", "voxels"]))
    regions = pd.concat(tables, axis=1).reset_index()
    regions = regions.sort_values(regions.columns[2], ascending=False, kind="stable")
    with atomic_output(regions_tsv) as tmp:
        regions.to_csv(tmp, sep="\t", index=False, float_format="%.4g")
    if "ground_truth" in summary["layers"][layer]:
        summary["ground_truth"] = summary["layers"][layer]["ground_truth"]
    write_text(summary_json, json.dumps(summary, indent=2) + "\n")

    # figures: example subjects of each class (first ids, deterministic), then the class means; maps shown
    # tile by tile at the mosaic's size
    map_size = summary["map_size"][0]
    shown = upsample(main_maps.reshape(-1, map_size, map_size), size).reshape(n, k, size, size)
    examples = []
    for cls, name in ((1, "AD"), (0, "NC")):
        for i in np.flatnonzero(labels == cls)[:n_examples]:
            p = float(test["ensemble"].iloc[i])
            examples.append((f"{test['subject_id'].iloc[i]} {name} P(AD)={p:.2f}", list(mosaics[i]), list(shown[i])))
    what = f"Grad-CAM, layer {layer} ({map_size}x{map_size} map on {size} px mosaics)"
    if map_size % TILES:
        what += ", cells straddling tiles split by area"
    overlay_rows(examples, examples_png, f"{what}: test examples", vmin=0, vmax=1, cbar_label="Grad-CAM")
    means = [
        (
            f"mean {name} (n={int((labels == cls).sum())})",
            list(mosaics[labels == cls].mean(axis=0)),
            list(shown[labels == cls].mean(axis=0)),
        )
        for cls, name in ((1, "AD"), (0, "NC"))
        if (labels == cls).any()
    ]
    overlay_rows(
        means, means_png, f"{what}: class means over the test set", vmin=0, vmax=None, cbar_label="mean Grad-CAM"
    )
    return summary
