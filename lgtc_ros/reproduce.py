"""`lgtc reproduce fig3|fig4|ablations --budget small|full`: the paper's evaluation, rerun.

Every figure is a list of training runs and evaluations, then a report. Training runs live in
`runs/reproduce/<figure>/<run>` (large, never committed); what the report needs is copied into
the report folder (`docs/reproduction/<figure>` by default, committed): each run's training log
and config, and the per-episode returns of its final policy. The report is drawn from that
folder alone, so a figure regenerates without retraining (`--report-only`: trains nothing,
collects the runs that have finished, redraws).

A rerun skips what is done and resumes what was interrupted: trainers checkpoint, and the PPO
trainers resume to the bit (no learning-rate schedule by default), so a run extended from
512 k to 1.024 M env steps is the run that went to 1.024 M directly. That is how a 2-core
machine gets through the full budget across several sittings (`--steps` stops every run at a
common step count first).

Settings:
- the PPO family (LGTC-IPPO, IPPO, MOMAPPO) trains with the fast recipe (docs/training/README.md:
  minibatch 256, learning rate 8e-4, bf16), the same for all three; the hierarchical peer with
  its own defaults; VDN and QMIX at the paper's update ratio, one gradient step per (vector)
  environment step (`update_every=1`, 8x the shipped runs'), with bf16 hidden layers: ~1.5 h
  per run on one core here, checkpointed with their replay so they resume like the others;
- every final policy is evaluated on the same episodes (`paper_10x4`, seed 1000), so methods
  compare pairwise episode by episode.
"""
from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCENARIO = "paper_10x4"
EVAL_SEED = 1000
RECIPE = ("minibatch_size=256", "learning_rate=8e-4", "bf16=true")
"""The fast recipe (docs/training/README.md): 95 % of the expert in 1/3 of Table I's wall time."""


@dataclass(frozen=True)
class Method:
    label: str
    algo: str
    settings: tuple[str, ...] = ()
    scenario: str = SCENARIO
    key: str = ""
    """The run's file-name stem (default: the algorithm)."""

    @property
    def stem(self) -> str:
        return self.key or self.algo


FIG3 = (
    Method("LGTC-IPPO", "lgtc-ippo", RECIPE),
    Method("IPPO", "ippo", RECIPE),
    Method("MOMAPPO", "momappo", RECIPE),
    Method("HRL", "hrl-grouping"),
    Method("VDN", "vdn", ("update_every=1", "bf16=true")),
    Method("QMIX", "qmix", ("update_every=1", "bf16=true")),
)
OFF_POLICY = ("vdn", "qmix")  # fewer seeds at the full budget (budget.off_policy_seeds)


@dataclass(frozen=True)
class Budget:
    steps: int
    seeds: tuple[int, ...]
    off_policy_seeds: tuple[int, ...]
    eval_episodes: int
    fig4_episodes: int
    fig4_agents: tuple[int, ...]
    fig4_consumers: tuple[int, ...]
    discharge_seeds: int
    discharge_episode_s: float | None = None
    """None: the mission's own length (120 s); the small budget stops a few seconds after the event."""
    settings: tuple[str, ...] = ()
    """Extra trainer settings (the small budget shrinks the rollout so a run takes seconds)."""


BUDGETS = {
    "small": Budget(steps=400, seeds=(1, 2), off_policy_seeds=(1,), eval_episodes=4, fig4_episodes=2,
                    fig4_agents=(5, 10), fig4_consumers=(2, 4), discharge_seeds=2, discharge_episode_s=53.0,
                    settings=("num_envs=4", "num_steps=50", "minibatch_size=50")),
    "full": Budget(steps=1_024_000, seeds=(1, 2, 3, 4), off_policy_seeds=(1, 2), eval_episodes=100,
                   fig4_episodes=30, fig4_agents=(5, 10, 20, 30, 50, 100), fig4_consumers=(2, 4, 6, 8, 10),
                   discharge_seeds=20),
}


