"""Grad-CAM and its way back into 3D: geometry, region statistics, and a model whose signal sits in one tile."""

from __future__ import annotations

import numpy as np
import pytest

from adtransfer.imaging.grid import crop
from adtransfer.imaging.mosaic import make_mosaics, slice_index
from adtransfer.imaging.templates import MNI_2MM
from adtransfer.results.explain import (
    normalize,
    on_tile_grid,
    region_table,
    to_volume,
    upsample,
)


def test_back_projection_round_trip_is_exact_before_resizing(crop_grid):
    vol = np.random.default_rng(0).random(crop_grid.shape).astype(np.float32)
    mosaics = make_mosaics(vol, 4 * crop_grid.shape[0])  # full-size tiles: no resizing
    crop_vol, mni_vol = to_volume(mosaics, crop_grid, MNI_2MM)
    np.testing.assert_array_equal(crop_vol, vol)
    inside = crop(np.ones(MNI_2MM.shape, bool), MNI_2MM, crop_grid)  # the crop's part on the MNI grid
    np.testing.assert_array_equal(crop(mni_vol, MNI_2MM, crop_grid)[inside], vol[inside])


@pytest.mark.parametrize("k,r,c", [(0, 0, 0), (1, 2, 3), (2, 3, 1)])
def test_a_hot_tile_lands_on_its_slice(crop_grid, k, r, c):
    size = 96
    tile = size // 4
    maps = np.zeros((3, size, size), np.float32)
    maps[k, r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = 1.0
    crop_vol, _ = to_volume(maps, crop_grid, MNI_2MM)
    hot = np.flatnonzero(crop_vol.reshape(-1, crop_vol.shape[2]).max(axis=0) > 0.5)
    assert hot.tolist() == [slice_index(k, r, c)]


def _slice_mass(crop_vol: np.ndarray) -> np.ndarray:
    mass = crop_vol.reshape(-1, crop_vol.shape[2]).sum(axis=0)
    return mass / mass.sum()


@pytest.mark.parametrize("k,r,c", [(0, 1, 1), (2, 0, 3)])
def test_a_hot_cell_of_a_4x4_map_stays_in_its_slice_after_display_upsampling(crop_grid, k, r, c):
    """The old path upsampled the whole mosaic map bilinearly before cutting tiles: 44 % of a hot cell at
    tile (1, 1) leaked into the slices of neighbouring tiles."""
    raw = np.zeros((3, 4, 4), np.float32)
    raw[k, r, c] = 1.0
    for maps in (raw, upsample(raw, 96)):
        mass = _slice_mass(to_volume(maps, crop_grid, MNI_2MM)[0])
        assert mass[slice_index(k, r, c)] == pytest.approx(1.0)


@pytest.mark.parametrize("cell,tile,lo", [(3, 1, 19), (6, 2, 38)])
def test_a_hot_cell_inside_one_tile_of_a_10x10_map_projects_to_that_tile_only(crop_grid, cell, tile, lo):
    """mixed10 at 380 px is 10x10: 2.5 cells per tile. Cell 3 lies inside tile 1 (cells 2.5-5), cell 6 inside
    tile 2 (cells 5-7.5)."""
    raw = np.zeros((3, 10, 10), np.float32)
    raw[1, cell, cell] = 1.0
    mass = _slice_mass(to_volume(raw, crop_grid, MNI_2MM)[0])
    assert mass[slice_index(1, tile, tile)] == pytest.approx(1.0)
    # and where it sits in its tile: 0.4 of the tile's 2.5 cells wide, from `lo` px of the tile's 95
    img = upsample(raw[1:2], 380)[0, 95 * tile : 95 * (tile + 1), 95 * tile : 95 * (tile + 1)]
    rows, cols = np.nonzero(img > 0.5)
    assert lo - 4 <= rows.min() and rows.max() <= lo + 38 + 4 and lo - 4 <= cols.min() and cols.max() <= lo + 42


def test_a_cell_straddling_four_tiles_is_split_by_area(crop_grid):
    """Cell (2, 2) of a 10x10 map covers rows/cols 2-3 of 10, across the border at 2.5: a quarter per tile."""
    raw = np.zeros((3, 10, 10), np.float32)
    raw[0, 2, 2] = 1.0
    grid = on_tile_grid(raw)
    assert grid.shape == (3, 20, 20)  # lcm(10, 4)
    mass = _slice_mass(to_volume(raw, crop_grid, MNI_2MM)[0])
    for r, c in ((0, 0), (0, 1), (1, 0), (1, 1)):
        assert mass[slice_index(0, r, c)] == pytest.approx(0.25, abs=0.02)
    assert mass[[slice_index(0, r, c) for r, c in ((0, 0), (0, 1), (1, 0), (1, 1))]].sum() == pytest.approx(1.0)


def test_a_uniform_tile_stays_uniform(crop_grid):
    """No left-right gradient borrowed from a neighbouring tile."""
    raw = np.zeros((3, 4, 4), np.float32)
    raw[0, 2, 1] = 1.0
    tile = upsample(raw, 96)[0, 48:72, 24:48]
    np.testing.assert_allclose(tile, 1.0)


def test_upsample_and_normalize():
    maps = np.zeros((2, 4, 4), np.float32)
    maps[0, 1, 2] = 3.0
    up = normalize(upsample(maps, 96))
    assert up.shape == (2, 96, 96)
    assert up[0].max() == pytest.approx(1.0) and np.all(up[1] == 0)
    r, c = np.unravel_index(np.argmax(up[0]), (96, 96))
    assert r // 24 == 1 and c // 24 == 2  # the peak stays in its cell


def test_region_table_ranks_a_painted_region_first(crop_grid):
    from adtransfer.imaging.roi import atlas_in

    labels, table = atlas_in(crop_grid)
    target = table[table["name"].str.startswith("Precuneus")].iloc[0]
    vol = (labels == target["index"]).astype(np.float32)
    ranked = region_table(vol, crop_grid)
    assert ranked["region"].iloc[0] == target["name"]
    assert ranked["gradcam"].iloc[0] == pytest.approx(1.0)


@pytest.mark.slow
def test_gradcam_lights_the_tile_that_carries_the_signal():
    """A small CNN learns AD = a bright blob in tile (1, 2); Grad-CAM of the AD class must peak in that tile."""
    import keras

    from adtransfer.learning.train import configure_tensorflow
    from adtransfer.results.explain import gradcam

    configure_tensorflow(0, 2)
    rng = np.random.default_rng(0)
    n, size, tile = 160, 76, 19
    x = rng.normal(0, 0.3, (n, size, size, 1)).astype(np.float32)
    y = np.repeat([0, 1], n // 2)
    yy, xx = np.mgrid[0:tile, 0:tile]
    blob = np.exp(-((yy - 9) ** 2 + (xx - 9) ** 2) / 20.0)
    x[y == 1, tile : 2 * tile, 2 * tile : 3 * tile, 0] += 1.5 * blob
    inp = keras.Input((size, size, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    net = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))  # functional, as the real models
    net.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    net.fit(x, y, epochs=12, batch_size=16, verbose=0)
    assert net.evaluate(x, y, verbose=0)[1] > 0.9
    maps = normalize(upsample(gradcam(net, x[y == 1], "last_conv", class_index=1), size)).mean(axis=0)
    tiles = maps.reshape(4, tile, 4, tile).mean(axis=(1, 3))
    assert np.unravel_index(np.argmax(tiles), tiles.shape) == (1, 2)
    assert tiles[1, 2] > 3 * np.delete(tiles.ravel(), 4 * 1 + 2).mean()


def _tiny_classifier(size: int = 16):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="last_conv")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="head_softmax")(h))


