"""Hierarchical clusters against flat LGTC-IPPO and the expert at N = 50 and 100 (issue 12 point 2).

Both networks are trained the same way from Fig. 3's seed-1 LGTC-IPPO (512 k env-steps at N = 10):
30 updates on paper_50x4, then 30 on scale_50x10 (models/README.md, `lgtc_scale_50x10.pt`). The
flat runs are that model and its first stage; the cluster runs add `--set clusters=true
zero_s=true` to both stages (docs/DECISIONS.md, "Hierarchical clusters"):

    lgtc train --algo lgtc-ippo --scenario paper_50x4 --steps 96000 --seed 1 --out runs/clusters/c50x4_s1 \\
        --set num_envs=16 minibatch_size=160 learning_rate=3e-4 bf16=true clusters=true zero_s=true \\
        init_from=runs/reproduce/fig3/lgtc-ippo_s1/policy.pt     # the 512 k policy
    lgtc train --algo lgtc-ippo --scenario scale_50x10 --steps 96000 --seed 2 --out runs/clusters/c50x10_s1 \\
        --set num_envs=16 minibatch_size=160 learning_rate=3e-4 bf16=true clusters=true zero_s=true \\
        init_from=runs/clusters/c50x4_s1/policy.pt

Then, one torch thread:

    OMP_NUM_THREADS=1 .venv/bin/python docs/reproduction/clusters/regenerate.py [--episodes 30]
    OMP_NUM_THREADS=1 .venv/bin/python docs/reproduction/clusters/regenerate.py --report-only

writes results.json (per-episode returns, collisions and messages per drone), README.md and
returns.png next to this file; `--report-only` rebuilds the last two from results.json. The
training logs and configs are in logs/.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
POLICIES = {  # label -> file (trainer outputs live in runs/, never committed)
    "flat, stage 1 (paper_50x4)": "runs/scale/ft50x4_s1_u30.pt",
    "flat, stage 2 (scale_50x10) = lgtc_scale_50x10.pt": "models/lgtc_scale_50x10.pt",
    "clusters, stage 1 (paper_50x4)": "runs/clusters/c50x4_s1/policy.pt",
    "clusters, stage 2 (scale_50x10)": "runs/clusters/c50x10_s1/policy.pt",
}
EXPERTS = ("expert", "expert-cbf")
CASES = (  # name, scenario (bundled name or (N, M) variant of paper_10x4), seed, reference
    ("N = 50, M = 4", (50, 4), 2001, "expert"),
    ("scale_50x10", "scale_50x10", 5150, "expert"),
    ("N = 100, M = 4", (100, 4), 2001, "expert-cbf"),
)


def scenario_of(spec):
    from lgtc_ros.scenario import load_scenario, resolve_scenario
    from lgtc_ros.sweep import variant

    if isinstance(spec, str):
        return load_scenario(resolve_scenario(spec))
    return variant(load_scenario(resolve_scenario("paper_10x4")), *spec)


class Counting:
    """Counts, per active drone and tick, the messages its policy needs: the flat cell hears every
    neighbour within C; the cluster variant 1 + M cluster summaries and the positions of the
    drones within the crowding radius (the only neighbours it reads with S = 0)."""

    def __init__(self, policy, clusters: bool, crowd_radius: float):
        self.policy, self.clusters, self.crowd_radius = policy, clusters, crowd_radius
        self.counts: list[np.ndarray] = []

    def reset(self):
        self.policy.reset()

    def __call__(self, world):
        import torch

        obs = world.observe()
        if self.clusters:
            d = torch.cdist(obs.pos, obs.pos)
            close = (obs.neighbours & (d < self.crowd_radius)).sum(-1)
            count = close + 1 + obs.demand.shape[1]
        else:
            count = obs.neighbours.sum(-1)
        self.counts.append(count[obs.active].numpy())
        return self.policy(world)


def run(episodes: int) -> dict:
    import logging

    import torch

    from lgtc_ros.evaluate import rollout
    from lgtc_ros.expert import CentralizedExpert
    from lgtc_ros.policy.learned import ClusteredPolicy, LearnedPolicy

    torch.set_num_threads(1)
    logging.getLogger("lgtc_ros.safety").setLevel(logging.ERROR)
    out = {"episodes": episodes, "policies": POLICIES, "points": {}}
    for case, spec, seed, reference in CASES:
        scenario = scenario_of(spec)
        for label in (*EXPERTS, *POLICIES):
            if label in EXPERTS:
                policy, counter = CentralizedExpert.named(label), None
            else:
                learned = LearnedPolicy.load(ROOT / POLICIES[label], scenario, allow_consumer_change=True)
                clusters = isinstance(learned, ClusteredPolicy)
                radius = learned.model.cfg.crowd_radius if clusters else 0.0
                policy = counter = Counting(learned, clusters, radius)
            wall = time.perf_counter()
            stats, _ = rollout(scenario, policy, episodes, seed=seed)
            msgs = np.concatenate(counter.counts) if counter is not None else None
            out["points"][f"{case}/{label}"] = {
                "case": case, "policy": label, "seed": seed, "reference": reference,
                "returns": stats.returns.tolist(), "collisions": stats.collisions.tolist(),
                "demand_satisfied_pct": stats.demand_satisfied_pct.tolist(),
                "messages_mean": None if msgs is None else float(msgs.mean()),
                "messages_max": None if msgs is None else int(msgs.max()),
                "wall_s": time.perf_counter() - wall}
            print(f"{case} {label}: return {stats.returns.mean():.3f}, collisions {stats.collisions.mean():.1f}"
                  + ("" if msgs is None else f", messages {msgs.mean():.1f} (max {msgs.max()})"),
                  file=sys.stderr, flush=True)
    return out


def report(data: dict, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lgtc_ros.plots import save_figure
    from lgtc_ros.reproduce import ratio_ci

    pts, k = data["points"], data["episodes"]
    rows = ["| mission | policy | return | ratio to the reference (95 % paired CI) | paired vs flat, same stage "
            "| collisions / episode | demand satisfied % | messages per drone per tick: mean (max) |",
            "|---|---|---|---|---|---|---|---|"]
    ratios: dict[str, list[tuple[float, float, float]]] = {}
    for case, _, seed, reference in CASES:
        ref = np.asarray(pts[f"{case}/{reference}"]["returns"])
        for label in (*EXPERTS, *POLICIES):
            p = pts[f"{case}/{label}"]
            r = np.asarray(p["returns"])
            ratio = ratio_ci(r, ref)
            ratios.setdefault(label, []).append(ratio)
            vs_flat = ""
            if label.startswith("clusters"):
                flat = np.asarray(pts[f"{case}/{_flat_twin(label)}"]["returns"])
                diff = r - flat
                half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
                vs_flat = f"{diff.mean():+.3f} ± {half:.3f}"
            msgs = "—" if p["messages_mean"] is None else f"{p['messages_mean']:.1f} ({p['messages_max']})"
            rows.append(f"| {case} (seed {seed}) | {label} | {r.mean():.3f} | "
                        + ("1 (reference)" if label == reference else "{:.3f} [{:.3f}, {:.3f}]".format(*ratio))
                        + f" | {vs_flat} | {np.mean(p['collisions']):.1f} | {np.mean(p['demand_satisfied_pct']):.1f} "
                          f"| {msgs} |")

    fig, ax = plt.subplots(figsize=(8.5, 4))
    labels = list(POLICIES)
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        vals = ratios[label]
        x = np.arange(len(CASES)) + (i - (len(labels) - 1) / 2) * width
        ax.bar(x, [v[0] for v in vals], width, yerr=[[v[0] - v[1] for v in vals], [v[2] - v[0] for v in vals]],
               capsize=3, label=label, color=f"C{i}", hatch="//" if label.startswith("clusters") else None)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(0.9, color="k", lw=0.6, ls=":")
    ax.set_xticks(np.arange(len(CASES)), [f"{c}\n(vs {ref})" for c, _, _, ref in CASES])
    ax.set_ylabel("return / reference's return (95 % paired CI)")
    ax.set_title(f"Hierarchical clusters vs flat LGTC-IPPO, {k} paired episodes per mission", fontsize=9)
    ax.set_ylim(0, max(v[2] for vals in ratios.values() for v in vals) * 1.25)
    ax.legend(fontsize=7, loc="upper center", ncol=2)
    save_figure(fig, HERE / "returns.png")

    text = f"""# Hierarchical clusters (issue 12 point 2)