@dataclass(frozen=True)
class Run:
    method: Method
    seed: int
    steps: int
    settings: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.method.stem}_s{self.seed}"

    def train_command(self, folder: Path, resume: bool) -> list[str]:
        sets = [*self.method.settings, *self.settings]
        if self.method.algo in OFF_POLICY:  # the SAC peers know no rollout length or minibatch
            sets = [s for s in sets if s.split("=")[0] not in ("num_steps", "minibatch_size")]
        cmd = [sys.executable, "-m", "lgtc_ros.cli", "train", "--algo", self.method.algo, "--scenario",
               self.method.scenario, "--steps", str(self.steps), "--seed", str(self.seed), "--out", str(folder),
               "--threads", "1", "--quiet"]
        if resume:  # the run's settings are stored in its checkpoint: only the step count may change
            return [*cmd[:4], "--steps", str(self.steps), "--out", str(folder), "--threads", "1", "--quiet",
                    "--resume"]
        return cmd + (["--set", *sets] if sets else [])


def trained_steps(folder: Path) -> int:
    """Env-steps in a run's log (0: none)."""
    log = folder / "train_log.csv"
    return trained_steps_of(log) if log.exists() else 0


def trained_steps_of(log_path: Path) -> int:
    with log_path.open() as fh:
        rows = list(csv.DictReader(fh))
    return int(float(rows[-1]["env_steps"])) if rows else 0


def train(run: Run, runs_dir: Path, log: Callable[[str], None] = print) -> Path:
    """Train `run` into `runs_dir/run.name` unless done: a finished run of at least `run.steps` is
    kept, an interrupted or shorter one resumes from its checkpoint."""
    folder = runs_dir / run.name
    if finished(run, runs_dir):
        return folder
    resumable = (folder / "checkpoint.pt").exists()
    cmd = run.train_command(folder, resume=resumable)
    if not resumable and folder.exists():
        cmd.append("--force")  # a run that stopped before its first checkpoint, or an off-policy one
    folder.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with (runs_dir / f"{run.name}.out").open("a") as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if code != 0:
        raise RuntimeError(f"training {run.name} failed (exit {code}): see {runs_dir / (run.name + '.out')}")
    log(f"trained {run.method.label} seed {run.seed} to {trained_steps(folder)} env-steps "
        f"in {(time.monotonic() - t0) / 60:.1f} min")
    return folder


def evaluate_run(folder: Path, scenario_name: str, episodes: int) -> np.ndarray:
    """Per-episode returns of a run's final policy on `episodes` episodes from EVAL_SEED."""
    from lgtc_ros.evaluate import rollout
    from lgtc_ros.policy.learned import LearnedPolicy
    from lgtc_ros.scenario import load_scenario, resolve_scenario

    scenario = load_scenario(resolve_scenario(scenario_name))
    stats, _ = rollout(scenario, LearnedPolicy.load(folder / "policy.pt", scenario), episodes, seed=EVAL_SEED)
    return stats.returns


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def collect(run: Run, folder: Path, report_dir: Path, episodes: int) -> None:
    """Copy the run's log and config into the report folder and store its evaluation there (once
    per trained step count and episode count)."""
    steps = trained_steps(folder)
    _write_atomic(report_dir / "logs" / f"{run.name}_train_log.csv", (folder / "train_log.csv").read_text())
    shutil.copyfile(folder / "config.json", report_dir / "logs" / f"{run.name}_config.json")
    evals = report_dir / "evals" / f"{run.name}.csv"
    if evals.exists():
        meta = _eval_meta(evals)
        if meta == {"env_steps": steps, "episodes": episodes, "seed": EVAL_SEED}:
            return
    returns = evaluate_run(folder, run.method.scenario, episodes)
    lines = [f"# env_steps={steps} episodes={episodes} seed={EVAL_SEED}", "episode,return"]
    lines += [f"{k},{r:.6f}" for k, r in enumerate(returns)]
    _write_atomic(evals, "\n".join(lines) + "\n")


def _eval_meta(path: Path) -> dict:
    first = path.read_text().splitlines()[0].lstrip("# ")
    return {k: int(v) for k, v in (item.split("=") for item in first.split())}


def read_eval(path: Path) -> tuple[dict, np.ndarray]:
    meta = _eval_meta(path)
    with path.open() as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].startswith("#")][1:]
    return meta, np.array([float(r[1]) for r in rows])


