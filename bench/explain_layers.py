"""Which explanation localizes: Grad-CAM per layer and region occlusion of one trained classifier, scored against
a synthetic cohort's ground truth.

Runs the same code as the workflow's `gradcam` and `occlusion` rules (adtransfer.results.explain.run_gradcam with every
layer scored, adtransfer.results.occlusion.run_occlusion) on one model and prints one markdown table: map size, mass in
the generator's altered regions over chance (1 = chance), altered regions among the ten ranked first (chance
about 1.5 of 10 on the demo's generator), and the seconds each took. Time figures on a shared machine are noisy;
the scores are not. Example, after `snakemake --cores 2 results/predictions/fdg/n160.tsv`:

    python bench/explain_layers.py --model fdg/n160 --cohort fdg --set n160 \
        --layers mixed2,mixed5,mixed7 --out /tmp/explain_layers
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="catalog name of the model, e.g. fdg/n160")
    parser.add_argument("--model-file", help="its model.keras (default: where adtransfer.layout puts it)")
    parser.add_argument("--metrics", help="its training metrics.json (default: beside the workflow's model)")
    parser.add_argument("--predictions", help="its prediction table (default: the workflow's)")
    parser.add_argument("--cohort", default="fdg", help="cohort name under results/ (cache, splits, preproc)")
    parser.add_argument("--set", required=True, help="the split column the model was trained on")
    parser.add_argument("--results", default="results")
    parser.add_argument("--layers", default="mixed2,mixed5,mixed7")
    parser.add_argument("--out", required=True, help="scratch folder for maps and figures")
    parser.add_argument("--no-occlusion", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from adtransfer import layout
    from adtransfer.learning.predict import TrainedModel
    from adtransfer.results.explain import run_gradcam
    from adtransfer.results.occlusion import run_occlusion

    root, out, model_name = args.results, Path(args.out), args.model
    trained = TrainedModel(
        args.model_file or layout.model_file(model_name, "model.keras", root),
        args.metrics or layout.model_file(model_name, "metrics.json", root),
        layout.cache(args.cohort, root),
        layout.splits(args.cohort, root),
        args.set,
    )
    predictions = args.predictions or layout.predictions(model_name, root)
    truth = layout.synth_file(args.cohort, "truth_json", root)
    layers = [x for x in args.layers.split(",") if x]
    rows = []
    start = time.perf_counter()
    g = run_gradcam(
        trained,
        predictions,
        layers[-1],
        out / "gradcam_summary.json",
        out / "gradcam_regions.tsv",
        {cls: out / f"gradcam_{cls}.nii.gz" for cls in ("AD", "NC")},
        out / "examples.png",
        out / "means.png",
        truth,
        threads=args.threads,
        score_layers=layers,
    )
    seconds = time.perf_counter() - start
    for i, (layer, entry) in enumerate(g["layers"].items()):
        size = f"{entry['map_size'][0]}x{entry['map_size'][1]}"
        rows.append((f"Grad-CAM {layer}", size, entry["ground_truth"], f"{seconds:.0f} (all layers)" if i == 0 else ""))
    if not args.no_occlusion:
        start = time.perf_counter()
        o = run_occlusion(
            trained,
            layout.preproc_dir(args.cohort, root),
            out / "occlusion_summary.json",
            out / "occlusion_regions.tsv",
            out / "occlusion_AD.nii.gz",
            out / "occlusion.png",
            truth,
            threads=args.threads,
        )
        rows.append(
            ("region occlusion", f"{o['regions']['measured']} regions", o["ground_truth"], time.perf_counter() - start)
        )
    print(f"{model_name}: {g['mosaic_size']} px mosaics, test subjects {json.dumps(g['n_test'])}\n")
    print("| explanation | map | mass in altered regions / chance | altered in top 10 | seconds |")
    print("|---|---|---|---|---|")
    for name, size, gt, sec in rows:
        print(f"| {name} | {size} | {gt['ratio']:.2f} | {gt['top_regions']['hits']} | {sec} |")


if __name__ == "__main__":
    main()