`{command}`

The design and its contraction argument are in docs/DECISIONS.md ("Hierarchical clusters"). Every
policy flies the same {k} seeded episodes per mission without a safety filter (as in Fig. 4),
batched, one torch thread; ratios resample episodes keeping each pair (`reproduce.ratio_ci`),
"paired vs flat" is the mean per-episode difference to the flat model of the same stage with a
95 % normal interval. Messages: what the policy reads per drone and tick (flat: every neighbour
within C = 1; clusters: 1 + M cluster summaries plus the neighbours inside the crowding radius
0.3). The CBF's pose messages are the same for both and not counted.

{chr(10).join(rows)}

![ratios](returns.png)
"""
    (HERE / "README.md").write_text(text)


def _flat_twin(label: str) -> str:
    """The flat policy of the same training stage as cluster policy `label`."""
    stage = label.split(",")[1].split("(")[0].strip()
    return next(f for f in POLICIES if f.startswith("flat") and stage in f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    results = HERE / "results.json"
    if not args.report_only:
        results.write_text(json.dumps(run(args.episodes), indent=1))
    data = json.loads(results.read_text())
    report(data, "OMP_NUM_THREADS=1 .venv/bin/python docs/reproduction/clusters/regenerate.py"
           + (f" --episodes {data['episodes']}" if data["episodes"] != 30 else ""))
    print(f"wrote {HERE / 'README.md'}")


if __name__ == "__main__":
    main()