# ---------------------------------------------------------------------------------------- Fig. 3

def fig3_runs(budget: Budget, methods: Sequence[Method] = FIG3, seeds: Sequence[int] | None = None,
              steps: int | None = None) -> list[Run]:
    runs = []
    for m in methods:
        for s in (seeds if seeds is not None else budget.off_policy_seeds if m.algo in OFF_POLICY else budget.seeds):
            runs.append(Run(m, s, steps or budget.steps, budget.settings))
    return runs


def finished(run: Run, runs_dir: Path) -> bool:
    folder = runs_dir / run.name
    return (folder / "policy.pt").exists() and trained_steps(folder) >= run.steps


def collected(run: Run, report_dir: Path, episodes: int) -> bool:
    evals = report_dir / "evals" / f"{run.name}.csv"
    if not evals.exists() or not (report_dir / "logs" / f"{run.name}_train_log.csv").exists():
        return False
    meta = _eval_meta(evals)
    return meta["env_steps"] >= run.steps and meta["episodes"] == episodes and meta["seed"] == EVAL_SEED


def run_all(runs: Sequence[tuple[Run, Path]], report_dir: Path, episodes: int, jobs: int = 1,
            log: Callable[[str], None] = print, train_missing: bool = True) -> None:
    """Train each (run, runs folder), up to `jobs` at once (one torch thread each), and collect it.
    Without `train_missing`, only the runs that have finished are collected (the others skipped)."""
    # a run the report folder already holds, evaluated at its step count or beyond, is done even
    # where its training folder is gone (a fresh clone: the folder is in git, the runs are not)
    runs = [(r, d) for r, d in runs if not collected(r, report_dir, episodes)]
    if not train_missing:
        runs = [(r, d) for r, d in runs if finished(r, d)]
    total = len(runs)
    done = 0

    def one(item: tuple[Run, Path]) -> None:
        nonlocal done
        run, runs_dir = item
        folder = train(run, runs_dir, log)
        collect(run, folder, report_dir, episodes)
        done += 1
        log(f"[{done}/{total}] {run.method.label} seed {run.seed}: collected")

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for f in [pool.submit(one, r) for r in runs]:
            f.result()


def smoothed_curve(log_path: Path, grid: np.ndarray, window: int = 10) -> np.ndarray:
    """A run's training return (moving mean over `window` updates) at the env-steps of `grid`."""
    with log_path.open() as fh:
        rows = list(csv.DictReader(fh))
    steps = np.array([float(r["env_steps"]) for r in rows])
    ret = np.array([float(r["episode_return"]) if r["episode_return"] not in ("", "nan") else np.nan for r in rows])
    # the SAC peers log every few hundred steps: smooth over the same span of env-steps, not rows
    smooth = np.array([np.nanmean(ret[max(0, i - window + 1):i + 1]) if np.isfinite(ret[max(0, i - window + 1):i + 1]).any()
                       else np.nan for i in range(len(ret))])
    ok = np.isfinite(smooth)
    out = np.interp(grid, steps[ok], smooth[ok]) if ok.any() else np.full(grid.shape, np.nan)
    out[(grid > steps[-1]) | (grid < steps[0])] = np.nan
    return out


@dataclass
class MethodResult:
    label: str
    seeds: list[int]
    env_steps: list[int]
    finals: list[float]                 # mean eval return per seed
    episodes: np.ndarray                # [seeds, E] per-episode returns

    @property
    def mean(self) -> float:
        return float(np.mean(self.finals))

    @property
    def std(self) -> float:
        return float(np.std(self.finals, ddof=1)) if len(self.finals) > 1 else float("nan")


