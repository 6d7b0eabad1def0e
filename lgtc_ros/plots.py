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


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Lay `fig` out, write it to `path` (folders made) and close it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


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

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13.5, 5.6), gridspec_kw={"width_ratios": [1, 1.1]})
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

    # totals: solid, in the consumer's colour; each resource type: its own line style (legend in grey)
    styles = ["--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (7, 2))]
    for c in range(m):
        ax2.plot(t, demand[:, c].sum(-1), color=colours[c], lw=2)
        for l in range(demand.shape[2] if demand.shape[2] > 1 else 0):  # one type: it is the total
            if demand[:, c, l].max() > 0:
                ax2.plot(t, demand[:, c, l], color=colours[c], lw=0.9, ls=styles[l % len(styles)])
    ax2.set(xlabel="time (s)", ylabel="open demand", title="open demand per consumer (solid: total)")
    ax2.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colours[c], lw=2, label=f"c{c} total") for c in range(m)]
    handles += [plt.Line2D([], [], color="0.3", lw=0.9, ls=styles[l % len(styles)],
                           label=f"{res.name} ({'persistent' if res.kind == 'persistent' else 'instant.'})")
                for l, res in enumerate(scenario.resources) if demand[:, :, l].max() > 0 and demand.shape[2] > 1]
    ax2.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
               title="consumer / resource type", title_fontsize=8)
    fig.suptitle(title or scenario.name)
    return save_figure(fig, path, dpi=110)


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
    return save_figure(fig, path, dpi=110)
