"""Benchmark: one Inception v3 training step against this machine's float32 matmul peak. Prints figures; asserts
nothing.

Every measurement runs in its own process (thread settings and XLA are fixed when TensorFlow starts), one after
the other, so each option is a ratio against today's setting measured in the same run:

  base          today's training step: the project's model (random init) compiled as train.py compiles it,
                fed by the project's input pipeline (float16 cache in memory, cast to float32 in tf.data)
  xla           model.compile(jit_compile=True)
  spe<k>        model.compile(steps_per_execution=k)
  float32       float32 mosaics in memory: no cast in the pipeline (twice the memory)
  nchw          channels-first (keras image_data_format); TensorFlow's CPU kernels may refuse it
  grappler      TensorFlow's graph optimizer (Grappler) on, as TensorFlow's default; the project turns it off
                where there is no GPU (train.configure_tensorflow): it rewrites every traced function once, start-up
                cost (the "compile CPU s" column) that did not buy faster steps on the CPU
  t1            one process with 1 intra-op thread
  pair          two 1-thread processes side by side (what `make demo` runs: train.threads 1, gpu=2)
  adopted       the demo's adopted setting (pair + the options given by --adopt)
  base (again)  the first measurement repeated at the end: how much the machine's load drifted meanwhile

Achieved FLOP/s = training FLOPs per image x images/s, with training FLOPs = 3 x the forward FLOPs that
TensorFlow's profiler counts on the model's forward concrete function (batch 1; a multiply-add counts 2): the
backward pass costs about twice the forward one. The peak is a loop of 2048 x 2048 float32 tf.matmul with the
same thread count. Both are given per wall second and per CPU second of the process (getrusage): on a machine
shared with other jobs the CPU-second figure is the steadier one. "compile CPU s" is what a training job pays once
before its first step (tracing, XLA compilation): the warm-up's CPU time beyond its steps.

    python bench/train_step.py                                  # the full set: one process per setting
    python bench/train_step.py --quick                          # 96 px, batch 32: base, xla, adopted
    python bench/train_step.py --sizes 96 --batches 32 --variants base xla spe4 --steps 10
    python bench/train_step.py --mixed-precision                # on a GPU: float16 compute
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT = "RESULT "
LARGE = 200  # px: above this, --large-steps timed steps (380 px runs at about 1.3 img/s on 2 cores)
MATMUL_N = 2048


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def start_tensorflow(threads: int, mixed_precision: bool):
    from adtransfer.learning.train import configure_tensorflow

    configure_tensorflow(1, threads)
    import keras
    import tensorflow as tf

    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    return keras, tf


def forward_flops(net, size: int) -> int:
    """Floating-point operations of one image through the model in inference mode (TensorFlow's profiler)."""
    import tensorflow as tf

    fn = tf.function(lambda x: net(x, training=False))
    shape = [1, size, size, 1] if net.input_shape[-1] == 1 else [1, 1, size, size]
    graph = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph, cmd="op", options=options).total_float_ops)


def matmul_worker(spec: dict) -> dict:
    _, tf = start_tensorflow(spec["threads"], False)
    a = tf.random.uniform((MATMUL_N, MATMUL_N), dtype=tf.float32)
    b = tf.random.uniform((MATMUL_N, MATMUL_N), dtype=tf.float32)
    tf.matmul(a, b).numpy()  # warm-up
    reps = spec["reps"]
    t0, c0 = time.perf_counter(), cpu_seconds()
    c = a
    for _ in range(reps):
        c = tf.matmul(a, b) + c * 0.0  # a chain: each product waits for the previous one
    c.numpy()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    flops = 2 * MATMUL_N**3 * reps  # the scaled add is negligible (n^2)
    return {"flops_per_s": flops / wall, "flops_per_cpu_s": flops / cpu, "wall": wall, "cpu": cpu}