def test_gradcam_of_a_saturated_softmax_is_the_logit_map():
    """With P(AD) = 1.0 exactly the softmax passes no gradient; the logit still does. A bias on the AD logit
    saturates the softmax without changing d(logit)/d(maps): the map must be the same and not empty."""
    from adtransfer.results.explain import gradcam

    net = _tiny_classifier()
    x = np.random.default_rng(1).normal(size=(4, 16, 16, 1)).astype(np.float32)
    plain = gradcam(net, x, "last_conv", class_index=1)
    dense = net.get_layer("head_softmax")
    dense.bias.assign(np.array([0.0, 500.0], np.float32))
    assert np.all(net.predict(x, verbose=0)[:, 1] == 1.0)  # saturated in float32
    saturated = gradcam(net, x, "last_conv", class_index=1)
    assert saturated.max() > 0
    np.testing.assert_allclose(normalize(saturated), normalize(plain), atol=1e-5)


def _fabricate_explanations(root, sizes, crop_grid):
    """Summaries and maps as the gradcam, occlusion and explain-baseline steps write them."""
    import json

    import h5py
    import nibabel as nib

    from adtransfer.catalog import grid

    top = {"k": 10, "hits": 6, "regions": ["Precuneus_L"] * 10}
    for m in grid(sizes):
        folder = root / "explain" / m.name
        folder.mkdir(parents=True, exist_ok=True)
        if m.kind == "cnn" and m.classify:
            layers = {
                "mixed7": {"map_size": [10, 10], "ground_truth": {"ratio": 1.2, "top_regions": {**top, "hits": 1}}},
                "mixed5": {"map_size": [8, 8], "ground_truth": {"ratio": 1.6, "top_regions": {**top, "hits": 3}}},
            }
            summary = {"layer": "mixed7", "map_size": [10, 10], "mosaic_size": 380, "layers": layers}
            (folder / "gradcam_summary.json").write_text(json.dumps(summary))
            occ = {
                "regions": {"measured": 156},
                "n_test": {"AD": 20},
                "ground_truth": {"ratio": 2.5, "top_regions": top},
            }
            (folder / "occlusion_summary.json").write_text(json.dumps(occ))
            for name in ("gradcam_AD", "occlusion_AD"):
                vol = np.zeros(MNI_2MM.shape, np.float32)
                vol[30:40, 40:60, 40:50] = 1.0
                nib.save(nib.Nifti1Image(vol, MNI_2MM.affine), folder / f"{name}.nii.gz")
        elif m.kind == "roi":
            summary = {"n_regions": 156, "ground_truth": {**top, "ratio": 3.0, "top_regions": {**top, "hits": 9}}}
            (folder / "explain_summary.json").write_text(json.dumps(summary))
            vol = np.zeros(MNI_2MM.shape, np.float32)
            vol[50:60, 40:60, 40:50] = -0.5
            nib.save(nib.Nifti1Image(vol, MNI_2MM.affine), folder / "coefficients.nii.gz")
    with h5py.File(root / "cache.h5", "w") as h5:
        h5.attrs.update(
            {"crop_shape": list(crop_grid.shape), "crop_origin_mm": list(crop_grid.origin_mm), "voxel_mm": 2.0}
        )


