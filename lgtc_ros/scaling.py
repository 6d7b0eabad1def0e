"""Why the decentralized policy falls behind the centralized expert as N grows (issue 12).

Every policy flies the same seeded episodes of `sweep.variant(base, N, M)` at each N. The gap to
the expert is split by reward term (eq. 2), and each candidate cause gets its own number:

- partial observability: the learned policy flown with a radio that reaches everyone
  (`FULL_RANGE`) beside the radius it was trained with;
- crowding and collisions: the collision term's part of the gap, collisions per episode;
- consensus speed: the time until every consumer with a demand the team can serve has an agent
  releasing there (`time_to_cover_s`);
- the training team size: models trained at another N, flown at the same N (when given).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lgtc_ros.scenario import Scenario, validate
from lgtc_ros.world.rewards import TERMS

FULL_RANGE = 3.0
"""A radio range beyond the arena's diagonal (2 sqrt 2): every agent hears every other one."""


@dataclasses.dataclass(frozen=True)
class Case:
    """One line of the study: a policy, and the change of scenario it flies under (e.g. the radio)."""

    label: str
    make: Callable[[Scenario], object]
    scenario: Callable[[Scenario], Scenario] = lambda s: s


def full_range(s: Scenario) -> Scenario:
    """`s` with a radio that reaches every agent (the learned policy's only change of input)."""
    out = dataclasses.replace(s, comm_radius=FULL_RANGE, name=f"{s.name}_full_radio")
    validate(out)
    return out


def run(base: Scenario, cases: Sequence[Case], agents: Sequence[int], consumers: int, episodes: int,
        seed: int, progress: Callable[[str], None] | None = None) -> list[dict]:
    """One row per (case, N): means over `episodes` episodes (seed `seed`, the same for every case)
    and the per-episode returns (`returns`, for paired comparisons)."""
    from lgtc_ros.evaluate import rollout
    from lgtc_ros.sweep import variant

    rows = []
    for n in agents:
        plain = variant(base, n, consumers)
        for case in cases:
            if progress:
                progress(f"{case.label} N={n}")
            scenario = case.scenario(plain)
            stats, _ = rollout(scenario, case.make(scenario), episodes, seed=seed)
            s = stats.summary()
            rows.append({"policy": case.label, "agents": int(n), "consumers": int(consumers), "episodes": episodes,
                         "seed": seed, "return_mean": s["return_mean"], "return_std": s["return_std"],
                         **{f"return_{t}": s[f"return_{t}"] for t in TERMS},
                         "collisions_mean": s["collisions_mean"], "time_to_cover_s": s["time_to_cover_s"],
                         "covered_fraction": s["covered_fraction"],
                         "demand_satisfied_pct": s["demand_satisfied_pct"],
                         "returns": [float(x) for x in stats.returns]})
    return rows


def _by(rows: list[dict]) -> dict[tuple[str, int], dict]:
    return {(r["policy"], r["agents"]): r for r in rows}


def table(rows: list[dict], references: Sequence[str] = ("expert",)) -> str:
    """Markdown: per N and policy, the return with its ratio to each of `references` (95 % paired
    bootstrap CI), collisions, time to cover every consumer and demand satisfied."""
    from lgtc_ros.reproduce import ratio_ci

    by = _by(rows)

    def ratio(r: dict, reference: str) -> str:
        ref = by.get((reference, r["agents"]))
        if r["policy"] == reference:
            return "1"
        if ref is None:
            return "—"
        if ref["return_mean"] <= 3 * ref["return_std"] / np.sqrt(len(ref["returns"])):
            return f"— ({reference} within 3 SE of 0)"  # a ratio to ~0 means nothing
        q, lo, hi = ratio_ci(np.array(r["returns"]), np.array(ref["returns"]))
        return f"{q:.3f} [{lo:.3f}, {hi:.3f}]"

    lines = ["| N | policy | per-agent return | " + " | ".join(f"ratio to {x} (95 % CI)" for x in references)
             + " | collisions / episode | time to cover all (s) | episodes covered | demand satisfied |",
             "|---" * (7 + len(references)) + "|"]
    for r in rows:
        lines.append(f"| {r['agents']} | {r['policy']} | {r['return_mean']:.3f} ± {r['return_std']:.3f} | "
                     + " | ".join(ratio(r, x) for x in references) + " | "
                     f"{r['collisions_mean']:.1f} | {r['time_to_cover_s']:.2f} | {100 * r['covered_fraction']:.0f} % | "
                     f"{r['demand_satisfied_pct']:.1f} % |")
    return "\n".join(lines)


def gap_table(rows: list[dict], policy: str, reference: str = "expert") -> str:
    """Markdown: `reference` minus `policy` per reward term at each N (positive: the policy earns less)."""
    by = _by(rows)
    ns = sorted({r["agents"] for r in rows if (policy, r["agents"]) in by and (reference, r["agents"]) in by})
    lines = ["| N | total | " + " | ".join(TERMS) + " |", "|---" * (len(TERMS) + 2) + "|"]
    for n in ns:
        a, b = by[(policy, n)], by[(reference, n)]
        gaps = [b[f"return_{t}"] - a[f"return_{t}"] for t in TERMS]
        lines.append(f"| {n} | {b['return_mean'] - a['return_mean']:+.3f} | "
                     + " | ".join(f"{g:+.3f}" for g in gaps) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str | Path, policy: str, reference: str = "expert", title: str = "") -> Path:
    """Left: per-agent return over N for every policy (mean, 95 % CI of the mean). Right: the gap
    `reference` - `policy` split by reward term, one stacked bar per N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lgtc_ros.plots import save_figure

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label in dict.fromkeys(r["policy"] for r in rows):
        rs = sorted((r for r in rows if r["policy"] == label), key=lambda r: r["agents"])
        ns = [r["agents"] for r in rs]
        means = np.array([r["return_mean"] for r in rs])
        half = np.array([1.96 * np.std(r["returns"]) / np.sqrt(max(len(r["returns"]), 1)) for r in rs])
        ax.errorbar(ns, means, yerr=half, marker="o", capsize=3, label=label)
    ax.set(xscale="log", xlabel="agents N", ylabel="per-agent return (mean, 95 % CI)", title="return over N")
    ax.set_xticks(sorted({r["agents"] for r in rows}), labels=[str(n) for n in sorted({r["agents"] for r in rows})])
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.legend(fontsize=8)
    by = _by(rows)
    ns = sorted({r["agents"] for r in rows if (policy, r["agents"]) in by and (reference, r["agents"]) in by})
    x = np.arange(len(ns))
    pos_base, neg_base = np.zeros(len(ns)), np.zeros(len(ns))
    for t in TERMS:
        g = np.array([by[(reference, n)][f"return_{t}"] - by[(policy, n)][f"return_{t}"] for n in ns])
        base = np.where(g >= 0, pos_base, neg_base)
        bx.bar(x, g, bottom=base, label=t)
        pos_base += np.where(g >= 0, g, 0.0)
        neg_base += np.where(g < 0, g, 0.0)
    totals = [by[(reference, n)]["return_mean"] - by[(policy, n)]["return_mean"] for n in ns]
    bx.plot(x, totals, "k_", markersize=22, mew=2, label="total gap")
    bx.set_xticks(x, labels=[str(n) for n in ns])
    bx.axhline(0.0, color="0.3", lw=0.8)
    bx.set(xlabel="agents N", ylabel=f"{reference} - {policy}, per-agent return",
           title=f"where {policy} loses to the {reference}, by reward term")
    bx.legend(fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