def results(report_dir: Path, methods: Sequence[Method] = FIG3) -> list[MethodResult]:
    """What the report folder holds, per method (methods without an evaluated run left out)."""
    out = []
    for m in methods:
        files = sorted((report_dir / "evals").glob(f"{m.stem}_s*.csv"),
                       key=lambda p: int(p.stem.rpartition("_s")[2]))
        if not files:
            continue
        metas, rets = zip(*(read_eval(f) for f in files))
        n = min(len(r) for r in rets)
        out.append(MethodResult(m.label, [int(f.stem.rpartition("_s")[2]) for f in files],
                                [mt["env_steps"] for mt in metas], [float(r[:n].mean()) for r in rets],
                                np.stack([r[:n] for r in rets])))
    return out


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of a - b over the same episodes (each averaged over its seeds)."""
    n = min(a.shape[-1], b.shape[-1])
    d = a.reshape(-1, a.shape[-1])[:, :n].mean(0) - b.reshape(-1, b.shape[-1])[:, :n].mean(0)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")


def fig3_table(res: list[MethodResult], reference: str = "LGTC-IPPO") -> str:
    ref = next((r for r in res if r.label == reference), None)
    lines = ["| method | seeds | env steps | final return (mean over seeds) | std across seeds | "
             f"paired vs {reference} (same episodes, ± SE) |", "|---|---|---|---|---|---|"]
    for r in res:
        steps = (f"{min(r.env_steps):,}" if min(r.env_steps) == max(r.env_steps)
                 else f"{min(r.env_steps):,}-{max(r.env_steps):,}")
        if ref is None or r is ref:
            cmp = "—"
        else:
            d, se = paired(r.episodes, ref.episodes)
            cmp = f"{d:+.3f} ± {se:.3f}"
        std = "—" if math.isnan(r.std) else f"{r.std:.3f}"
        lines.append(f"| {r.label} | {len(r.seeds)} ({', '.join(map(str, r.seeds))}) | {steps} | {r.mean:.3f} | "
                     f"{std} | {cmp} |")
    return "\n".join(lines)


def fig3_plot(report_dir: Path, res: list[MethodResult], methods: Sequence[Method], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_label = {m.label: m for m in methods}
    logs = {r.label: [report_dir / "logs" / f"{by_label[r.label].stem}_s{s}_train_log.csv" for s in r.seeds]
            for r in res}
    end = max(trained_steps_of(p) for ps in logs.values() for p in ps)
    grid = np.linspace(0, end, 200)
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in res:
        curves = np.stack([smoothed_curve(p, grid) for p in logs[r.label]])
        with warnings.catch_warnings():  # an all-NaN column: a grid point past a shorter run's end
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0)
        line, = ax.plot(grid, mean, lw=2, label=f"{r.label} ({len(r.seeds)} seeds)")
        ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set(xlabel="environment steps", ylabel="per-agent episode return (training, mean ± std over seeds)",
           title=f"Fig. 3 on {SCENARIO}: learning curves over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fig3_report(report_dir: Path, methods: Sequence[Method] = FIG3, command: str = "") -> str:
    res = results(report_dir, methods)
    if not res:
        raise FileNotFoundError(f"{report_dir}/evals holds no evaluated run: train first (without --report-only)")
    fig3_plot(report_dir, res, methods, report_dir / "fig3.png")
    text = (f"# Fig. 3 with seeds ({SCENARIO})\n\n`{command}`\n\n" if command else f"# Fig. 3 with seeds ({SCENARIO})\n\n")
    text += ("Final return: each run's final policy over the same evaluation episodes "
             f"(seed {EVAL_SEED}, {res[0].episodes.shape[1]} episodes), averaged per seed; "
             "the paired comparison averages each episode over a method's seeds.\n\n")
    text += fig3_table(res) + "\n\n![Fig. 3](fig3.png)\n"
    _write_atomic(report_dir / "README.md", text)
    return text


# ---------------------------------------------------------------------------------------- Fig. 4

def ratio_ci(a: np.ndarray, b: np.ndarray, resamples: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """mean(a) / mean(b) with a 95 % paired bootstrap interval (a and b on the same episodes)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(resamples, len(a)))
    boot = a[idx].mean(1) / b[idx].mean(1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(a.mean() / b.mean()), float(lo), float(hi)


FIG4_POLICIES = {"lgtc": "models/lgtc_paper_10x4.pt", "ippo": "models/ippo_paper_10x4.pt",
                 "hrl": "models/hrl_paper_10x4.pt", "expert": "expert"}
"""The shipped models (trained at N = 10, M = 4) and the centralized expert."""
FIG4_SEED = 2000


def _policy_factory(name: str, root: Path):
    from lgtc_ros.expert import CentralizedExpert
    from lgtc_ros.policy.learned import LearnedPolicy

    if name.startswith("expert"):
        return lambda s: CentralizedExpert.named(name)
    return lambda s: LearnedPolicy.load(root / name, s, allow_consumer_change=True)


def fig4(budget: Budget, report_dir: Path, root: Path, ratio_agents: int = 50, command: str = "",
         log: Callable[[str], None] = print) -> str:
    """The sweep over N and M with `budget.fig4_episodes` episodes a point, and the return of each
    learned policy over the expert's at N = `ratio_agents` (M = 4) with a paired bootstrap interval."""
    from lgtc_ros import sweep
    from lgtc_ros.evaluate import rollout
    from lgtc_ros.scenario import load_scenario, resolve_scenario

    base = load_scenario(resolve_scenario(SCENARIO))
    policies = {label: _policy_factory(name, root) for label, name in FIG4_POLICIES.items()}
    k = budget.fig4_episodes
    rows = sweep.sweep(base, policies, budget.fig4_agents, budget.fig4_consumers, k, FIG4_SEED,
                       progress=lambda text: log(f"fig4: {text}"))
    report_dir.mkdir(parents=True, exist_ok=True)
    with (report_dir / "sweep.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    sweep.plot(rows, report_dir / "fig4.png", f"{base.name}: per-agent return, {k} episodes per point")
    scenario = sweep.variant(base, ratio_agents, base.n_consumers)
    returns = {}
    for label, make in policies.items():
        log(f"fig4: {label} at N={ratio_agents} for the ratio")
        returns[label] = rollout(scenario, make(scenario), k, seed=FIG4_SEED + 1)[0].returns
    lines = [f"| policy | return at N = {ratio_agents}, M = {base.n_consumers} | ratio to the expert "
             "(95 % paired bootstrap CI) |", "|---|---|---|"]
    for label, r in returns.items():
        if label == "expert":
            continue
        ratio, lo, hi = ratio_ci(r, returns["expert"])
        lines.append(f"| {label} | {r.mean():.3f} ± {r.std():.3f} | {ratio:.3f} [{lo:.3f}, {hi:.3f}] |")
    lines.append(f"| expert | {returns['expert'].mean():.3f} ± {returns['expert'].std():.3f} | 1 |")
    text = (f"# Fig. 4 over team size and consumer count ({SCENARIO} variants)\n\n"
            + (f"`{command}`\n\n" if command else "")
            + f"{k} episodes per point (seed {FIG4_SEED}); the same episodes for every policy.\n\n"
            + "![Fig. 4](fig4.png)\n\n" + sweep.markdown(rows) + "\n\n"
            + f"## Learned over expert at N = {ratio_agents}\n\n{k} episodes (seed {FIG4_SEED + 1}), "
            + "the same for every policy; the interval resamples episodes, keeping each episode's pair.\n\n"
            + "\n".join(lines) + "\n")
    _write_atomic(report_dir / "README.md", text)
    return text


# ------------------------------------------------------------------------------------------ scaling

SCALING_SEED = 3000
SCALE_MODEL = "models/lgtc_scale_50x10.pt"
"""LGTC-IPPO continued at N = 50 (models/README.md)."""


def scaling_cases(root: Path) -> list:
    """The shipped LGTC-IPPO (trained at N = 10), the same with a radio reaching everyone, the
    model continued on teams of 50 (`SCALE_MODEL`), the expert, and the expert through the
    drones' decentralized CBF (the reference where the plain expert's avoidance breaks down)."""
    from lgtc_ros import scaling as sc

    lgtc = _policy_factory(FIG4_POLICIES["lgtc"], root)
    return [sc.Case("LGTC-IPPO", lgtc), sc.Case("LGTC-IPPO, full radio", lgtc, sc.full_range),
            sc.Case("LGTC-IPPO continued at N = 50", _policy_factory(SCALE_MODEL, root)),
            sc.Case("expert", _policy_factory("expert", root)),
            sc.Case("expert-cbf", _policy_factory("expert-cbf", root))]


def scaling(budget: Budget, report_dir: Path, root: Path, command: str = "",
            log: Callable[[str], None] = print, report_only: bool = False) -> str:
    """Why LGTC-IPPO falls behind the expert as N grows (`lgtc_ros.scaling`): every case at each N
    of `budget.fig4_agents` (M = 4), `budget.fig4_episodes` episodes, the gap split by reward term.
    `report_only`: redraw from the folder's scaling.json."""
    from lgtc_ros import scaling as sc
    from lgtc_ros.scenario import load_scenario, resolve_scenario

    base = load_scenario(resolve_scenario(SCENARIO))
    if report_only:
        rows = _read_json(report_dir / "scaling.json").get("rows")
        if not rows:
            raise FileNotFoundError(f"{report_dir / 'scaling.json'}: nothing to redraw (run without --report-only)")
        k = rows[0]["episodes"]
    else:
        k = budget.fig4_episodes
        rows = sc.run(base, scaling_cases(root), budget.fig4_agents, base.n_consumers, k, SCALING_SEED,
                      progress=lambda text: log(f"scaling: {text}"))
        report_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(report_dir / "scaling.json", _dumps({"rows": rows}))
    sc.plot(rows, report_dir / "scaling.png", "LGTC-IPPO",
            title=f"{SCENARIO} variants, M = {base.n_consumers}, {k} episodes per point")
    text = (f"# Why LGTC-IPPO falls behind the expert as N grows ({SCENARIO} variants, M = {base.n_consumers})\n\n"
            + (f"`{command}`\n\n" if command else "")
            + f"{k} episodes per point (seed {SCALING_SEED}), the same for every policy; LGTC-IPPO is "
            f"`models/lgtc_paper_10x4.pt` (trained at N = 10), the one continued at N = 50 `{SCALE_MODEL}`. "
            "The ratio's interval is a paired bootstrap over episodes.\n\n![scaling](scaling.png)\n\n" + sc.table(rows, ("expert", "expert-cbf")) + "\n\n"
            "## The gap by reward term (expert - LGTC-IPPO, per-agent return)\n\n"
            + sc.gap_table(rows, "LGTC-IPPO") + "\n")
    _write_atomic(report_dir / "README.md", text)
    return text


# ---------------------------------------------------------------------------------------- ablations

RADII = (0.5, 1.0, 2.0)
ABLATION_SEED = 1
"""One seed per ablation, the first Fig. 3 seed: the C = 1.0, alpha = 1 run is Fig. 3's LGTC-IPPO run."""


def radius_scenario(radius: float, folder: Path) -> str:
    """paper_10x4 with communication radius `radius` (a scenario file beside the runs); the
    bundled name for the bundled radius."""
    import re

    from lgtc_ros.scenario import load_scenario, resolve_scenario

    bundled = resolve_scenario(SCENARIO)
    if math.isclose(load_scenario(bundled).comm_radius, radius):
        return SCENARIO
    text, n = re.subn(r"(?m)^comm_radius:\s*[0-9.]+", f"comm_radius: {radius}", bundled.read_text())
    text, m = re.subn(r"(?m)^name:\s*\S+", f"name: {SCENARIO}_c{radius:g}", text)
    if n != 1 or m != 1:
        raise ValueError(f"{bundled}: expected one 'name:' and one 'comm_radius:' line")
    path = folder / f"{SCENARIO}_c{radius:g}.yaml"
    _write_atomic(path, text)
    return str(path.resolve())


def ablation_runs(budget: Budget, scenario_dir: Path, steps: int | None = None) -> tuple[Run, Run, dict[float, Run]]:
    """(baseline, alpha = 0, {radius: run}); the baseline is also the C = 1.0 run."""
    steps = steps or budget.steps
    base = Run(FIG3[0], ABLATION_SEED, steps, budget.settings)
    alpha0 = Run(Method("LGTC-IPPO alpha=0", "lgtc-ippo", (*RECIPE, "alpha=0.0"), key="lgtc-ippo-alpha0"),
                 ABLATION_SEED, steps, budget.settings)
    radius = {}
    for c in RADII:
        sc = radius_scenario(c, scenario_dir)
        radius[c] = base if sc == SCENARIO else Run(
            Method(f"LGTC-IPPO C={c:g}", "lgtc-ippo", RECIPE, scenario=sc, key=f"lgtc-ippo-c{c:g}"),
            ABLATION_SEED, steps, budget.settings)
    return base, alpha0, radius


def _curve_plot(logs: dict[str, Path], column: str, ylabel: str, path: Path, hline: float | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, log in logs.items():
        with log.open() as fh:
            rows = list(csv.DictReader(fh))
        ax.plot([float(r["env_steps"]) for r in rows], [float(r[column]) for r in rows], lw=1.5, label=label)
    if hline is not None:
        ax.axhline(hline, color="k", lw=0.8, ls="--")
    ax.set(xlabel="environment steps", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ablations(budget: Budget, runs_root: Path, report_dir: Path, root: Path,
              jobs: int = 1, steps: int | None = None, command: str = "", log: Callable[[str], None] = print,
              report_only: bool = False) -> str:
    """alpha = 0, radius C in RADII (trained and evaluated at each C), and the discharge mission
    over `budget.discharge_seeds` seeds."""
    from lgtc_ros import studies
    from lgtc_ros.evaluate import rollout
    from lgtc_ros.policy.learned import LearnedPolicy
    from lgtc_ros.scenario import load_scenario, resolve_scenario

    base, alpha0, radius = ablation_runs(budget, report_dir / "scenarios", steps)
    where = {base.name: runs_root / "fig3"}  # the baseline is Fig. 3's first LGTC-IPPO run
    todo = [(base, runs_root / "fig3"), (alpha0, runs_root / "ablations")]
    todo += [(r, runs_root / "ablations") for r in radius.values() if r is not base]
    run_all(todo, report_dir, budget.eval_episodes, jobs, log, train_missing=not report_only)
    for r, d in todo:
        where[r.name] = d
    # a report of what has finished: each section says what it still lacks
    have = {r.name for r, _ in todo if (report_dir / "evals" / f"{r.name}.csv").exists()}
    logs = {r.name: report_dir / "logs" / f"{r.name}_train_log.csv" for r, _ in todo}
    local = {r.name for r, d in todo if finished(r, d)}  # its policy is here to study

    def lacking(runs: Sequence[Run]) -> str:
        names = [r.name for r in runs if r.name not in have]
        return f"\n_Not trained yet: {', '.join(names)} (`lgtc reproduce ablations` trains them)._\n" if names else ""

    sections = [f"# Ablations ({SCENARIO}, seed {ABLATION_SEED})\n"]
    if command:
        sections.append(f"`{command}`\n")

    # contractivity penalty off
    pair = [(label, run) for label, run in (("alpha = 1 (paper)", base), ("alpha = 0", alpha0)) if run.name in have]
    if pair:
        _curve_plot({label: logs[run.name] for label, run in pair}, "contraction_min",
                    "contraction rate c (min over the batch)", report_dir / "alpha_contraction.png", hline=0.0)
        _curve_plot({label: logs[run.name] for label, run in pair}, "episode_return",
                    "per-agent episode return (training)", report_dir / "alpha_return.png")
    scenario = load_scenario(resolve_scenario(SCENARIO))
    rows = ["| | final return (eval) | min contraction rate over training | max abs state | share of state entries "
            "outside [-1, 1] |", "|---|---|---|---|---|"]
    state_path = report_dir / "alpha_states.json"
    states = _read_json(state_path)
    for label, run in pair:
        meta, rets = read_eval(report_dir / "evals" / f"{run.name}.csv")
        key = f"{run.name}@{meta['env_steps']}"
        if key not in states and run.name in local:
            states[key] = studies.state_range(where[run.name] / run.name / "policy.pt", scenario, 10, EVAL_SEED)
            _write_atomic(state_path, _dumps(states))
        st = states.get(key, {})
        with logs[run.name].open() as fh:
            c_min = min(float(r["contraction_min"]) for r in csv.DictReader(fh))
        rows.append(f"| {label} | {rets.mean():.3f} ± {rets.std():.3f} | {c_min:.3f} | "
                    f"{st.get('max_abs_x', float('nan')):.3f} | {100 * st.get('frac_abs_gt_1', float('nan')):.2f} % |")
    sections.append("## Contractivity penalty off (alpha = 0)\n\nThe state is read over 10 evaluation episodes "
                    f"(seed {EVAL_SEED}).\n\n" + "\n".join(rows) + "\n" + lacking([base, alpha0])
                    + ("\n![contraction](alpha_contraction.png) ![return](alpha_return.png)\n" if pair else ""))

    # communication radius: every trained model at every radius
    matrix_path = report_dir / "radius.csv"
    cells = {(r["trained"], r["evaluated"]): r for r in _read_csv(matrix_path)}
    for c_train, run in radius.items():
        if run.name not in have or run.name not in local:
            continue
        meta, _ = read_eval(report_dir / "evals" / f"{run.name}.csv")
        for c_eval in RADII:
            key = (f"{c_train:g}", f"{c_eval:g}")
            if key in cells and int(cells[key]["env_steps"]) == meta["env_steps"] \
                    and int(cells[key]["episodes"]) == budget.eval_episodes:
                continue
            sc = load_scenario(resolve_scenario(radius_scenario(c_eval, report_dir / "scenarios")))
            rets = rollout(sc, LearnedPolicy.load(where[run.name] / run.name / "policy.pt", sc),
                           budget.eval_episodes, seed=EVAL_SEED)[0].returns
            cells[key] = {"trained": key[0], "evaluated": key[1], "env_steps": meta["env_steps"],
                          "episodes": budget.eval_episodes, "return_mean": f"{rets.mean():.4f}",
                          "return_std": f"{rets.std():.4f}"}
            _write_csv(matrix_path, list(cells.values()))
    head = "| trained at C \\ flown at C | " + " | ".join(f"{c:g}" for c in RADII) + " |"
    rows = [head, "|---" * (len(RADII) + 1) + "|"]
    for c_train in RADII:
        vals = [cells.get((f"{c_train:g}", f"{c:g}")) for c in RADII]
        rows.append(f"| {c_train:g} | " + " | ".join("—" if v is None else f"{float(v['return_mean']):.3f}"
                                                     for v in vals) + " |")
    sections.append("## Communication radius C\n\nPer-agent return, "
                    f"{budget.eval_episodes} episodes (seed {EVAL_SEED}); the diagonal is trained and flown at "
                    "the same C.\n\n" + "\n".join(rows) + "\n" + lacking(list(radius.values())))

    # the discharge mission over seeds
    disc_path = report_dir / "discharge.json"
    disc = [{**r, "reallocation_s": math.nan if r["reallocation_s"] is None else r["reallocation_s"]}
            for r in _read_json(disc_path).get("rows", [])]
    if len({r["seed"] for r in disc}) != budget.discharge_seeds:  # no training: cheap enough for --report-only
        sc = load_scenario(resolve_scenario("discharge_5x3"))
        disc = studies.discharge_distribution(
            sc, {"LGTC-IPPO": str(root / "models/lgtc_discharge_5x3.pt"), "expert": "expert"},
            list(range(budget.discharge_seeds)), episode_s=budget.discharge_episode_s,
            progress=lambda done, total, row: log(f"discharge: {done}/{total}"))
        _write_atomic(disc_path, _dumps({"rows": disc}))
    if disc:
        studies.discharge_plot(disc, report_dir / "discharge.png")
        sections.append("## The discharge mission over seeds\n\n" + studies.discharge_markdown(disc)
                        + "\n\n![discharge](discharge.png)\n")
    text = "\n".join(sections)
    _write_atomic(report_dir / "README.md", text)
    return text


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text()) if path.exists() else {}


def _dumps(data) -> str:
    import json

    from lgtc_ros.cli import to_json  # NaN (never re-served) as null, as every JSON lgtc writes

    return json.dumps(json.loads(to_json(data)), indent=2, sort_keys=True) + "\n"


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _write_csv(path: Path, rows: list[dict]) -> None:
    import io

    if not rows:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    _write_atomic(path, buf.getvalue())