def step_worker(spec: dict) -> dict:
    """Images/s of `spec['steps']` training steps after a warm-up (tracing, first batches)."""
    import numpy as np

    keras, tf = start_tensorflow(spec["threads"], spec["mixed_precision"])
    if spec.get("grappler"):
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
    size, batch, spe = spec["size"], spec["batch"], spec["spe"]
    if spec["nchw"]:
        keras.config.set_image_data_format("channels_first")
    from adtransfer.learning.data import make_dataset, select
    from adtransfer.learning.model import add_head, build_backbone, compile_model

    if spec["nchw"]:  # the project's builder feeds (S, S, 1); channels-first needs the channel axis in front
        inp = keras.Input((1, size, size), name="mosaic")
        x = keras.layers.Concatenate(axis=1)([inp, inp, inp])
        base = keras.applications.InceptionV3(include_top=False, weights=None, input_tensor=x)
        feats = keras.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
        net = add_head(keras.Model(inp, feats, name="backbone"), "classify", 256, 1)
    else:
        net = add_head(build_backbone(size, "random", 0.0, 0.0, 1, 0.9), "classify", 256, 1)
    compile_model(net, "classify", 1e-3, jit_compile=spec["xla"], steps_per_execution=spe)
    flops = forward_flops(net, size) if spec["count_flops"] else None

    steps = -(-spec["steps"] // spe) * spe
    warmup = max(2, spe)
    n_subjects = -(-batch * (steps + warmup) // 3)
    work = Path(tempfile.mkdtemp(prefix="adtransfer-step-"))
    try:
        sys.path.insert(0, str(Path(__file__).parent))
        import pandas as pd
        from train_input import fake_cache

        fake_cache(work / "cache.h5", n_subjects, size, 1)
        ids = [f"s{i:04d}" for i in range(n_subjects)]
        table = pd.DataFrame({"subject_id": ids, "set": "train"})
        samples = select(work / "cache.h5", table, "set", "train", "classify")
        if spec["float32"] or spec["nchw"]:
            from adtransfer.learning.data import load_mosaics

            x32 = load_mosaics(samples, (0.0, 3.0))
            if spec["nchw"]:
                x32 = np.ascontiguousarray(x32.transpose(0, 3, 1, 2))
            x_t, y_t = tf.constant(x32), tf.constant(samples.sample_targets())
            ds = tf.data.Dataset.range(samples.n).batch(batch).map(lambda i: (tf.gather(x_t, i), tf.gather(y_t, i)))
            ds = ds.prefetch(tf.data.AUTOTUNE)
        else:
            ds = make_dataset(samples, (0.0, 3.0), batch, True, 1)
        ds = ds.repeat()
        c0 = cpu_seconds()
        net.fit(ds, epochs=1, steps_per_epoch=warmup, verbose=0)  # tracing (and XLA compilation), first batches
        warm_cpu = cpu_seconds() - c0
        t0, c0 = time.perf_counter(), cpu_seconds()
        net.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    images = steps * batch
    return {
        "images_per_s": images / wall,
        "images_per_cpu_s": images / cpu,
        "forward_flops": flops,
        "steps": steps,
        "warmup_cpu_s": warm_cpu,
        "warmup_steps": warmup,
        "step_cpu_s": cpu / steps,
    }


def run_workers(specs: list[dict], timeout: float = 3600) -> list[dict]:
    """Run worker processes side by side; each returns its RESULT line (or the error that stopped it)."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(s)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        for s in specs
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        lines = [x for x in stdout.splitlines() if x.startswith(RESULT)]
        if p.returncode == 0 and lines:
            out.append(json.loads(lines[-1][len(RESULT) :]))
        else:
            errors = [x for x in stderr.splitlines() if "Error" in x or "error" in x] or stderr.splitlines()[-1:]
            out.append({"error": (errors[-1] if errors else f"exit {p.returncode}")[:200]})
    return out


VARIANTS = {  # name -> (spec changes, processes side by side)
    "base": ({}, 1),
    "xla": ({"xla": True}, 1),
    "spe4": ({"spe": 4}, 1),
    "float32": ({"float32": True}, 1),
    "nchw": ({"nchw": True}, 1),
    "grappler": ({"grappler": True}, 1),
    "t1": ({"threads": 1}, 1),
    "pair": ({"threads": 1}, 2),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 380])
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--steps", type=int, default=12, help="timed steps up to 200 px")
    ap.add_argument("--large-steps", type=int, default=2, help="timed steps above 200 px (380 px: ~1.3 img/s)")
    ap.add_argument("--threads", type=int, default=2, help="threads of a single-process measurement")
    ap.add_argument(
        "--variants",
        nargs="*",
        default=["base", "xla", "spe4", "float32", "nchw", "grappler", "t1", "pair", "adopted"],
        help=f"at the demo size and batch: {', '.join(VARIANTS)}, adopted",
    )
    ap.add_argument("--demo", default="96x32", help="size x batch where the variants are compared")
    ap.add_argument("--adopt", nargs="*", default=[], help="variants the demo adopts on top of pair (e.g. xla)")
    ap.add_argument("--mixed-precision", action="store_true", help="float16 compute (for a GPU)")
    ap.add_argument("--quick", action="store_true", help="96 px, batch 32, variants base xla adopted, 6 steps")
    args = ap.parse_args()

    if args.worker:
        spec = json.loads(args.worker)
        result = matmul_worker(spec) if spec.get("matmul") else step_worker(spec)
        print(RESULT + json.dumps(result), flush=True)
        return
    if args.quick:
        args.sizes, args.batches, args.variants, args.steps = [96], [32], ["base", "xla", "adopted"], 6
    demo_size, demo_batch = (int(v) for v in args.demo.split("x"))
    base_spec = {
        "threads": args.threads,
        "xla": False,
        "spe": 1,
        "float32": False,
        "nchw": False,
        "mixed_precision": args.mixed_precision,
        "count_flops": False,
    }
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")

    peaks = {}
    for threads in sorted({args.threads, 1}):
        peaks[threads] = run_workers([{"matmul": True, "threads": threads, "reps": 30 if threads > 1 else 15}])[0]
        p = peaks[threads]
        print(
            f"matmul peak {MATMUL_N}x{MATMUL_N} float32, {threads} thread(s): {p['flops_per_s'] / 1e9:.1f} GFLOP/s "
            f"per wall s, {p['flops_per_cpu_s'] / 1e9:.1f} GFLOP/s per CPU s"
        )

    flops: dict[int, int] = {}
    rows = []

    def measure(label: str, size: int, batch: int, changes: dict, procs: int) -> dict | None:
        steps = args.steps if size <= LARGE else args.large_steps
        spec = {**base_spec, **changes, "size": size, "batch": batch, "steps": steps, "count_flops": size not in flops}
        results = run_workers([spec] * procs)
        bad = [r for r in results if "error" in r]
        if bad:
            print(f"{label:<16} {size:>4} {batch:>5}  failed: {bad[0]['error']}")
            rows.append((label, size, batch, None))
            return None
        if results[0].get("forward_flops"):
            flops[size] = results[0]["forward_flops"]
        train_flops = 3 * flops[size]
        ips = sum(r["images_per_s"] for r in results)
        ipcs = sum(r["images_per_cpu_s"] for r in results) / procs
        peak = peaks[spec["threads"]]
        # wall: the processes together against the peak of `threads` x procs cores (2 x 1 thread: the 2-thread peak)
        wall_peak = peaks.get(spec["threads"] * procs, peak)["flops_per_s"]
        eff_wall = ips * train_flops / wall_peak
        eff_cpu = ipcs * train_flops / peak["flops_per_cpu_s"]
        rows.append((label, size, batch, ips))
        # start-up cost of a training job: the warm-up's CPU seconds beyond its steps at the measured rate
        compile_cpu = max(r["warmup_cpu_s"] - r["warmup_steps"] * r["step_cpu_s"] for r in results)
        print(
            f"{label:<16} {size:>4} {batch:>5} {ips:>8.2f} {ips * train_flops / 1e9:>9.1f} "
            f"{eff_wall:>9.3f} {eff_cpu:>9.3f} {compile_cpu:>10.0f}",
            flush=True,
        )
        return {"ips": ips, "eff_wall": eff_wall, "eff_cpu": eff_cpu}

    print(
        f"{'setting':<16} {'px':>4} {'batch':>5} {'img/s':>8} {'GFLOP/s':>9} {'eff wall':>9} {'eff CPU':>9} "
        f"{'compile CPU s':>10}"
    )
    base = {}
    for size in args.sizes:
        for batch in args.batches:
            base[(size, batch)] = measure("base", size, batch, {}, 1)
            if size in flops and batch == args.batches[0]:
                print(f"  {size} px: {flops[size] / 1e9:.2f} GFLOP forward per image, x3 per training image")
    if demo_size not in flops:
        base[(demo_size, demo_batch)] = measure("base", demo_size, demo_batch, {}, 1)
    adopted_changes = {}
    for name in args.adopt:
        adopted_changes.update(VARIANTS[name][0])
    adopted = None
    for name in args.variants:
        if name == "base":
            continue
        if name == "adopted":
            adopted = measure("adopted", demo_size, demo_batch, {**adopted_changes, "threads": 1}, 2)
            continue
        changes, procs = VARIANTS[name]
        measure(name, demo_size, demo_batch, changes, procs)
    compared = [v for v in args.variants if v != "base"]
    again = measure("base (again)", demo_size, demo_batch, {}, 1) if compared else None

    ref = base.get((demo_size, demo_batch))
    if ref:
        print(f"\nratios to base ({demo_size} px, batch {demo_batch}, {args.threads} threads, img/s):")
        for label, size, batch, ips in rows:
            if (size, batch) == (demo_size, demo_batch) and label != "base":
                ratio = "failed" if ips is None else f"{ips / ref['ips']:.2f}"
                print(f"  {label:<16} {ratio}")
        if again:
            print(f"  (base drifted by x{again['ips'] / ref['ips']:.2f} over the run: the machine's other load)")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at end")
    if adopted:
        final, setting = (
            adopted,
            f"{demo_size} px, batch {demo_batch}, 2 x 1-thread jobs" + "".join(f" + {a}" for a in args.adopt),
        )
    else:
        final, setting = ref, f"{demo_size} px, batch {demo_batch}, 1 x {args.threads}-thread job"
    if final:
        print(
            f"efficiency: {final['eff_cpu']:.2f} of matmul peak ({setting}; per CPU second, "
            f"{final['eff_wall']:.2f} per wall second)"
        )


if __name__ == "__main__":
    main()
