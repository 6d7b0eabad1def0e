"""Replay and analysis of a recorded mission (a rosbag2 written by `lgtc sim --record`).

`report(bag)` writes the Fig. 5/6 style figure (trajectories, demand over time, each drone's
selected consumer over time, the normalized projection of the cluster states) and a markdown
summary: the instants allocations (re-)form, and after each event the time to the new
allocation and the demand left uncovered. `open_loop(bag, model)` feeds the recorded
observations and neighbour messages to a policy and reports where its decisions diverge from
the recording (a regression check for a new model or a code change).

Definitions (units: seconds, normalized arena units):
- allocation at tick k: the consumer each flying drone selects (argmax of its attention);
  an allocation *forms* when it then stays unchanged for `hold_s`.
- cluster projection (Fig. 6): <x_i, 1>/sqrt(F), normalized by its largest magnitude.
- after an event at t_e: *orphaned* consumers are those whose open demand rises at t_e;
  time to new allocation = until every orphaned consumer is served again (its open demand
  drops below its value just after the event); decision time = until some flying drone
  selects it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lgtc_ros import comm
from lgtc_ros.bags import Recording, read_bag
from lgtc_ros.comm import DemandBroadcast, NeighbourMessage, SupplyStatus
from lgtc_ros.frames import ArenaFrame


def cluster_projection(x: np.ndarray) -> np.ndarray:
    """[T,N,F] states -> [T,N] projection on the unit vector, scaled into [-1, 1]."""
    proj = x.sum(-1) / math.sqrt(max(x.shape[-1], 1))
    peak = np.nanmax(np.abs(proj)) if np.isfinite(proj).any() else 1.0
    return proj / (peak if peak > 0 else 1.0)


def allocations(rec: Recording) -> np.ndarray:
    """[T,N] selected consumer per flying drone, -1 for landed ones."""
    return np.where(rec.active, rec.choice, -1)


def formations(alloc: np.ndarray, t: np.ndarray, hold_s: float) -> list[tuple[float, tuple[int, ...]]]:
    """(time, allocation) for every allocation that then holds for `hold_s` seconds."""
    out: list[tuple[float, tuple[int, ...]]] = []
    start = 0
    for k in range(1, len(alloc) + 1):
        if k == len(alloc) or not np.array_equal(alloc[k], alloc[start]):
            lasted = (t[k - 1] - t[start]) + (t[1] - t[0] if len(t) > 1 else 0.0)
            if lasted >= hold_s and (not out or out[-1][1] != tuple(alloc[start])):
                out.append((float(t[start]), tuple(int(v) for v in alloc[start])))
            start = k
    return out


@dataclass
class EventOutcome:
    time_s: float
    kind: str
    orphaned: list[int]
    decision_s: float | None     # until a flying drone selects every orphaned consumer (NaN: never;
                                 # None: a centralized controller, no per-drone choices recorded)
    reallocation_s: float        # until every orphaned consumer is served again (NaN: never)
    uncovered_before: float      # open demand just before the event
    uncovered_end: float         # open demand at the end of the mission


def event_outcomes(rec: Recording) -> list[EventOutcome]:
    events = rec.meta.get("events", [])
    total = np.nansum(rec.demand, -1)  # [T,M]
    alloc = allocations(rec)
    out = []
    for e in events:
        k = int(np.searchsorted(rec.t, e["time_s"]))
        if k <= 0 or k + 1 >= len(rec.t):
            continue
        # the demand broadcast at tick k predates the event's effect, visible from tick k + 1
        before, after = total[k - 1], total[k + 1]
        orphaned = [int(m) for m in np.flatnonzero(after > before + 1e-6)]
        decision = reallocation = math.nan
        per_drone = bool((alloc[: k + 1] >= 0).any())  # a centralized controller records no choices
        for kk in range(k + 1, len(rec.t)):
            if per_drone and math.isnan(decision) and orphaned and all((alloc[kk] == m).any() for m in orphaned):
                decision = rec.t[kk] - e["time_s"]
            if math.isnan(reallocation) and orphaned and all(total[kk, m] < after[m] - 1e-6 for m in orphaned):
                reallocation = rec.t[kk] - e["time_s"]
        out.append(EventOutcome(float(e["time_s"]), e.get("kind", "?"), orphaned,
                                float(decision) if per_drone else None, float(reallocation),
                                float(before.sum()), float(total[-1].sum())))
    return out


def summarize(rec: Recording, hold_s: float = 2.0) -> dict:
    total = np.nansum(rec.demand, (-1, -2))
    forms = formations(allocations(rec), rec.t, hold_s)
    return {
        "duration_s": float(rec.t[-1] + (rec.t[1] - rec.t[0] if len(rec.t) > 1 else 0.0)),
        "drones": len(rec.names), "consumers": int(rec.demand.shape[1]),
        "open_demand_start": float(total[0]), "open_demand_end": float(total[-1]),
        "open_demand_min": float(np.nanmin(total)),
        "allocations_formed": [{"time_s": t, "allocation": list(a)} for t, a in forms],
        "events": [vars(e) for e in event_outcomes(rec)],
        "landed": [rec.names[i] for i in np.flatnonzero(~rec.active[-1])],
        "mission": rec.meta,
    }


def per_drone_choices(summary_or_alloc) -> bool:
    """Whether drones chose consumers themselves (a learned policy); a centralized controller
    (the expert, random) records no choice: every allocation is all -1."""
    if isinstance(summary_or_alloc, dict):
        return any(v >= 0 for f in summary_or_alloc["allocations_formed"] for v in f["allocation"])
    return bool((np.asarray(summary_or_alloc) >= 0).any())


def label_offsets(points: np.ndarray, near: float = 0.12, step_pt: float = 9.0) -> list[tuple[float, float]]:
    """Text offsets (points) for labels at `points` [K,2]: a label whose point lies within `near`
    of earlier labelled ones moves one line further down, so labels of drones that end together
    do not print over each other."""
    offsets, placed = [], []
    for p in points:
        k = sum(1 for q in placed if np.all(np.isfinite(p)) and np.linalg.norm(p - q) < near)
        offsets.append((5.0, -11.0 - step_pt * k))
        placed.append(p)
    return offsets


def figure(rec: Recording, summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alloc = allocations(rec)
    per_drone = per_drone_choices(alloc)
    m = rec.demand.shape[1]
    colours = plt.get_cmap("tab10")(np.arange(max(m, 1)) % 10)
    grey = (0.5, 0.5, 0.5, 1.0)
    fig, ax = plt.subplots(2, 2, figsize=(13, 9.5))
    a = ax[0, 0]
    radius = rec.meta.get("consumer_radius", 0.15)
    for c in range(m):
        a.add_patch(plt.Circle(tuple(rec.consumer_pos[0, c]), radius, color=colours[c], alpha=0.15))
        a.plot(*rec.consumer_pos[0, c], "s", color=colours[c], mec="k", ms=10)
        x, y = rec.consumer_pos[0, c]  # label outside the service circle, up-left: off the drones' end points
        a.annotate(f"c{c}", (x - 0.7 * radius, y + 0.7 * radius), ha="right", va="bottom", fontweight="bold")
    for (i, name), offset in zip(enumerate(rec.names), label_offsets(rec.pos[-1])):
        last = alloc[-1, i] if alloc[-1, i] >= 0 else (alloc[:, i][alloc[:, i] >= 0][-1:] if (alloc[:, i] >= 0).any() else [-1])[0]
        col = colours[last] if last >= 0 else grey
        a.plot(rec.pos[:, i, 0], rec.pos[:, i, 1], color=col, lw=1.2)
        a.plot(*rec.pos[-1, i], "o" if rec.active[-1, i] else "x", color=col, ms=7)
        a.annotate(name, rec.pos[-1, i], xytext=offset, textcoords="offset points", fontsize=8,
                   bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})
    a.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal",
          title="trajectories (" + ("colour: last selected consumer" if per_drone else "grey: centralized control")
          + "; x = landed)", xlabel="x (arena units)", ylabel="y (arena units)")
    a = ax[0, 1]
    for c in range(m):
        a.plot(rec.t, np.nansum(rec.demand[:, c], -1), color=colours[c], lw=2, label=f"c{c}")
    a.set(title="open demand per consumer", xlabel="time (s)", ylabel="open demand")
    a.legend()
    a = ax[1, 0]
    drone_colours = plt.get_cmap("tab10")(np.arange(len(rec.names)) % 10)
    for i, name in enumerate(rec.names):
        a.step(rec.t, np.where(alloc[:, i] >= 0, alloc[:, i] + 0.06 * (i - len(rec.names) / 2), np.nan),
               where="post", lw=1.5, color=drone_colours[i])
    a.set(title="selected consumer per drone", xlabel="time (s)", ylabel="consumer", yticks=range(m),
          ylim=(-0.5, m - 0.5))
    a = ax[1, 1]
    proj = cluster_projection(rec.x)
    for i, name in enumerate(rec.names):
        a.plot(rec.t, proj[:, i], lw=1.2, color=drone_colours[i])
    a.set(title="cluster states: normalized projection <x_i, 1>/sqrt(F) (Fig. 6)", xlabel="time (s)")
    if not per_drone:
        for axis, what in ((ax[1, 0], "no drone selects a consumer"), (ax[1, 1], "no drone carries a cluster state")):
            axis.text(0.5, 0.5, f"none recorded: the controller ({rec.meta.get('policy', '?')}) is centralized,\n{what}",
                      transform=axis.transAxes, ha="center", va="center", color="0.35")
    for axis in ax.flat[1:]:
        if len(rec.t) > 1:
            axis.set_xlim(rec.t[0], rec.t[-1])
        for e in summary["events"]:
            axis.axvline(e["time_s"], color="r", ls="--", lw=1)
        for f in summary["allocations_formed"] if per_drone else []:
            axis.axvline(f["time_s"], color="k", ls=":", lw=0.8)
        axis.grid(alpha=0.3)
    # one legend for the two per-drone panels, below them (not over the lines)
    handles = [plt.Line2D([], [], color=drone_colours[i], lw=1.5) for i in range(len(rec.names))]
    fig.legend(handles, rec.names, loc="lower center", ncol=min(len(rec.names), 10), fontsize=8,
               title="drone (bottom panels)", title_fontsize=8, frameon=False)
    fig.suptitle(f"{rec.meta.get('scenario', 'mission')} replay (red dashed: events"
                 + (", dotted: allocations formed)" if per_drone else ")"))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def markdown(summary: dict, divergence: dict | None = None) -> str:
    mission = summary["mission"]
    lines = [f"# Mission replay: {mission.get('scenario', '?')}", "",
             f"- policy: `{mission.get('policy', '?')}`, seed {mission.get('seed', '?')}, CBF {mission.get('cbf', '?')}",
             f"- {summary['drones']} drones, {summary['consumers']} consumers, {summary['duration_s']:.1f} s",
             f"- open demand: {summary['open_demand_start']:.3f} at start, {summary['open_demand_end']:.3f} at the end "
             f"(minimum {summary['open_demand_min']:.3f})",
             f"- landed: {', '.join(summary['landed']) or 'none'}", "", "## Allocations formed", ""]
    if per_drone_choices(summary) or not summary["allocations_formed"]:
        lines += ["| time (s) | selected consumer per drone (-1 = landed) |", "|---|---|"]
        lines += [f"| {f['time_s']:.2f} | {f['allocation']} |" for f in summary["allocations_formed"]]
    else:
        lines += [f"None recorded: the controller (`{mission.get('policy', '?')}`) is centralized; no drone "
                  f"selects a consumer itself."]
    if summary["events"]:
        lines += ["", "## Events", "", "| time (s) | kind | orphaned consumers | decision (s) | new allocation (s) "
                  "| open demand before | open demand at end |", "|---|---|---|---|---|---|---|"]
        for e in summary["events"]:
            fmt = lambda v: "n/a" if v is None else ("never" if math.isnan(v) else f"{v:.1f}")  # noqa: E731
            lines.append(f"| {e['time_s']:.1f} | {e['kind']} | {e['orphaned']} | {fmt(e['decision_s'])} | "
                         f"{fmt(e['reallocation_s'])} | {e['uncovered_before']:.3f} | {e['uncovered_end']:.3f} |")
    if divergence is not None:
        lines += ["", "## Open-loop replay through a policy", "",
                  f"- model: `{divergence['model']}`",
                  f"- decisions compared: {divergence['decisions']}, different consumer chosen: "
                  f"{divergence['choice_mismatch']} ({100 * divergence['choice_mismatch_fraction']:.2f} %)",
                  f"- first divergence: {divergence['first_divergence_s']}",
                  f"- largest nominal velocity difference: {divergence['max_velocity_diff']:.2e} units/s"]
    return "\n".join(lines)


def open_loop(rec: Recording, model_path: str | Path, scenario=None, any_consumers: bool = False) -> dict:
    """Re-run the recorded observations and messages through `model_path`, report divergence.

    Each drone decides exactly as on board (`runtime.onboard.OnboardController`): its recorded
    pose, demand broadcast and supplies of tick k, and the messages its neighbours (within C at
    tick k, by the one neighbour rule `comm.neighbours_within`) broadcast at tick k - 1."""
    from lgtc_ros.runtime.drone import DroneAgent, load_drone_modules
    from lgtc_ros.runtime.onboard import OnboardController, Skip

    if rec.supply.shape[-1] == 0:
        raise ValueError("this recording has no supplies in its agent states: it cannot be replayed open-loop")
    if scenario is None:
        from lgtc_ros.scenario import load_scenario, resolve_scenario

        scenario = load_scenario(resolve_scenario(rec.meta["scenario"]))
    (module,), _ = load_drone_modules(model_path, scenario, 1, any_consumers=any_consumers)
    radius = float(rec.meta.get("comm_radius", scenario.comm_radius))
    frame = ArenaFrame(rec.arena_size_m / 2, flight_height_m=rec.altitude_m)
    t_count, n = rec.choice.shape
    m, r = rec.demand.shape[1:]
    drones = [OnboardController(DroneAgent(i, module, module.state_dim, module.feature_dim), frame, m, r,
                                max_message_age_s=math.inf) for i in range(n)]
    mismatch, compared, max_dv, first = 0, 0, 0.0, math.nan
    for k in range(t_count):
        now = float(rec.t[k])
        demands = DemandBroadcast(now, rec.consumer_pos[k], rec.demand[k], rec.kinds)
        near = (comm.neighbours_within(np.nan_to_num(rec.pos[k], nan=np.inf), radius, rec.active[k] & rec.active[k - 1])
                if k > 0 else np.zeros((n, n), dtype=bool))
        for i in np.flatnonzero(rec.active[k]):
            drone = drones[i]
            drone.on_pose(frame.to_metres(rec.pos[k, i]))
            drone.set_demands(demands)
            drone.set_supply(SupplyStatus(int(i), now, rec.supply[k, i], True))
            for j in np.flatnonzero(near[i]):
                if np.isfinite(rec.psi[k - 1, j]).all():
                    drone.receive(NeighbourMessage(int(j), float(rec.t[k - 1]), rec.pos[k - 1, j], rec.psi[k - 1, j],
                                                   rec.x[k - 1, j]))
            out = drone.tick(now)
            if isinstance(out, Skip):  # an unusable recorded sample (e.g. a lost pose): nothing to compare
                continue
            compared += 1
            dv = float(np.abs(frame.velocity_to_arena(out.v_nominal_m_s) - rec.v_nominal[k, i]).max())
            max_dv = max(max_dv, dv)
            if out.decision.choice != rec.choice[k, i]:
                mismatch += 1
                if math.isnan(first):
                    first = now
    return {"model": str(model_path), "decisions": compared, "choice_mismatch": mismatch,
            "choice_mismatch_fraction": mismatch / max(compared, 1),
            "first_divergence_s": "none" if math.isnan(first) else f"{first:.2f} s",
            "max_velocity_diff": max_dv}


def report(bag: str | Path, out: str | Path | None = None, model: str | Path | None = None,
           any_consumers: bool = False, hold_s: float = 2.0) -> dict:
    """Read `bag`, write report.png, report.md and report.json into `out` (default: beside the bag)."""
    rec = read_bag(bag)
    out = Path(out) if out is not None else Path(bag).parent / f"{Path(bag).name}_report"
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(rec, hold_s)
    divergence = open_loop(rec, model, any_consumers=any_consumers) if model is not None else None
    figure(rec, summary, out / "report.png")
    (out / "report.md").write_text(markdown(summary, divergence) + "\n")
    payload = {**summary, "open_loop": divergence, "files": [str(out / "report.png"), str(out / "report.md")]}
    (out / "report.json").write_text(json.dumps(payload, indent=2, default=_json) + "\n")
    return payload


def _json(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return None if not np.isfinite(v) else float(v)
    return str(v)
