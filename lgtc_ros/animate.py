"""Missions you can watch: an animation of drones, consumers, clusters, links and the safety radius.

One drawing for both sources: a simulated episode (`lgtc sim --animate`, from the evaluator's
`Trace`) and a recorded mission (`lgtc replay BAG --animate`, from a `bags.Recording`). Each is
first turned into `Frames` (arena units, one row per tick), then `write` renders them with
matplotlib's animation writers: ffmpeg for .mp4 (Debian's `ffmpeg` package), Pillow for .gif.

What is drawn each frame:
- consumers as squares whose area follows their open demand, with their coverage radius R_m;
- drones coloured by the consumer they are with (their cluster; grey: none), a cross once landed;
- communication links between drones within the radius C (the one neighbour rule,
  `comm.neighbours_within`);
- around each flying drone a circle of half the safety radius: two circles overlap exactly when a
  pair is closer than the safety radius.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import animation  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from lgtc_ros import comm  # noqa: E402

FORMATS = (".mp4", ".gif")


@dataclass(frozen=True)
class Frames:
    """A mission as arrays over T ticks, arena units ([-1, 1] on both axes)."""

    t: np.ndarray             # [T] s
    pos: np.ndarray           # [T,N,2] (NaN: no pose)
    active: np.ndarray        # [T,N] bool: flying
    cluster: np.ndarray       # [T,N] int: consumer index, -1 for none
    consumer_pos: np.ndarray  # [T,M,2]
    demand: np.ndarray        # [T,M] open demand, all resource types
    comm_radius: float
    consumer_radius: float
    safety_radius: float
    cluster_label: str        # what the colour means for this source


def from_trace(trace, scenario) -> Frames:
    """Episode 0 of `evaluate.rollout(..., trace=True)`."""
    pos = np.stack(trace.pos).astype(np.float64)
    t = np.arange(len(pos)) * scenario.dt
    consumers = np.broadcast_to(np.asarray(trace.consumer_pos, dtype=np.float64), (len(pos), scenario.n_consumers, 2))
    return Frames(t, pos, np.stack(trace.active).astype(bool), np.stack(trace.assign).astype(int), consumers,
                  np.stack(trace.demand).sum(-1).astype(np.float64), scenario.comm_radius, scenario.consumer_radius,
                  scenario.safety_radius, "colour: assigned consumer (eq. 3)")


def from_recording(rec, scenario=None) -> Frames:
    """A `bags.read_bag` mission; radii from its metadata, else from `scenario`."""
    def radius(name: str) -> float:
        if name in rec.meta:
            return float(rec.meta[name])
        if scenario is None:
            raise ValueError(f"the recording's metadata has no {name}: give the scenario")
        return float(getattr(scenario, name))

    consumer_r = radius("consumer_radius")
    # a centralized controller records no choice (-1): its drones take the colour of the consumer they are at
    cluster = np.where(rec.choice >= 0, rec.choice, at_consumer(rec.pos, rec.consumer_pos, consumer_r))
    # mission time (negative before the start of a live recording), as the replay report uses it
    return Frames(np.asarray(rec.t, dtype=np.float64), rec.pos.astype(np.float64), rec.active.astype(bool),
                  cluster.astype(int), rec.consumer_pos.astype(np.float64), np.nan_to_num(rec.demand.sum(-1)).astype(np.float64),
                  radius("comm_radius"), consumer_r, radius("safety_radius"),
                  "colour: the consumer each drone chose (else the one it is at)")


def at_consumer(pos: np.ndarray, consumer_pos: np.ndarray, radius: float) -> np.ndarray:
    """[T,N] the nearest consumer within `radius` of each drone, -1 for none (or no pose)."""
    d = np.sqrt(((pos[:, :, None, :] - consumer_pos[:, None, :, :]) ** 2).sum(-1))  # [T,N,M]
    d = np.where(np.isfinite(d), d, np.inf)
    nearest = d.argmin(-1) if d.shape[-1] else np.zeros(d.shape[:2], dtype=int)
    inside = np.take_along_axis(d, nearest[..., None], -1)[..., 0] <= radius if d.shape[-1] else False
    return np.where(inside, nearest, -1)


def check_path(path: str | Path) -> Path:
    """The output must be .mp4 (needs ffmpeg) or .gif; said before anything is simulated."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"--animate {path}: must end in .mp4 or .gif")
    if path.suffix.lower() == ".mp4" and not animation.writers.is_available("ffmpeg"):
        raise ValueError(f"--animate {path}: .mp4 needs ffmpeg (Debian: apt install ffmpeg); or write a .gif")
    return path


