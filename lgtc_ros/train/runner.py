"""What every trainer shares: seeding, the run folder (fresh, or resumed with the same settings),
stopping at a checkpoint on Ctrl-C or SIGTERM, the plan said at the start, the CSV log and the
learning-curve figure.

Checkpoint and policy files: `lgtc_ros.policy.checkpoint` (deployment code reads them too)."""
from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch


def add_step_terms(ep_terms: dict[str, torch.Tensor], terms: dict[str, torch.Tensor], done: torch.Tensor,
                   active: torch.Tensor) -> list[dict[str, float]]:
    """Add one step's reward terms [B,N] to the running episode sums; for the envs whose episode
    ended (`done` [B]) return each term's per-agent return (over the agents `active` [B,N] that
    step) and zero their sums."""
    for k, v in terms.items():
        ep_terms[k] += v
    if not done.any():
        return []
    n_active = active.float().sum(-1).clamp_min(1)
    finished = [{k: float(v[e].sum() / n_active[e]) for k, v in ep_terms.items()}
                for e in torch.nonzero(done).flatten().tolist()]
    for v in ep_terms.values():
        v[done] = 0.0
    return finished


def episode_columns(finished: list[dict[str, float]]) -> dict[str, float]:
    """Log columns of the episodes that ended: their count, mean return and mean return per term."""
    nan = float("nan")
    row = {"episodes": len(finished),
           "episode_return": float(np.mean([sum(f.values()) for f in finished])) if finished else nan}
    for k in (finished[0] if finished else {}):
        row[f"ret_{k}"] = float(np.mean([f[k] for f in finished]))
    return row


def seed_everything(seed: int, threads: int | None = None) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


RUN_FILES = ("train_log.csv", "checkpoint.pt", "policy.pt", "critics.pt", "config.json", "learning_curve.png")
"""What a trainer writes into its run folder."""
RUNTIME_SETTINGS = ("total_steps", "out", "threads", "checkpoint_every")
"""Settings a resumed run may change: they do not change what is learned."""


def prepare_run_dir(out: str | Path, force: bool = False, resumable: bool = True) -> None:
    """Before a fresh run into `out`: refuse a folder that holds a run, a log or anything else
    (a rerun would append to the old log: its curve would show updates 1-6 then 1-3 again);
    with `force`, remove the earlier run's files (`RUN_FILES`; others stay). Raises
    FileExistsError (or `outputs.ProtectedOutput` for the shipped models folder)."""
    from lgtc_ros.outputs import STAGING, ProtectedOutput, is_protected

    out = Path(out)
    if is_protected(out):
        raise ProtectedOutput(f"{out}: lgtc never writes into the shipped models folder; choose another --out")
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} is a file: --out names a run folder")
    present = [f for f in RUN_FILES if (out / f).exists()]
    others = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES and not p.name.startswith(".")
                    and STAGING not in p.name)
    if not force:
        if "checkpoint.pt" in present:
            hint = "pass --resume to continue it, --force to start it over" if resumable else "pass --force to start over"
            raise FileExistsError(f"{out} already holds a run (checkpoint.pt): {hint}, or choose another --out")
        if "policy.pt" in present or "critics.pt" in present:
            raise FileExistsError(f"{out} already holds a run (policy.pt): pass --force to start over, "
                                  f"or choose another --out")
        if "train_log.csv" in present:
            raise FileExistsError(f"{out} holds a training log but no checkpoint (the run stopped before its first "
                                  f"checkpoint): nothing to resume; pass --force to start over, or choose another --out")
        if present or others:
            raise FileExistsError(f"{out} is not empty ({', '.join((present + others)[:4])}"
                                  f"{', ...' if len(present + others) > 4 else ''}): pass --force to train into it "
                                  f"anyway, or choose another --out")
        return
    for name in present:
        (out / name).unlink()
    for tmp in out.glob("*.tmp"):
        tmp.unlink()
    if present:
        print(f"lgtc: note: --force: removed the earlier run's {', '.join(present)} from {out}", file=sys.stderr)


