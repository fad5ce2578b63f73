"""The tf.data input: one sample per mosaic with its scan's label, fixed intensity mapping, in memory or streamed."""

from __future__ import annotations

import numpy as np
import pytest

from adtransfer.errors import InputError
from adtransfer.imaging.cache import read_cache
from adtransfer.learning.data import load_mosaics, make_dataset, scale, select
from adtransfer.learning.splits import read_splits

pytest.importorskip("tensorflow")


def test_samples_follow_the_split_and_carry_their_scans_label(tiny_cache):
    splits = read_splits(tiny_cache["splits"])
    train = select(tiny_cache["cache"], splits, "n12", "train", "classify")
    expected = set(splits.loc[splits["n12"] == "train", "subject_id"])
    assert set(train.subject_ids) == expected and train.n == 3 * len(expected)
    cache = read_cache(tiny_cache["cache"], with_mosaics=False)
    label = dict(zip(cache["subject_id"], cache["label"], strict=True))
    assert [label[s] for s in train.subject_ids] == train.targets.tolist()
    np.testing.assert_array_equal(train.sample_targets(), np.repeat(train.targets, 3))


def test_mci_cannot_enter_classification(tiny_cache):
    splits = read_splits(tiny_cache["splits"])
    mci = splits["diagnosis"] == "MCI"
    splits.loc[mci, "n12"] = "train"
    with pytest.raises(InputError, match="MCI"):
        select(tiny_cache["cache"], splits, "n12", "train", "classify")


def test_fixed_intensity_mapping():
    np.testing.assert_allclose(scale(np.array([0.0, 1.5, 3.0]), (0.0, 3.0)), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(scale(np.array([-4.0, 4.0]), (-4.0, 4.0)), [-1.0, 1.0])


@pytest.mark.parametrize("max_memory", [4e9, 0.0], ids=["in_memory", "streamed"])
def test_dataset_yields_every_mosaic_once_scaled(tiny_cache, max_memory):
    splits = read_splits(tiny_cache["splits"])
    train = select(tiny_cache["cache"], splits, "n12", "train", "classify")
    ds = make_dataset(train, (0.0, 3.0), batch_size=5, shuffle=False, seed=0, max_memory_bytes=max_memory)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert x.shape == (train.n, 76, 76, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x, load_mosaics(train, (0.0, 3.0)), atol=1e-6)
    np.testing.assert_array_equal(y, train.sample_targets())


def test_streamed_shuffle_is_seeded_and_complete(tiny_cache):
    splits = read_splits(tiny_cache["splits"])
    train = select(tiny_cache["cache"], splits, "n12", "train", "classify")

    def first_epoch(seed):
        ds = make_dataset(train, (0.0, 3.0), 4, shuffle=True, seed=seed, max_memory_bytes=0)
        return np.concatenate([x.numpy().mean(axis=(1, 2, 3)) + 10 * y.numpy() for x, y in ds])

    a, b = first_epoch(1), first_epoch(1)
    np.testing.assert_array_equal(a, b)
    in_order = np.concatenate(
        [
            x.numpy().mean(axis=(1, 2, 3)) + 10 * y.numpy()
            for x, y in make_dataset(train, (0.0, 3.0), 4, shuffle=False, seed=1, max_memory_bytes=0)
        ]
    )
    np.testing.assert_allclose(np.sort(a), np.sort(in_order))


@pytest.mark.parametrize("max_memory", [4e9, 0])
def test_shuffle_order_is_a_function_of_seed_and_epoch(tiny_cache, max_memory):
    """A run resumed at epoch e must see the batches an uninterrupted run sees at epoch e."""
    from adtransfer.learning.data import EpochCounter

    splits = read_splits(tiny_cache["splits"])
    train = select(tiny_cache["cache"], splits, "n12", "train", "classify")

    def order(ds):
        return np.concatenate([x.numpy().mean(axis=(1, 2, 3)) + 10 * y.numpy() for x, y in ds])

    running = EpochCounter()
    ds = make_dataset(train, (0.0, 3.0), 4, shuffle=True, seed=5, max_memory_bytes=max_memory, epoch=running)
    epochs = []
    for e in range(3):
        running.variable.assign(e)
        epochs.append(order(ds))
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled every epoch
    resumed = EpochCounter()
    resumed.variable.assign(2)
    ds2 = make_dataset(train, (0.0, 3.0), 4, shuffle=True, seed=5, max_memory_bytes=max_memory, epoch=resumed)
    np.testing.assert_array_equal(order(ds2), epochs[2])
    np.testing.assert_allclose(np.sort(epochs[1]), np.sort(epochs[0]))  # every mosaic once per epoch
