"""Benchmark: does the input pipeline keep up with the model? Prints figures; asserts nothing.

(a) training images/s through the real pipeline (HDF5 cache -> tf.data, in memory) divided by images/s of the
    same model fed one constant in-memory batch: goal >= 0.95 (the pipeline never starves the model).
(b) seconds per epoch of the route a user would otherwise take (mosaics exported as PNG files, read with
    keras.utils.image_dataset_from_directory) divided by ours, same model and images: goal >= 1.5.

    python bench/train_input.py [--subjects 120 --size 76 --epochs 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from PIL import Image


def fake_cache(path: Path, n: int, size: int, seed: int) -> None:
    """A cache with the real layout: smooth random mosaics, half AD."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as h5:
        mos = h5.create_dataset(
            "mosaics", (n, 3, size, size), dtype="float16", chunks=(1, 3, size, size), compression="lzf", shuffle=True
        )
        for i in range(n):
            mos[i] = rng.uniform(0, 2.5, (3, size, size)).astype(np.float16)
        h5.create_dataset(
            "subject_id", data=np.array([f"s{i:04d}" for i in range(n)], dtype=object), dtype=h5py.string_dtype()
        )
        h5.create_dataset("label", data=(np.arange(n) % 2).astype(np.int8))
        h5.create_dataset("mmse", data=np.full(n, 25, np.float32))
        h5.attrs["mosaic_size"] = size


def timed_fit(model, ds, epochs: int) -> float:
    model.fit(ds, epochs=1, verbose=0)  # warm-up: tracing, first reads
    start = time.perf_counter()
    model.fit(ds, epochs=epochs, verbose=0)
    return (time.perf_counter() - start) / epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=120)
    ap.add_argument("--size", type=int, default=76)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from adtransfer.learning.data import make_dataset, select
    from adtransfer.learning.model import add_head, build_backbone, compile_model
    from adtransfer.learning.train import configure_tensorflow

    configure_tensorflow(1, args.threads)
    import keras
    import tensorflow as tf

    work = Path(tempfile.mkdtemp(prefix="adtransfer-bench-"))
    try:
        cache = work / "cache.h5"
        fake_cache(cache, args.subjects, args.size, 1)
        ids = [f"s{i:04d}" for i in range(args.subjects)]
        splits = pd.DataFrame({"subject_id": ids, "set": "train"})
        samples = select(cache, splits, "set", "train", "classify")
        n = samples.n
        model = compile_model(
            add_head(build_backbone(args.size, "random", 0.03, 0.03, 1, 0.9), "classify", 256), "classify", 1e-3
        )
        steps = int(np.ceil(n / args.batch))
        print(
            f"{args.subjects} subjects = {n} mosaics of {args.size} px, batch {args.batch}, {steps} steps/epoch, "
            f"{args.threads} TensorFlow threads"
        )

        ours = make_dataset(samples, (0.0, 3.0), args.batch, True, 1)
        t_ours = timed_fit(model, ours, args.epochs)
        rng = np.random.default_rng(2)
        xb = rng.uniform(-1, 1, (args.batch, args.size, args.size, 1)).astype(np.float32)
        yb = (np.arange(args.batch) % 2).astype(np.int64)
        const = tf.data.Dataset.from_tensors((xb, yb)).repeat(steps)
        t_const = timed_fit(model, const, args.epochs)
        ips_ours, ips_const = n / t_ours, steps * args.batch / t_const
        print(
            f"(a) real pipeline {ips_ours:.1f} img/s, constant batch {ips_const:.1f} img/s: "
            f"ratio {ips_ours / ips_const:.3f} (goal >= 0.95)"
        )

        # the naive route: PNG files per class folder, decoded every epoch
        png = work / "png"
        with h5py.File(cache) as h5:
            mos, labels = h5["mosaics"][()], h5["label"][()]
        for i in range(args.subjects):
            for k in range(3):
                d = png / ("AD" if labels[i] else "NC")
                d.mkdir(parents=True, exist_ok=True)
                img = (np.clip(mos[i, k].astype(np.float32) / 3.0, 0, 1) * 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{ids[i]}_{k}.png")
        naive = keras.utils.image_dataset_from_directory(
            png,
            color_mode="grayscale",
            batch_size=args.batch,
            image_size=(args.size, args.size),
            shuffle=True,
            seed=1,
            verbose=False,
        )
        naive = naive.map(lambda x, y: (x / 127.5 - 1.0, y))
        t_naive = timed_fit(model, naive, args.epochs)
        print(
            f"(b) PNG + image_dataset_from_directory {t_naive:.1f} s/epoch, ours {t_ours:.1f} s/epoch: "
            f"ratio {t_naive / t_ours:.2f} (goal >= 1.5)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
