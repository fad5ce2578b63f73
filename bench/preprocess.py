"""Benchmark: preprocessing + caching throughput for an MNI-space cohort. Prints figures; asserts nothing.

Two routes over the same generated cohort (a user table of synthetic FDG scans on the SPM 2 mm grid):
  library   preprocess_subject for every scan in a pool of --jobs processes, then build_cache
  workflow  `snakemake --cores --jobs` for the cache target: one job (one process) per subject, as users run it
Goal (issue 3): a paper-size cohort (1514 scans) in <= 3 minutes on 2 cores, i.e. <= 0.24 s per scan per core.
Each route also reports its CPU seconds (user + sys of every process it started, Snakemake's own included) per
scan: on a loaded machine a steadier figure than wall time x cores; the workflow route's is also split between
Snakemake's own process and its jobs. Goal for the workflow route (the per-job start-up issue): <= 0.35 CPU s per
scan per core.

Native space (issue 14), reported separately: synthetic FDG and ECD cohorts written in scanner space (random rigid
pose, 2.4x2.4x3.3 mm voxels) and the same subjects in MNI space. Per scan: registration error (mm) over MNI brain
voxels against the true transform (goal: mean < 2, max < 4), correlation of the preprocessed volume with the same
subject preprocessed from MNI space (goal >= 0.95), seconds of processing (goal <= 5) and of the whole command
`python -m adtransfer preprocess ... --space native` including start-up (goal <= 10).

    python bench/preprocess.py                # 200 scans, extrapolated to 1514; then 10 native scans per modality
    python bench/preprocess.py --n 1514       # the full paper size
    python bench/preprocess.py --native-only --native-n 20
    python bench/preprocess.py --native-only --native-n 20 --nonlinear             # with the BSpline step
    python bench/preprocess.py --native-only --native-n 20 --fov no-cerebellum --modalities ecd_spect

--fov no-cerebellum cuts every scan (native and its MNI twin) below MNI z = -20 mm, as a field of view that did
not reach the cerebellum: the scanner wrote zeros there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

from adtransfer.imaging.cache import build_cache
from adtransfer.imaging.grid import Grid
from adtransfer.imaging.preprocess import PreprocParams, preprocess_subject
from adtransfer.inputs.cohort import validate_cohort
from adtransfer.inputs.synth import CohortSpec, generate_cohort

ROOT = Path(__file__).resolve().parents[1]
PAPER_SCANS = 1514
GOAL_S_PER_SCAN_CORE = 180 / PAPER_SCANS * 2
GOAL_WORKFLOW_CPU_S_PER_SCAN = 0.35  # per-subject jobs: interpreter, imports and work of one `adtransfer preprocess`
CROP = Grid((95, 95, 48), 2.0, (-94.0, -112.0, -36.0))


def _one(args):
    scan, out, sid = args
    preprocess_subject(
        scan,
        out / f"{sid}.nii.gz",
        PreprocParams("fdg_pet", CROP),
        sid,
        qc_png=out / f"{sid}.png",
        sidecar=out / f"{sid}.json",
    )


def library_route(table: Path, work: Path, jobs: int, size: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process and its pool's workers)."""
    df = validate_cohort(table, progress=False)
    out = work / "lib_preproc"
    out.mkdir()
    t0, c0 = time.perf_counter(), time.process_time() + _children_cpu()
    with ProcessPoolExecutor(jobs) as pool:
        list(pool.map(_one, [(p, out, s) for p, s in zip(df["path"], df["subject_id"], strict=True)], chunksize=4))
    df.drop(columns="row").to_csv(work / "validated.tsv", sep="\t", index=False)
    build_cache(
        work / "validated.tsv", out, work / "lib.h5", size=size, modality="fdg_pet", cohort="bench", workers=jobs
    )
    return time.perf_counter() - t0, time.process_time() + _children_cpu() - c0


# `python -m snakemake` in a process that, on exit, writes its own CPU seconds and its jobs' (every process it waited
# for) to the file $BENCH_CPU_SPLIT: which side of the per-scan cost is the scheduler's and which the jobs'.
SNAKEMAKE_WITH_CPU_SPLIT = """
import atexit, json, os, resource, runpy, sys
def dump():
    own, jobs = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    with open(os.environ["BENCH_CPU_SPLIT"], "w") as f:
        json.dump({"snakemake": own.ru_utime + own.ru_stime, "jobs": jobs.ru_utime + jobs.ru_stime}, f)
atexit.register(dump)
runpy.run_module("snakemake", run_name="__main__", alter_sys=True)
"""