def ticks_to_draw(frames: Frames, fps: float, speed: float) -> np.ndarray:
    """Tick indices of the video's frames: `speed` x real time at `fps` frames per second."""
    if len(frames.t) == 0:
        raise ValueError("nothing to animate: the mission has no ticks")
    if fps <= 0 or speed <= 0:
        raise ValueError(f"fps = {fps}, speed = {speed}: both must be > 0")
    times = np.arange(frames.t[0], frames.t[-1] + 1e-9, speed / fps)
    return np.unique(np.searchsorted(frames.t, times).clip(0, len(frames.t) - 1))


def write(frames: Frames, path: str | Path, title: str = "", fps: float = 10.0, speed: float = 4.0,
          dpi: int = 80, progress=None) -> Path:
    """Render `frames` into `path` (.mp4 or .gif); `progress(done, total)` after each frame."""
    path = check_path(path)
    ticks = ticks_to_draw(frames, fps, speed)
    n, m = frames.pos.shape[1], frames.consumer_pos.shape[1]
    colours = plt.get_cmap("tab10")(np.arange(max(m, 1)) % 10)
    grey = np.array([0.55, 0.55, 0.55, 1.0])
    full = max(float(np.nanmax(frames.demand)) if frames.demand.size else 0.0, 1e-9)

    fig, ax = plt.subplots(figsize=(6.4, 6.4))
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal", xlabel="x (arena units)",
           ylabel="y (arena units)")
    ax.grid(alpha=0.25)
    links = LineCollection([], colors=[(0.3, 0.3, 0.3, 0.35)], linewidths=0.7, zorder=1)
    ax.add_collection(links)
    reach = [ax.add_patch(plt.Circle((0, 0), frames.consumer_radius, color=colours[c], alpha=0.12, zorder=0))
             for c in range(m)]
    consumers = ax.scatter(np.zeros(m), np.zeros(m), s=np.zeros(m), marker="s", c=colours[:m], edgecolors="k",
                           zorder=2)
    halos = [ax.add_patch(plt.Circle((0, 0), frames.safety_radius / 2, fill=False, lw=0.6, zorder=2))
             for _ in range(n)]
    drones = ax.scatter(np.zeros(n), np.zeros(n), s=36, zorder=3, edgecolors="k", linewidths=0.5)
    landed = ax.scatter([], [], marker="x", s=40, c="k", zorder=3)
    clock = ax.text(0.02, 0.97, "", transform=ax.transAxes, va="top", fontsize=9,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    ax.set_title(title, fontsize=10)
    ax.text(0.0, -0.12, f"squares: consumers, area ~ open demand; {frames.cluster_label}; lines: links within "
            f"C = {frames.comm_radius:g}; circles: half the safety radius (overlap = too close)",
            transform=ax.transAxes, fontsize=7, va="top", wrap=True)
    fig.tight_layout()

    def draw(k: int):
        pos, active, cluster = frames.pos[k], frames.active[k], frames.cluster[k]
        seen = np.isfinite(pos).all(1)
        flying = active & seen
        for c in range(m):
            reach[c].center = tuple(frames.consumer_pos[k, c])
        consumers.set_offsets(frames.consumer_pos[k])
        consumers.set_sizes(30 + 370 * np.clip(frames.demand[k] / full, 0, 1))
        colour = np.where(((cluster >= 0) & (cluster < m))[:, None], colours[np.clip(cluster, 0, max(m - 1, 0))], grey)
        drones.set_offsets(np.where(flying[:, None], pos, np.nan))
        drones.set_facecolors(colour)
        landed.set_offsets(pos[~active & seen] if (~active & seen).any() else np.empty((0, 2)))
        near = comm.neighbours_within(np.where(seen[:, None], pos, np.inf), frames.comm_radius, flying)
        i, j = np.nonzero(np.triu(near, 1))
        links.set_segments(np.stack([pos[i], pos[j]], 1) if len(i) else [])
        too_close = 0
        if flying.sum() >= 2:
            p = pos[flying]
            d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
            too_close = int((d[np.triu_indices(len(p), 1)] < frames.safety_radius).sum())
        for h, halo in enumerate(halos):
            halo.set_visible(bool(flying[h]))
            if flying[h]:
                halo.center = tuple(pos[h])
                halo.set_edgecolor(colour[h])
        clock.set_text(f"t = {frames.t[k]:5.1f} s   open demand {frames.demand[k].sum():.2f}   "
                       f"flying {int(flying.sum())}/{n}" + (f"   TOO CLOSE: {too_close}" if too_close else ""))
        return []

    if path.suffix.lower() == ".mp4":
        writer = animation.FFMpegWriter(fps=fps, codec="libx264", extra_args=["-pix_fmt", "yuv420p"])
    else:
        writer = animation.PillowWriter(fps=fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with writer.saving(fig, str(path), dpi):
            for done, k in enumerate(ticks, 1):
                draw(int(k))
                writer.grab_frame()
                if progress is not None:
                    progress(done, len(ticks))
    finally:
        plt.close(fig)
    return path

