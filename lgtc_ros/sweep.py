"""The paper's Fig. 4: return over team size N and over consumer count M, for any policies.

A sweep flies each policy on variants of one base mission (`variant`: same resources, gains and
randomization, N agents and M consumers; random supplies are capped per draw so supply never
exceeds demand however large the team) for K seeded episodes each, the same episodes for every
policy. `plot` draws the two panels of Fig. 4 (mean and std of the per-agent return).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lgtc_ros.evaluate import rollout
from lgtc_ros.scenario import Scenario, validate


def variant(base: Scenario, n_agents: int, n_consumers: int) -> Scenario:
    """`base` with N agents and M consumers (its scripted events and fixed initial state dropped)."""
    s = dataclasses.replace(
        base, name=f"{base.name}_n{n_agents}_m{n_consumers}", n_agents=int(n_agents), n_consumers=int(n_consumers),
        random=dataclasses.replace(base.random, cap_supply=True), initial=type(base.initial)(), events=())
    validate(s)
    return s


def sweep(base: Scenario, policies: dict[str, Callable[[Scenario], object]], agents: Sequence[int],
          consumers: Sequence[int], episodes: int = 10, seed: int = 0, fixed_agents: int | None = None,
          fixed_consumers: int | None = None, progress: Callable[[str], None] | None = None,
          on_step: Callable[[int], None] | None = None) -> list[dict]:
    """Rows (axis "agents" or "consumers", policy, N, M, return mean/std, demand %, collisions).
    `policies`: label -> factory(scenario) -> policy. The agents axis holds M at `fixed_consumers`
    (default: the base's), the consumers axis holds N at `fixed_agents` (default: the base's).
    `progress(text)` is told of each case as it starts, `on_step(b)` of every simulation step of
    `b` parallel episodes (see `evaluate.rollout`)."""
    m0 = base.n_consumers if fixed_consumers is None else fixed_consumers
    n0 = base.n_agents if fixed_agents is None else fixed_agents
    cases = [("agents", n, m0) for n in agents] + [("consumers", n0, m) for m in consumers]
    rows = []
    for axis, n, m in cases:
        scenario = variant(base, n, m)
        for label, make in policies.items():
            if progress:
                progress(f"{label} N={n} M={m}")
            stats, _ = rollout(scenario, make(scenario), episodes, seed=seed, on_step=on_step)
            s = stats.summary()
            rows.append({"axis": axis, "policy": label, "agents": n, "consumers": m, "episodes": episodes,
                         "return_mean": s["return_mean"], "return_std": s["return_std"],
                         "demand_satisfied_pct": s["demand_satisfied_pct"], "collisions_mean": s["collisions_mean"]})
    return rows


def plot(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Fig. 4: per-agent return (mean, std band) over N (left) and over M (right), one line per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lgtc_ros.plots import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, axis, key, xlabel in ((axes[0], "agents", "agents", "agents N"),
                                  (axes[1], "consumers", "consumers", "consumers M")):
        sel = [r for r in rows if r["axis"] == axis]
        for label in dict.fromkeys(r["policy"] for r in sel):
            pts = sorted((r[key], r["return_mean"], r["return_std"]) for r in sel if r["policy"] == label)
            if not pts:
                continue
            x, mu, sd = (np.array(v) for v in zip(*pts))
            ax.plot(x, mu, "o-", label=label)
            ax.fill_between(x, mu - sd, mu + sd, alpha=0.2)
        fixed = sel[0]["consumers" if axis == "agents" else "agents"] if sel else None
        ax.set_xlabel(xlabel)
        ax.set_ylabel("per-agent return")
        ax.set_title(f"{'M' if axis == 'agents' else 'N'} = {fixed}" if fixed is not None else axis)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def markdown(rows: list[dict]) -> str:
    lines = ["| axis | policy | N | M | return (mean ± std) | demand satisfied % | collisions / episode |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['axis']} | {r['policy']} | {r['agents']} | {r['consumers']} | "
                     f"{r['return_mean']:.2f} ± {r['return_std']:.2f} | {r['demand_satisfied_pct']:.1f} | "
                     f"{r['collisions_mean']:.2f} |")
    return "\n".join(lines) + "\n"
