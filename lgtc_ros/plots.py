"""Figures people would rather look at than read: trajectories and demand over time.

matplotlib with the Agg backend (no screen needed); every function writes one PNG and returns its path.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lgtc_ros.evaluate import Trace  # noqa: E402
from lgtc_ros.scenario import Scenario  # noqa: E402


def trajectory_png(trace: Trace, scenario: Scenario, path: str | Path, title: str = "") -> Path:
    """Agent paths over the arena (colour = final assigned consumer), consumers with their R_m,
    and the open demand per consumer over time."""
    path = Path(path)
    pos = np.stack(trace.pos)          # [T,N,2]
    demand = np.stack(trace.demand)    # [T,M,r]
    assign = np.stack(trace.assign)    # [T,N]
    active = np.stack(trace.active)    # [T,N]
    t = np.arange(len(pos)) * scenario.dt
    m = scenario.n_consumers
    colours = plt.get_cmap("tab10")(np.arange(max(m, 1)) % 10)

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5.6), gridspec_kw={"width_ratios": [1, 1.1]})
    for c in range(m):
        x, y = trace.consumer_pos[c]
        ax.add_patch(plt.Circle((x, y), scenario.consumer_radius, color=colours[c], alpha=0.15))
        ax.plot(x, y, "s", color=colours[c], ms=10, mec="k")
        ax.annotate(f"c{c}", (x, y), xytext=(6, 6), textcoords="offset points", fontsize=9)
    for i in range(pos.shape[1]):
        c = assign[-1, i]
        colour = colours[c] if c >= 0 else (0.5, 0.5, 0.5, 1.0)
        ax.plot(pos[:, i, 0], pos[:, i, 1], "-", color=colour, lw=1.2, alpha=0.8)
        ax.plot(*pos[0, i], "o", color=colour, mfc="white", ms=5)
        ax.plot(*pos[-1, i], "o" if active[-1, i] else "x", color=colour, ms=6)
        ax.annotate(str(i), pos[-1, i], xytext=(3, -9), textcoords="offset points", fontsize=7)
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal", xlabel="x (arena units)",
           ylabel="y (arena units)", title="trajectories (o start, ● end, x landed)")
    ax.grid(alpha=0.3)

    names = [res.name for res in scenario.resources]
    for c in range(m):
        ax2.plot(t, demand[:, c].sum(-1), color=colours[c], lw=2, label=f"c{c} total")
        for l in range(demand.shape[2]):
            if demand[0, c, l] > 0 or demand[:, c, l].max() > 0:
                ax2.plot(t, demand[:, c, l], color=colours[c], lw=0.8, ls=":" if scenario.persistent_mask[l] else "--")
    ax2.set(xlabel="time (s)", ylabel="open demand", title="open demand per consumer "
            f"(-- instantaneous, : persistent; types {', '.join(names)})")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8, ncol=2)
    fig.suptitle(title or scenario.name)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def compare_curves_png(logs: dict[str, str | Path], path: str | Path, title: str = "") -> Path:
    """Fig. 3 style: per-agent episode return vs environment steps for several training logs."""
    from lgtc_ros.train.runner import read_csv

    path = Path(path)
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, log in logs.items():
        rows = read_csv(log)
        steps = np.array([float(r["env_steps"]) for r in rows])
        ret = np.array([float(r["episode_return"]) if r["episode_return"] not in ("", "nan") else np.nan
                        for r in rows])
        smooth = np.array([np.nanmean(ret[max(0, i - 9):i + 1]) for i in range(len(ret))])
        line, = ax.plot(steps, smooth, lw=2, label=label)
        ax.plot(steps, ret, lw=0.8, alpha=0.3, color=line.get_color())
    ax.set(xlabel="environment steps", ylabel="per-agent episode return (training, stochastic policy)",
           title=title or "learning curves")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
