"""Region occlusion: a planted regional signal is found first, regions the crop misses are not measurable."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from adtransfer.errors import InputError
from adtransfer.imaging.grid import crop
from adtransfer.imaging.mosaic import make_mosaics
from adtransfer.imaging.templates import MNI_2MM, load_templates
from adtransfer.io import save_nifti
from adtransfer.results.occlusion import load_volume, occlude_regions, ranked_table, region_inventory, region_map

SIZE = 76


def _planted_cohort(crop_grid, region: str, n_ad: int = 2, n_nc: int = 4):
    """Grey-matter-like volumes with noise; AD subjects have 40 % lower values in `region`."""
    t = load_templates()
    labels, inventory = region_inventory(crop_grid)
    target = int(inventory.loc[inventory["region"] == region, "index"].iloc[0])
    base = crop(t.gm, MNI_2MM, crop_grid) + 0.2 * crop(t.brain_mask.astype(np.float32), MNI_2MM, crop_grid)
    rng = np.random.default_rng(0)
    vols = base[None] * (1 + 0.05 * rng.normal(size=(n_ad + n_nc, *base.shape))).astype(np.float32)
    vols[:n_ad][:, labels == target] *= 0.6
    targets = np.array([1] * n_ad + [0] * n_nc)
    return vols.astype(np.float32), targets, labels, inventory, target


def _hand_built_model(footprint: np.ndarray, threshold: float):
    """A Keras classifier built by hand: the AD logit falls with the mean intensity inside `footprint`."""
    import keras

    n = footprint.size
    inp = keras.Input((SIZE, SIZE, 1))
    flat = keras.layers.Flatten()(inp)
    out = keras.layers.Dense(2, activation="softmax", name="head_softmax")(flat)
    net = keras.Model(inp, out)
    kernel = np.zeros((n, 2), np.float32)
    kernel[:, 1] = -footprint.reshape(-1) / footprint.sum() * 40.0
    net.get_layer("head_softmax").set_weights([kernel, np.array([0.0, 40.0 * threshold], np.float32)])
    return net


def test_a_planted_region_is_recovered_at_the_top_of_the_occlusion_ranking(crop_grid):
    region = "Precuneus_L"
    vols, targets, labels, inventory, target = _planted_cohort(crop_grid, region)
    reference = vols[targets == 0].mean(axis=0)  # the NC "training" mean
    footprint = (make_mosaics((labels == target).astype(np.float32), SIZE).sum(axis=0) > 0.5).astype(np.float32)
    mosaic_nc = make_mosaics(reference, SIZE)
    inside = float((mosaic_nc * footprint).sum() / footprint.sum() / 3)  # mean over the 3 sets' footprints
    net = _hand_built_model(footprint, threshold=0.85 * inside)

    def predict(mosaics):
        return np.asarray(net.predict_on_batch(mosaics[..., None]))[:, 1]

    measured = inventory[inventory["measurable"]]
    ad = vols[targets == 1]
    base, drops = occlude_regions(predict, ad, reference, labels, measured["index"].tolist(), SIZE)
    assert base.mean() > 0.5  # the model calls the planted subjects AD
    table = ranked_table(inventory, drops, np.ones(len(ad), int), ["AD"])
    assert table["region"].iloc[0] == region
    assert table["drop_AD"].iloc[0] > 0.3
    assert table["drop_AD"].iloc[1] < 0.5 * table["drop_AD"].iloc[0]


def test_regions_outside_the_crop_are_not_measurable_rather_than_zero(crop_grid):
    labels, inventory = region_inventory(crop_grid)
    outside = inventory[inventory["voxels_crop"] == 0]
    assert len(outside) > 0  # the 95x95x48 crop stops above the lowest cerebellum
    measured = inventory["measurable"].to_numpy()
    drops = np.zeros((2, measured.sum()))  # nothing changes anywhere it can be measured
    table = ranked_table(inventory, drops, np.array([1, 1]), ["AD"])
    rows = table.set_index("region").loc[outside["region"]]
    assert rows["drop_AD"].isna().all() and not rows["measurable"].any()
    assert (rows["note"] == "outside the crop").all()
    assert (table.loc[table["measurable"], "drop_AD"] == 0).all()
    assert table["measurable"].iloc[: measured.sum()].all()  # the not measurable ones come last
    values = inventory.assign(v=np.where(measured, 1.0, np.nan))["v"]
    painted = region_map(labels, inventory, values)
    assert np.isnan(painted[labels == 0]).all() and np.isnan(painted[labels == outside["index"].iloc[0]]).all()
    assert (painted[labels == inventory.loc[measured, "index"].iloc[0]] == 1).all()


@pytest.mark.parametrize("classes", [["NC"], []])
def test_occlusion_classes_must_start_with_ad(classes, tmp_path):
    from adtransfer.errors import InputError
    from adtransfer.learning.predict import TrainedModel
    from adtransfer.results.occlusion import run_occlusion

    with pytest.raises(InputError, match="start with AD"):
        out = [tmp_path / name for name in ("s.json", "r.tsv", "o.nii.gz", "x.png")]
        run_occlusion(TrainedModel("m.keras", "m.json", "c.h5", "s.tsv", "n1"), tmp_path, *out, classes=classes)


def test_rebuilding_only_the_touched_tiles_equals_rebuilding_the_mosaics(crop_grid):
    from adtransfer.results.occlusion import cached_mosaics, occluded_mosaics

    labels, inventory = region_inventory(crop_grid)
    rng = np.random.default_rng(3)
    vol, ref = rng.random((2, *crop_grid.shape), dtype=np.float32)
    mask = labels == int(inventory.loc[inventory["region"] == "Hippocampus_R", "index"].iloc[0])
    changed = np.where(mask, ref, vol)
    for size in (76, 96):
        fast = occluded_mosaics(cached_mosaics(vol, size), vol, mask, ref)
        np.testing.assert_array_equal(fast, cached_mosaics(changed, size))


def test_the_nc_reference_holds_training_subjects_only():
    from adtransfer.results.occlusion import select_subjects

    member = np.array(["train", "train", "val", "test", "test", "", "train"])
    labels = np.array([0, 1, 0, 0, 1, 0, -1])
    reference, test = select_subjects(member, labels, ["AD"])
    assert reference.tolist() == [True, False, False, False, False, False, False]
    assert test.tolist() == [False, False, False, False, True, False, False]
    assert select_subjects(member, labels, ["AD", "NC"])[1].tolist() == [False, False, False, True, True, False, False]


@pytest.mark.parametrize("damage", ["sidecar missing", "volume cut short"])
def test_an_unreadable_preprocessed_subject_is_named(tmp_path, damage):
    """Occlusion rebuilds each subject's mosaics from its preprocessed files: one that cannot be read ends as one
    InputError naming that file, not a library's traceback."""
    nii, sidecar = tmp_path / "s1.nii.gz", tmp_path / "s1.json"
    save_nifti(nib.Nifti1Image(np.ones((6, 7, 5), np.float32), np.eye(4)), nii)
    sidecar.write_text(json.dumps({"input_sha256": "ab"}))
    np.testing.assert_array_equal(load_volume(tmp_path, "s1", {"s1": "ab"}, (6, 7, 5)), np.ones((6, 7, 5)))
    if damage == "sidecar missing":
        sidecar.unlink()
    else:
        nii.write_bytes(nii.read_bytes()[:-20])
    with pytest.raises(InputError) as info:
        load_volume(tmp_path, "s1", {"s1": "ab"}, (6, 7, 5))
    assert str(sidecar if damage == "sidecar missing" else nii) in str(info.value)
    assert len(str(info.value).splitlines()) == 1