def workflow_route(table: Path, work: Path, jobs: int, size: int) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds (Snakemake and every job it ran) and that CPU split {snakemake, jobs}."""
    cfg = work / "bench.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"seed": 1, "mosaic": {"size": size}, "cohorts": {"bench": {"modality": "fdg_pet", "table": str(table)}}}
        )
    )
    split = work / "cpu_split.json"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "BENCH_CPU_SPLIT": str(split),
    }
    t0, c0 = time.perf_counter(), _children_cpu()
    subprocess.run(
        [
            sys.executable,
            "-c",
            SNAKEMAKE_WITH_CPU_SPLIT,
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(work),
            "--configfile",
            str(cfg),
            "--cores",
            str(jobs),
            "--quiet",
            "all",
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL if "--verbose" not in sys.argv else None,
    )
    return time.perf_counter() - t0, _children_cpu() - c0, json.loads(split.read_text())


def report(name: str, seconds: float, n: int, jobs: int, cpu: float | None = None) -> None:
    per_core = seconds / n * jobs
    verdict = "meets" if per_core <= GOAL_S_PER_SCAN_CORE else "misses"
    print(
        f"{name:9s} {n} scans in {seconds:7.1f} s: {seconds / n:.3f} s/scan, {n / seconds:5.1f} scans/s, "
        f"{per_core:.3f} s/scan/core -> {PAPER_SCANS} scans in {PAPER_SCANS * seconds / n / 60:.1f} min "
        f"({verdict} the {GOAL_S_PER_SCAN_CORE:.2f} s/scan/core goal)"
    )
    if cpu is not None:
        line = f"{name:9s} CPU {cpu:7.1f} s (user+sys, every process): {cpu / n:.3f} CPU s/scan per core"
        if name == "workflow":
            verdict = "meets" if cpu / n <= GOAL_WORKFLOW_CPU_S_PER_SCAN else "misses"
            line += f" ({verdict} the {GOAL_WORKFLOW_CPU_S_PER_SCAN:.2f} s/scan/core start-up goal)"
        print(line)


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


FOV_CUT_Z_MM = -20.0  # --fov no-cerebellum: nothing acquired below this MNI z


def cut_field_of_view(scans: Path, truth: dict | None) -> None:
    """Zero every scan where its voxels lie below MNI z = FOV_CUT_Z_MM (through the true transform if native)."""
    import nibabel as nib
    import numpy as np

    for path in sorted(scans.glob("*.nii.gz")):
        img = nib.load(path)
        to_mni = np.array(truth[path.name.split(".")[0]]) if truth else np.eye(4)
        ijk = np.indices(img.shape).reshape(3, -1)
        z = (to_mni @ img.affine)[2] @ np.r_[ijk, np.ones((1, ijk.shape[1]))]
        data = np.asarray(img.dataobj, np.float32)
        data[(z <= FOV_CUT_Z_MM).reshape(img.shape)] = 0
        nib.save(nib.Nifti1Image(data, img.affine, img.header), path)


def native_route(
    work: Path, n: int, commands: int, modalities=("fdg_pet", "ecd_spect"), settings=None, fov: str = "full"
) -> None:
    import nibabel as nib
    import numpy as np

    from adtransfer.imaging.registration import RegistrationSettings
    from adtransfer.imaging.templates import MNI_2MM, load_templates

    brain = load_templates().brain_mask
    ijk = np.argwhere(brain)
    points = np.c_[ijk, np.ones(len(ijk))] @ MNI_2MM.affine.T
    settings_json = settings or {}
    settings = RegistrationSettings.from_config(settings_json)
    for modality in modalities:
        n_ad = n // 2
        for space in ("mni", "native"):
            spec = CohortSpec("nat", modality, n_ad=n_ad, n_nc=n - n_ad, seed=2, space=space)
            generate_cohort(spec, work / modality / space, progress=False)
        truth = json.loads((work / modality / "native" / "ground_truth.json").read_text())["affine_scanner_to_mni"]
        if fov == "no-cerebellum":
            cut_field_of_view(work / modality / "mni" / "scans", None)
            cut_field_of_view(work / modality / "native" / "scans", truth)
        means, maxes, fov_means, fov_maxes, corrs, seconds, cpu, dofs = [], [], [], [], [], [], [], []
        for sid, true in truth.items():
            out = {}
            for space in ("mni", "native"):
                t0, c0 = time.perf_counter(), time.process_time()
                out[space] = preprocess_subject(
                    work / modality / space / "scans" / f"{sid}.nii.gz",
                    work / modality / f"{sid}_{space}.nii.gz",
                    PreprocParams(modality, CROP, space=space, registration=settings),
                    sid,
                    sidecar=work / modality / f"{sid}_{space}.json",
                )
                if space == "native":
                    seconds.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
            reg = json.loads((work / modality / f"{sid}_native.json").read_text())["registration"]
            moved = points @ (np.array(reg["affine_scanner_to_mni"]) @ np.linalg.inv(np.array(true))).T
            err = np.linalg.norm(moved[:, :3] - points[:, :3], axis=1)
            means.append(err.mean())
            maxes.append(err.max())
            # the brain voxels the scan saw: where the true transform puts them on its non-zero (acquired) voxels
            native = nib.load(work / modality / "native" / "scans" / f"{sid}.nii.gz")
            vox = np.rint(points @ np.linalg.inv(np.array(true) @ native.affine).T)[:, :3].astype(int)
            inside = np.all((vox >= 0) & (vox < native.shape), axis=1)
            inside[inside] = np.asarray(native.dataobj)[tuple(vox[inside].T)] != 0
            fov_means.append(err[inside].mean())
            fov_maxes.append(err[inside].max())
            dofs.append(reg.get("dof", 12))
            inside = out["mni"] != 0
            corrs.append(np.corrcoef(out["mni"][inside], out["native"][inside])[0, 1])
        wall, wall_cpu = [], []
        for sid in list(truth)[:commands]:
            t0, c0 = time.perf_counter(), _children_cpu()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "adtransfer",
                    "preprocess",
                    "--input",
                    str(work / modality / "native" / "scans" / f"{sid}.nii.gz"),
                    "--output",
                    str(work / modality / f"{sid}_cmd.nii.gz"),
                    "--sidecar",
                    str(work / modality / f"{sid}_cmd.json"),
                    "--subject",
                    sid,
                    "--modality",
                    modality,
                    "--space",
                    "native",
                    "--registration",
                    json.dumps(settings_json),
                ],
                check=True,
                capture_output=True,
            )
            wall.append(time.perf_counter() - t0)
            wall_cpu.append(_children_cpu() - c0)
        print(
            f"native {modality:9s} {fov} FOV, {len(truth)} scans: registration error over the whole brain mean "
            f"{np.mean(means):.2f} mm (worst scan {np.max(means):.2f}), max {np.max(maxes):.2f} mm (median scan "
            f"{np.median(maxes):.2f}); within the scan's field of view mean {np.mean(fov_means):.2f} mm, max "
            f"{np.max(fov_maxes):.2f} mm; dof {'/'.join(str(d) for d in sorted(set(dofs)))}; "
            f"correlation with MNI-space twin min {np.min(corrs):.3f} mean {np.mean(corrs):.3f}; "
            f"processing {np.mean(seconds):.1f} s/scan wall (max {np.max(seconds):.1f}), {np.mean(cpu):.1f} s CPU"
            + (
                f"; whole command {np.mean(wall):.1f} s/scan wall (max {np.max(wall):.1f}), "
                f"{np.mean(wall_cpu):.1f} s CPU"
                if wall
                else ""
            )
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="number of scans")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--size", type=int, default=96, help="mosaic size")
    ap.add_argument("--skip-workflow", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="show the workflow's output")
    ap.add_argument("--native-n", type=int, default=10, help="native-space scans per modality (0: skip)")
    ap.add_argument("--native-commands", type=int, default=3, help="of which also timed as a whole command")
    ap.add_argument("--native-only", action="store_true", help="only the native-space figures")
    ap.add_argument("--modalities", nargs="+", default=["fdg_pet", "ecd_spect"], help="native-space modalities")
    ap.add_argument("--fov", choices=["full", "no-cerebellum"], default="full", help="native scans' field of view")
    ap.add_argument("--registration", default="{}", help="JSON: preprocess.registration settings")
    ap.add_argument("--nonlinear", action="store_true", help="registration with its BSpline step (default mesh)")
    args = ap.parse_args()
    settings = json.loads(args.registration)
    if args.nonlinear:
        settings["nonlinear"] = True
    native = {"modalities": args.modalities, "settings": settings, "fov": args.fov}
    work = Path(tempfile.mkdtemp(prefix="adtransfer-bench-"))
    try:
        if args.native_only:
            native_route(work, args.native_n, args.native_commands, **native)
            return
        n_ad = args.n // 2
        generate_cohort(
            CohortSpec("bench", "fdg_pet", n_ad=n_ad, n_nc=args.n - n_ad, seed=1),
            work / "data",
            workers=args.jobs,
            progress=False,
        )
        table = work / "data" / "participants.tsv"
        print(
            f"cohort: {args.n} synthetic FDG scans (91x109x91 float32 .nii.gz), mosaic {args.size} px, "
            f"{args.jobs} parallel jobs on {os.cpu_count()} cores"
        )
        lib, lib_cpu = library_route(table, work, args.jobs, args.size)
        report("library", lib, args.n, args.jobs, lib_cpu)
        if not args.skip_workflow:
            wf, wf_cpu, split = workflow_route(table, work, args.jobs, args.size)
            report("workflow", wf, args.n, args.jobs, wf_cpu)
            print(
                f"workflow  CPU split: Snakemake itself {split['snakemake'] / args.n:.3f} s/scan, its jobs "
                f"{split['jobs'] / args.n:.3f} s/scan (every job: validation, preprocessing, cache, QC)"
            )
            print(
                f"workflow / library time ratio: {wf / lib:.2f} "
                f"(per-job process start-up and Snakemake scheduling: {(wf - lib) / args.n * args.jobs:.2f} "
                "s per scan per core); CPU ratio "
                f"{wf_cpu / lib_cpu:.2f} ({(wf_cpu - lib_cpu) / args.n:.2f} CPU s per scan)"
            )
        if args.native_n:
            native_route(work, args.native_n, args.native_commands, **native)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
