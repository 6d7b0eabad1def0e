"""The expert through the CBF at N = 50 and 100 (issue 12): plain expert, expert-CBF (decentralized,
the form the drones fly, and centralized), LGTC-IPPO as trained and LGTC-IPPO through the same
decentralized CBF, on paper_10x4 variants with M = 4, the same seeded episodes for every policy.

    OMP_NUM_THREADS=1 .venv/bin/python docs/reproduction/expert_cbf/regenerate.py [--episodes 64]
    OMP_NUM_THREADS=1 .venv/bin/python docs/reproduction/expert_cbf/regenerate.py --report-only

writes results.json (per-episode numbers), README.md and returns.png next to this file;
`--report-only` rebuilds the last two from results.json.
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
MODEL = "models/lgtc_paper_10x4.pt"
AGENTS = (50, 100)
CONSUMERS = 4
SEED = 2001  # reproduce.FIG4_SEED + 1: the episodes of the Fig. 4 ratio table
REFERENCE = "expert-cbf"
POLICIES = ("expert", "expert-cbf", "expert-cbf-centralized", "lgtc", "lgtc-cbf")
LABELS = {"expert": "expert (paper: repulsion only)", "expert-cbf": "expert-CBF (decentralized)",
          "expert-cbf-centralized": "expert-CBF (centralized)", "lgtc": "LGTC-IPPO (no CBF)",
          "lgtc-cbf": "LGTC-IPPO + CBF (decentralized)"}


def make(name: str, scenario):
    from lgtc_ros.expert import CentralizedExpert
    from lgtc_ros.safety.batched import CbfFiltered
    from lgtc_ros.policy.learned import LearnedPolicy

    if name.startswith("expert"):
        return CentralizedExpert.named(name)
    lgtc = LearnedPolicy.load(ROOT / MODEL, scenario)
    return CbfFiltered(lgtc, "decentralized") if name == "lgtc-cbf" else lgtc


def run(episodes: int) -> dict:
    import logging

    import torch

    from lgtc_ros.evaluate import rollout
    from lgtc_ros.scenario import load_scenario, resolve_scenario
    from lgtc_ros.sweep import variant

    torch.set_num_threads(1)
    logging.getLogger("lgtc_ros.safety").setLevel(logging.ERROR)  # its evasion warnings: counted in "cbf"
    base = load_scenario(resolve_scenario("paper_10x4"))
    out = {"episodes": episodes, "seed": SEED, "model": MODEL, "consumers": CONSUMERS, "points": {}}
    for n in AGENTS:
        scenario = variant(base, n, CONSUMERS)
        for name in POLICIES:
            policy = make(name, scenario)
            cpu, wall = time.process_time(), time.perf_counter()
            stats, _ = rollout(scenario, policy, episodes, seed=SEED)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            cbf = getattr(policy, "cbf_stats", None) or (policy.cbf.stats if hasattr(policy, "cbf") else {})
            out["points"][f"{n}/{name}"] = {
                "agents": n, "policy": name, "returns": stats.returns.tolist(),
                "collisions": stats.collisions.tolist(), "min_distance": stats.min_distance.tolist(),
                "demand_satisfied_pct": stats.demand_satisfied_pct.tolist(), "cpu_s": cpu, "wall_s": wall,
                "cbf": cbf}
            print(f"N={n} {name}: return {stats.returns.mean():.3f}, collisions {stats.collisions.mean():.1f}, "
                  f"{cpu:.0f} s CPU, {wall:.0f} s wall", file=sys.stderr, flush=True)
    return out


def mean_ci(x: np.ndarray, resamples: int = 4000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    boot = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(lo), float(hi)


def starts_inside(n: int, episodes: int, seed: int) -> int:
    """How many of the evaluated episodes start with a pair closer than D (as `rollout` draws them)."""
    import torch

    from lgtc_ros.scenario import load_scenario, resolve_scenario
    from lgtc_ros.sweep import variant
    from lgtc_ros.world import World

    s = variant(load_scenario(resolve_scenario("paper_10x4")), n, CONSUMERS)
    count, done, batch = 0, 0, 0
    while done < episodes:  # rollout's batches: 64 envs, seed + 7919 per batch
        b = min(64, episodes - done)
        w = World(s, n_envs=b, seed=seed + batch * 7919)
        d = torch.cdist(w.pos, w.pos) + torch.eye(n) * 9.0
        count += int((d.flatten(1).min(1).values < s.safety_radius).sum())
        done, batch = done + b, batch + 1
    return count


def report(data: dict, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lgtc_ros.reproduce import ratio_ci

    pts = data["points"]
    k = data["episodes"]
    rows = ["| N | policy | return (mean ± std) | 95 % CI of the mean | ratio to expert-CBF (95 % paired CI) "
            "| demand satisfied % | collisions / episode | min pair distance | CPU s | wall s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    ratios = ["| N | ratio | value (95 % paired bootstrap CI) |", "|---|---|---|"]
    for n in AGENTS:
        ref = np.asarray(pts[f"{n}/{REFERENCE}"]["returns"])
        for name in POLICIES:
            p = pts[f"{n}/{name}"]
            r = np.asarray(p["returns"])
            lo, hi = mean_ci(r)
            ratio = "1" if name == REFERENCE else "{:.3f} [{:.3f}, {:.3f}]".format(*ratio_ci(r, ref))
            rows.append(f"| {n} | {LABELS[name]} | {r.mean():.3f} ± {r.std():.3f} | [{lo:.3f}, {hi:.3f}] | {ratio} "
                        f"| {np.mean(p['demand_satisfied_pct']):.1f} | {np.mean(p['collisions']):.1f} "
                        f"| {np.min(p['min_distance']):.3f} | {p['cpu_s']:.0f} | {p['wall_s']:.0f} |")
        for a, b in (("lgtc", "expert-cbf"), ("lgtc", "expert-cbf-centralized"), ("lgtc-cbf", "expert-cbf"),
                     ("lgtc", "expert")):
            v = ratio_ci(np.asarray(pts[f"{n}/{a}"]["returns"]), np.asarray(pts[f"{n}/{b}"]["returns"]))
            ratios.append(f"| {n} | {LABELS[a]} / {LABELS[b]} | {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}] |")

    inside = {n: starts_inside(n, k, data["seed"]) for n in AGENTS}

    def ret(n, name):
        return f"{np.mean(pts[f'{n}/{name}']['returns']):.2f}"

    def col(n, name):
        return f"{np.mean(pts[f'{n}/{name}']['collisions']):.0f}"

    def dem(n, name):
        return f"{np.mean(pts[f'{n}/{name}']['demand_satisfied_pct']):.0f}"

    below = all(ratio_ci(np.asarray(pts[f"{n}/{a}"]["returns"]), np.asarray(pts[f"{n}/{REFERENCE}"]["returns"]))[2] < 1
                for n in AGENTS for a in ("lgtc", "lgtc-cbf"))
    verdict = ("LGTC-IPPO, with or without the CBF, stays below expert-CBF at both N (the whole paired "
               "interval under 1): the expert is again an upper reference." if below else
               "LGTC-IPPO is not below expert-CBF everywhere (see the ratios).")

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(POLICIES)
    for i, name in enumerate(POLICIES):
        means, errs = [], [[], []]
        for n in AGENTS:
            r = np.asarray(pts[f"{n}/{name}"]["returns"])
            lo, hi = mean_ci(r)
            means.append(r.mean())
            errs[0].append(r.mean() - lo)
            errs[1].append(hi - r.mean())
        x = np.arange(len(AGENTS)) + (i - (len(POLICIES) - 1) / 2) * width
        ax.bar(x, means, width, yerr=errs, capsize=3, label=LABELS[name])
    ax.set_xticks(np.arange(len(AGENTS)), [f"N = {n}" for n in AGENTS])
    ax.set_ylabel("per-agent return")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_title(f"paper_10x4 variants, M = {CONSUMERS}: {k} paired episodes, 95 % bootstrap CI of the mean",
                 fontsize=9)
    ax.set_ylim(top=ax.get_ylim()[1] * 1.3)  # room for the legend above the bars
    ax.legend(fontsize=7, loc="upper center", ncol=3)
    fig.tight_layout()
    fig.savefig(HERE / "returns.png", dpi=120)
    plt.close(fig)

    text = f"""# The expert through the CBF at N = 50 and 100

