"""Training data from the HDF5 cache: every mosaic is a sample carrying its scan's label.

Intensities are mapped to Inception v3's input range [-1, 1] by a fixed, documented mapping per modality
(config `train.intensity_range`: FDG uptake ratio 0..3, ECD z-score -4..4 -> -1..1), never by statistics of
one split, so validation and test inputs sit where the training inputs sat. The mosaics stay float16 in
memory when they fit (`train.max_memory_gb`) and are streamed from the HDF5 file in batches otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd

from adtransfer.errors import InputError
from adtransfer.imaging.cache import cache_rows


@dataclass
class Samples:
    """Mosaic-level samples of a set of subjects (3 per subject, subject-major order)."""

    cache: str
    rows: np.ndarray  # row of each subject in the cache
    subject_ids: np.ndarray  # (n_subjects,)
    targets: np.ndarray  # (n_subjects,) class index (AD 1, NC 0) or MMSE
    size: int
    n_sets: int = 3

    @property
    def n(self) -> int:
        return len(self.rows) * self.n_sets

    def sample_targets(self) -> np.ndarray:
        return np.repeat(self.targets, self.n_sets)

    def nbytes(self) -> int:
        return self.n * self.size * self.size * 2


def select(cache: str | os.PathLike, splits: pd.DataFrame, column: str, value: str | bool, task: str) -> Samples:
    """The subjects of one split set (e.g. column n100 == "train", or test == True), in cache order."""
    ids = splits.loc[splits[column] == value, "subject_id"].tolist()
    with h5py.File(cache, "r") as h5:
        cache_ids = h5["subject_id"].asstr()[()]
        size = int(h5.attrs["mosaic_size"])
        labels = h5["label"][()]
        mmse = h5["mmse"][()]
    rows = np.sort(cache_rows(cache_ids, ids, cache, "split subjects"))
    if task == "classify":
        targets = labels[rows].astype(np.int64)
        if np.any(targets < 0):
            raise InputError(f"{column}={value}: MCI subjects cannot be in an AD/NC classification set")
    else:
        targets = mmse[rows].astype(np.float32)
        if np.any(~np.isfinite(targets)):
            raise InputError(f"{column}={value}: subjects without MMSE in a regression set")
    return Samples(str(cache), rows, cache_ids[rows], targets, size)


def scale(x: np.ndarray, intensity_range: tuple[float, float]) -> np.ndarray:
    lo, hi = intensity_range
    return (x.astype(np.float32) - lo) * (2.0 / (hi - lo)) - 1.0


def load_mosaics(samples: Samples, intensity_range: tuple[float, float]) -> np.ndarray:
    """All mosaics of `samples` as (n, S, S, 1) float32 in [-1, 1]-ish (one sample per mosaic)."""
    with h5py.File(samples.cache, "r") as h5:
        mos = h5["mosaics"][samples.rows] if len(samples.rows) else np.zeros((0, 3, samples.size, samples.size))
    return scale(mos.reshape(-1, samples.size, samples.size, 1), intensity_range)


class EpochCounter:
    """The current epoch, set by a Keras callback and read by the input pipeline when it shuffles.

    The shuffle order of epoch e is a function of (seed, e) alone, so a run resumed by BackupAndRestore at
    epoch e sees the same batches as an uninterrupted run (tf.data's reshuffle_each_iteration would restart
    its sequence at the first epoch).
    """

    def __init__(self):
        import tensorflow as tf

        self.variable = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")

    def callback(self):
        import keras

        return keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: self.variable.assign(epoch))


def make_dataset(
    samples: Samples,
    intensity_range: tuple[float, float],
    batch_size: int,
    shuffle: bool,
    seed: int,
    max_memory_bytes: float = 4e9,
    epoch: EpochCounter | None = None,
):
    """A tf.data pipeline of (mosaic, target) batches; shuffled per epoch when `shuffle` (see EpochCounter)."""
    import tensorflow as tf

    y = samples.sample_targets()
    lo, hi = intensity_range
    epoch = epoch or EpochCounter()
    if samples.nbytes() <= max_memory_bytes:
        # whole batches are gathered from one in-memory float16 tensor: a few batched ops per step instead of
        # per-sample slicing, so the input never costs the model more than a gather and a cast
        with h5py.File(samples.cache, "r") as h5:
            x16 = tf.constant(h5["mosaics"][samples.rows].reshape(-1, samples.size, samples.size, 1))
        y_t = tf.constant(y)
        n = len(y)
        if shuffle:
            # the permutation is drawn when each epoch's iterator starts, from (seed, current epoch)
            ds = tf.data.Dataset.from_tensors(tf.constant(n, tf.int64)).map(
                lambda k: tf.random.experimental.stateless_shuffle(
                    tf.range(k), seed=tf.stack([tf.constant(seed, tf.int64), epoch.variable.read_value()])
                )
            )
            ds = ds.unbatch()
        else:
            ds = tf.data.Dataset.range(n)
        ds = ds.batch(batch_size).map(
            lambda i: (tf.gather(x16, i), tf.gather(y_t, i)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    else:
        ds = _streamed(samples, y, batch_size, shuffle, seed, epoch)
    # the batch count is known; telling tf.data lets Keras size each epoch without running into the end of the data
    ds = ds.apply(tf.data.experimental.assert_cardinality(-(-len(y) // batch_size)))
    ds = ds.map(
        lambda x, t: ((tf.cast(x, tf.float32) - lo) * (2.0 / (hi - lo)) - 1.0, t),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def _streamed(samples: Samples, y: np.ndarray, batch_size: int, shuffle: bool, seed: int, epoch: EpochCounter):
    """Batches read from the HDF5 file (one chunk per subject) when the mosaics do not fit in memory."""
    import tensorflow as tf

    size, n_sets = samples.size, samples.n_sets

    def batches():
        order = np.arange(samples.n)
        if shuffle:
            np.random.default_rng([seed, int(epoch.variable.numpy())]).shuffle(order)
        with h5py.File(samples.cache, "r") as h5:
            mos = h5["mosaics"]
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                subj, which = idx // n_sets, idx % n_sets
                x = np.stack([mos[samples.rows[s], k] for s, k in zip(subj, which, strict=True)])
                yield x[..., None], y[idx]

    spec = (tf.TensorSpec((None, size, size, 1), tf.float16), tf.TensorSpec((None,), tf.as_dtype(y.dtype)))
    return tf.data.Dataset.from_generator(batches, output_signature=spec)
