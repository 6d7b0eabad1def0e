"""`models/lgtc_scale_100x4.pt` against the issue 12 targets, on episodes no training or model choice saw.

    OMP_NUM_THREADS=1 .venv/bin/python docs/reproduction/scale100/evaluate.py

The model was chosen (final update 40 over the update-20 snapshot) on seeds 2001 / 5150; these
seeds (4001 / 7150, and the paper's 100 evaluation episodes at N = 10, seed 1000) were looked at
only after. Every policy flies the same episodes without a safety filter (the batched evaluator,
one torch thread); ratios resample the episodes keeping each pair (`reproduce.ratio_ci`). Writes
results.json (per-episode returns and collisions) next to this file and prints the table.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
MODELS = ("models/lgtc_scale_100x4.pt", "models/lgtc_scale_50x10.pt")
CASES = (  # name, scenario (bundled name or (N, M) variant of paper_10x4), seed, episodes, reference
    ("N = 100, M = 4", (100, 4), 4001, 30, "expert-cbf"),
    ("N = 50, M = 4", (50, 4), 4001, 30, "expert"),
    ("scale_50x10", "scale_50x10", 7150, 30, "expert"),
    ("paper_10x4", "paper_10x4", 1000, 100, "expert"),
)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from lgtc_ros.evaluate import rollout
    from lgtc_ros.expert import CentralizedExpert
    from lgtc_ros.policy.learned import LearnedPolicy
    from lgtc_ros.reproduce import ratio_ci
    from lgtc_ros.scenario import load_scenario, resolve_scenario
    from lgtc_ros.sweep import variant

    torch.set_num_threads(1)
    logging.getLogger("lgtc_ros.safety").setLevel(logging.ERROR)
    base = load_scenario(resolve_scenario("paper_10x4"))
    out, rows = {}, ["| mission | episodes (seed) | reference | its return | " + " | ".join(
        f"`{Path(m).name}`: return, ratio (95 % CI), collisions" for m in MODELS) + " |",
                     "|---|---|---|---|" + "---|" * len(MODELS)]
    for name, spec, seed, episodes, reference in CASES:
        scenario = load_scenario(resolve_scenario(spec)) if isinstance(spec, str) else variant(base, *spec)
        ref = rollout(scenario, CentralizedExpert.named(reference), episodes, seed=seed)[0]
        out[name] = {"seed": seed, "episodes": episodes, "reference": reference,
                     reference: {"returns": ref.returns.tolist(), "collisions": ref.collisions.tolist()}}
        cells = []
        for model in MODELS:
            st = rollout(scenario, LearnedPolicy.load(ROOT / model, scenario, allow_consumer_change=True), episodes,
                         seed=seed)[0]
            out[name][model] = {"returns": st.returns.tolist(), "collisions": st.collisions.tolist()}
            cells.append("{:.2f}, **{:.3f} [{:.3f}, {:.3f}]**, {:.0f}".format(
                st.returns.mean(), *ratio_ci(st.returns, ref.returns), np.mean(st.collisions)))
        rows.append(f"| {name} | {episodes} ({seed}) | {reference} | {ref.returns.mean():.2f} | " + " | ".join(cells)
                    + " |")
        print(rows[-1], file=sys.stderr, flush=True)
    (HERE / "results.json").write_text(json.dumps(out, indent=1))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