`{command}`

The centralized expert (MIQP assignment + P-control + its own repulsion) collides a lot in large
teams: its repulsion is a heuristic, not a barrier. `CentralizedExpert(safety="decentralized")`
(`expert-cbf`) passes its commands, env by env, through `SwarmFilter` (`lgtc_ros.safety.swarm`),
the filter the runtime and the ROS cbf node apply: one filter per env, exact poses, neighbours
within C. The repulsion stays on under the CBF (it spreads agents bound for one consumer before the
barrier stops them; measured in `lgtc_ros/expert.py`). `expert-cbf-centralized` uses the swarm QP
instead. LGTC-IPPO is `{MODEL}` (trained at N = 10), once as the batched evaluator flies it (no
filter, as in Fig. 4) and once through the same decentralized CBF (`CbfFiltered`).

paper_10x4 variants (`sweep.variant`), M = {CONSUMERS}, {k} episodes per point (seed {data['seed']}),
the same episodes for every policy; the ratios resample episodes keeping each episode's pair
(`reproduce.ratio_ci`). Collisions: pairs closer than the safety radius D = 0.1 (rising edges).
At N = 100 the reset's jittered grid (cell 0.138, jitter ±0.028) puts a pair closer than D in
{inside[100]} of the {k} episodes ({inside[50]} at N = 50); the few collisions counted under a CBF there
are such pairs still inside D after the first step (counting pairs that start inside D as already
in contact, 6 other episodes show no new contact under either form). The CBF counters (OSQP fails,
evasions) are in results.json. CPU and wall time: one torch thread, the whole {k} episodes, on a
2-core machine shared with other CPU-bound jobs (wall ≈ 2 × CPU).

Reading: at N = 100 the paper's expert collapses ({ret(100, "expert")} with {col(100, "expert")} collisions
an episode); through the CBF it holds at {ret(100, "expert-cbf")} (decentralized) and {ret(100, "expert-cbf-centralized")}
(centralized) with none of its own. It delivers less than the colliding expert (agents queue at the
barrier around a consumer instead of overlapping inside it: demand satisfied {dem(100, "expert-cbf")} % vs
{dem(100, "expert")} %). {verdict}

![returns](returns.png)

{chr(10).join(rows)}

{chr(10).join(ratios)}
"""
    (HERE / "README.md").write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--report-only", action="store_true", help="rebuild README.md and returns.png from results.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    results = HERE / "results.json"
    if args.report_only:
        data = json.loads(results.read_text())
    else:
        data = run(args.episodes)
        results.write_text(json.dumps(data, indent=1) + "\n")
    command = ("OMP_NUM_THREADS=1 .venv/bin/python docs/reproduction/expert_cbf/regenerate.py"
               + (f" --episodes {data['episodes']}" if data["episodes"] != 64 else ""))
    report(data, command)


if __name__ == "__main__":
    main()