def test_explanation_table_scores_every_layer_occlusion_and_coefficients_alike(tmp_path, crop_grid):
    from adtransfer.results import report

    _fabricate_explanations(tmp_path, [8], crop_grid)
    table = report.explanation_table(report.Results(tmp_path, {"sizes": [8]}))
    fdg = table[table["model"] == "Inception v3, FDG 8"].set_index("explanation")
    assert list(fdg.index) == ["Grad-CAM mixed7 (figures)", "Grad-CAM mixed5", "region occlusion (drop in P(AD))"]
    assert fdg["mass in altered regions / chance"].tolist() == [1.2, 1.6, 2.5]
    assert fdg["altered among top 10 regions"].tolist() == [1, 3, 6]
    assert "straddle" in fdg.loc["Grad-CAM mixed7 (figures)", "resolution"]
    assert "straddle" not in fdg.loc["Grad-CAM mixed5", "resolution"]
    roi = table[table["explanation"] == "standardized coefficients"]
    assert (roi["mass in altered regions / chance"] == 3.0).all() and (roi["altered among top 10 regions"] == 9).all()


def test_explanation_table_covers_the_explained_models_only(tmp_path, crop_grid):
    """With explain.models naming a subset, only those classifiers have explanation files: the table reads and
    lists exactly them (and every ROI baseline), never a stale or missing file of another classifier."""
    import shutil

    from adtransfer.results import report

    _fabricate_explanations(tmp_path, [8], crop_grid)
    shutil.rmtree(tmp_path / "explain" / "ecd" / "scratch")  # not explained: the workflow made no files for it
    spec = {"sizes": [8], "explain_models": ["fdg/n8", "ecd/from_fdg_n8"]}
    table = report.explanation_table(report.Results(tmp_path, spec))
    cnn_rows = table[table["explanation"] != "standardized coefficients"]
    assert set(cnn_rows["model"]) == {"Inception v3, FDG 8", "Inception v3, FDG 8 pre-trained"}
    assert (table["explanation"] == "standardized coefficients").sum() == 4  # fdg/n8, ecd/nall, two MMSE


def test_side_by_side_figure_of_one_model(tmp_path, crop_grid):
    from adtransfer.results import report

    _fabricate_explanations(tmp_path, [8], crop_grid)
    out = tmp_path / "side by side.png"
    report.explanation_figure(report.Results(tmp_path, {"sizes": [8]}), "fdg/n8", tmp_path / "cache.h5", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