def resume_conflicts(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """The settings in `given` (a trainer's arguments as a dict) that contradict the run's stored
    ones, as command-line options: ["--algo ippo (the run: lgtc-ippo)", "--set lr=... (the run: ...)"].
    `RUNTIME_SETTINGS` may change; a scenario counts by the file it resolves to."""
    out = []
    for key, new in given.items():
        if key in RUNTIME_SETTINGS or key not in stored:
            continue
        old = stored[key]
        if isinstance(old, (list, tuple)) or isinstance(new, (list, tuple)):
            same = list(old) == list(new)
        elif key == "scenario":
            same = _scenario_file(old) == _scenario_file(new)
        else:
            same = old == new
        if not same:
            out.append(f"{_option(key, new)} (the run: {_show(old)})")
    return out


def resumed_args(out: Path, given: Any, tuples: tuple[str, ...] = ("hidden",),
                 older_runs: dict[str, Any] | None = None) -> tuple[Any, dict]:
    """The checkpoint of the run in `out` and the arguments that continue it: the run's stored
    settings with `given`'s `RUNTIME_SETTINGS`, in `given`'s dataclass (`tuples`: fields stored
    as lists). `older_runs`: values of settings that runs from before them trained with. Raises
    ValueError (one line) listing the settings of `given` that contradict the run's."""
    from dataclasses import asdict

    from lgtc_ros.policy.checkpoint import load_checkpoint

    ck = load_checkpoint(out / "checkpoint.pt", missing=f"--resume: no checkpoint at {out / 'checkpoint.pt'}: "
                         f"nothing to resume (train without --resume first; --force starts over a run that "
                         f"stopped before its first checkpoint)")
    stored = {**(older_runs or {}), **ck["args"]}
    conflicts = resume_conflicts(stored, asdict(given))
    if conflicts:
        raise ValueError(f"--resume: {out} was trained with other settings: {'; '.join(conflicts)}. Drop them to "
                         f"continue the run as it was, or train a new run into another --out")
    saved = {**stored, **{k: tuple(stored[k]) for k in tuples}}
    return type(given)(**{**saved, **{k: getattr(given, k) for k in RUNTIME_SETTINGS}}), ck


def _scenario_file(name: Any) -> str:
    from lgtc_ros.scenario import resolve_scenario

    try:
        return str(resolve_scenario(name).resolve())
    except Exception:  # noqa: BLE001 - an unresolvable name compares as given
        return str(name)


def _show(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def _option(key: str, value: Any) -> str:
    if key in ("algo", "scenario", "seed"):
        return f"--{key} {_show(value)}"
    return f"--set {key}={_show(value)}"


class CsvLog:
    """Append-only CSV with a fixed header (written once); survives resume."""

    def __init__(self, path: str | Path, fields: list[str]):
        self.path, self.fields = Path(path), fields
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            with self.path.open("w", newline="") as fh:
                csv.writer(fh).writerow(fields)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as fh:
            csv.writer(fh).writerow([_fmt(row.get(k, "")) for k in self.fields])

    def truncate_after(self, update: int, key: str = "update") -> None:
        """On resume: drop rows logged after the checkpoint (they will be produced again), the
        checkpoint's position given as the column `key`. Rewritten under a temporary name and
        renamed: a kill meanwhile keeps the old log."""
        from lgtc_ros.outputs import temp_name

        rows = read_csv(self.path)
        tmp = temp_name(self.path)
        try:
            with tmp.open("w", newline="") as fh:
                out = csv.writer(fh)
                out.writerow(self.fields)
                for row in rows:
                    try:
                        if int(float(row[key])) <= update:
                            out.writerow([row.get(k, "") for k in self.fields])
                    except (TypeError, ValueError):  # a row cut short by a kill
                        continue
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open() as fh:
        return list(csv.DictReader(fh))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def learning_curve_png(csv_path: str | Path, png_path: str | Path, title: str,
                       terms: tuple[str, ...] = ()) -> Path:
    """Return vs environment steps, the reward terms, losses and the contraction rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_csv(csv_path)
    png_path = Path(png_path)
    if not rows:
        return png_path
    col = lambda k: np.array([float(r[k]) if r.get(k, "") not in ("", "nan") else np.nan for r in rows])  # noqa: E731
    steps = col("env_steps")
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0, 0]
    ax.plot(steps, col("episode_return"), lw=1, alpha=0.4, label="per update")
    ax.plot(steps, _smooth(col("episode_return")), lw=2, label="smoothed")
    ax.set(title="per-agent episode return", xlabel="environment steps")
    ax.legend()
    ax = axes[0, 1]
    for k in terms:
        if f"ret_{k}" in rows[0]:
            ax.plot(steps, _smooth(col(f"ret_{k}")), label=k)
    ax.set(title="return per reward term (eq. 2)", xlabel="environment steps")
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    for k in ("pg_loss", "v_loss", "approx_kl"):
        if k in rows[0]:
            ax.plot(steps, col(k), label=k)
    ax.set(title="losses (entropy on the right axis)", xlabel="environment steps")
    ax.legend(fontsize=8, loc="upper left")
    if "entropy" in rows[0]:
        twin = ax.twinx()
        twin.plot(steps, col("entropy"), color="tab:purple", alpha=0.7, label="entropy")  # C0-C2: the losses
        twin.set_ylabel("policy entropy")
        twin.legend(fontsize=8, loc="upper right")
    ax = axes[1, 1]
    for k in ("contraction_min", "contraction_mean", "tau_min", "penalty"):
        if k in rows[0]:
            ax.plot(steps, col(k), label=k)
    ax.set(title="contractivity (eq. 9, 15)", xlabel="environment steps")
    ax.legend(fontsize=8)
    for a in axes.flat:
        a.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    from lgtc_ros.outputs import temp_name

    tmp = temp_name(png_path)  # written whole, then renamed: a killed run keeps the previous curve
    try:
        fig.savefig(tmp, dpi=100, format="png")
        os.replace(tmp, png_path)
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(fig)
    return png_path


def _smooth(x: np.ndarray, k: int = 10) -> np.ndarray:
    out = np.full_like(x, np.nan)
    for i in range(len(x)):
        window = x[max(0, i - k + 1):i + 1]
        window = window[np.isfinite(window)]
        out[i] = window.mean() if window.size else np.nan
    return out


def clone_tree(obj):
    """A deep copy of the tensors in nested dicts and lists (an optimizer's state dict)."""
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, dict):
        return {k: clone_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clone_tree(v) for v in obj]
    return obj


@contextlib.contextmanager
def signals_deferred():
    """SIGINT and SIGTERM wait until the block is done, then are delivered to their handlers (so
    Ctrl-C never falls between an update's log row and its snapshot: a log row means a checkpoint
    of at least that update is saved on interruption). Main thread only (signals go there)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(got):
            signal.raise_signal(s)


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both stop at a checkpoint. A shell starting a background job sets
    SIGINT to 'ignore', which Python inherits: re-arm it so `kill -INT` works there too."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)


def plan(args, done_steps: int = 0, per: int | None = None, unit: str = "updates") -> str:
    """What a run will train, said at its start: `--steps` rounds up to whole updates."""
    per = per or args.num_envs * args.num_steps
    updates = max(math.ceil(args.total_steps / per), 0)
    total = updates * per
    text = (f"{args.algo} on {Path(str(args.scenario)).stem}: {updates} {unit} x {per} env-steps = {total} env-steps"
            f" ({args.threads} torch thread{'s' if args.threads != 1 else ''})")
    if total != args.total_steps:
        text += f"; --steps {args.total_steps} rounded up to whole {unit}"
    if done_steps:
        text = f"resuming at {done_steps} env-steps: " + text + (" (already reached)" if done_steps >= total else "")
    return text
