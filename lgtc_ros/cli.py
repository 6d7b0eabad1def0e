"""`lgtc`: the command line. Thin: parse arguments, call library functions, print.

    lgtc sim    --scenario FILE --policy expert|random|MODEL --episodes K --seed S [--out DIR] [--json]
                [--runtime] [--record BAG] [--cbf decentralized|centralized|off] [--latency T] [--drop P]
    lgtc demo   the default mission through the per-drone runtime: 10 drones, shipped policy, CBF,
                a rosbag2 and its replay report -> runs/demo-*/
    lgtc replay BAG [--policy MODEL] [--out DIR] [--json]
    lgtc compare LABEL=RUN/train_log.csv ... --out FIG.png   (learning curves side by side)
    lgtc bench  simulator and assignment benchmarks, appended to docs/BENCHMARKS.md [--json]
    lgtc train  --algo lgtc-ippo|ippo|momappo|vdn|qmix|hrl-grouping --scenario FILE --steps N --seed S --out DIR [--resume]
    lgtc eval   --scenario FILE --policy expert|random|MODEL --episodes K [--out DIR] [--json]
    lgtc export --policy RUN/policy.pt --scenario FILE --out models/NAME.pt
    lgtc sweep  --policy MODEL --policy expert --agents 5 10 20 --consumers 2 4 10 --episodes K --out DIR
                (Fig. 4: return over team size and over consumer count)
    lgtc reproduce fig3|fig4|ablations|scaling --budget small|full [--jobs J] [--steps N] [--report-only]
                (the paper's evaluation over seeds: docs/REPRODUCTION.md)

Every command: --threads N (torch/OpenMP threads, default 1, recorded in the summary or config).
Outputs (lgtc_ros.outputs): nothing existing is written over without --force, the shipped
models/ never; folders are built in a staging folder and renamed into place; a lock beside the
target refuses a second writer. Errors: one line `lgtc: ...` on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import shlex
import sys
import warnings
from pathlib import Path

DEFAULT_SCENARIO = "paper_10x4"


class Failure(SystemExit):
    """A one-line error: `main` prints `lgtc: <message>` to stderr and the process exits with
    status 2, no traceback. str() is the message (`pytest.raises(SystemExit, match=...)` works)."""

    def __init__(self, message: str):
        message = " ".join(str(message).split("\n")).strip()
        super().__init__(message if message.startswith("lgtc: ") else f"lgtc: {message}")
        self.code = 2


def _user_errors() -> tuple[type, ...]:
    """The library's error types whose message is the whole story (no traceback): models,
    outputs, scenarios, shipped-model lookup, bags. Only from modules already imported (the
    error cannot come from one that is not), so no command imports torch just for this."""
    names = {"lgtc_ros.policy.export": "ModelError", "lgtc_ros.outputs": "OutputError",
             "lgtc_ros.scenario": "ScenarioError", "lgtc_ros.policy.shipped": "NoShippedModel",
             "lgtc_ros.bags": "BagError", "rosbags.rosbag2.errors": "WriterError"}
    return tuple(getattr(sys.modules[m], c) for m, c in names.items() if m in sys.modules and hasattr(sys.modules[m], c))


def set_threads(n: int, torch_too: bool = True) -> None:
    """torch's intra-op (and OpenMP/MKL) threads and its inter-op pool: `--threads` (default 1,
    the cores are shared; 2 threads on 2 busy cores made `lgtc eval` 7x slower)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    if not torch_too:
        return
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # only settable once per process, before any inter-op work
        pass


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is out of range: must be >= {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _probability(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is out of range: a probability in [0, 1]")
    return value


def _positive_float(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{value} is out of range: must be > 0")
    return value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default (not the empty ones: None, False)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default in ("", argparse.SUPPRESS) \
                or "(default" in (action.help or ""):  # (help that says its default its own way)
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Defaults in every --help (subcommands too); a usage error is one line, exit status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"lgtc: {message} (see `{self.prog} --help`)\n")


def _inside(path, folder) -> bool:
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def _scenario(name: str):
    from lgtc_ros.scenario import ScenarioError, load_scenario, resolve_scenario

    try:
        return load_scenario(resolve_scenario(name))
    except ScenarioError as exc:
        raise SystemExit(f"lgtc: {exc}") from None


def make_policy(name: str, seed: int, scenario=None, any_consumers: bool = False):
    """An expert (`expert.EXPERT_NAMES`), `random`, or a path to a trained model (exported .pt or a run's policy.pt)."""
    from lgtc_ros.evaluate import RandomPolicy
    from lgtc_ros.expert import EXPERT_NAMES, CentralizedExpert

    if name in EXPERT_NAMES:
        return CentralizedExpert.named(name)
    if name == "random":
        return RandomPolicy(seed)
    if Path(name).suffix == ".pt" or Path(name).exists():
        from lgtc_ros.policy.learned import LearnedPolicy

        return LearnedPolicy.load(name, scenario, allow_consumer_change=any_consumers)  # ModelError: one line
    raise SystemExit(f"lgtc: unknown policy '{name}' (use {', '.join(EXPERT_NAMES)}, random or a model .pt file)")


def to_json(data) -> str:
    """Strict JSON on one line: NaN/inf (e.g. a consumer never covered) become null."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(data), allow_nan=False)


def format_summary(summary: dict, title: str) -> str:
    """A small aligned table for humans."""
    rows = [(k, f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else str(v)) for k, v in summary.items()]
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 14)
    return "\n".join([title, line, *(f"{k:<{width}}  {v:>12}" for k, v in rows), line])


def run_sim(args) -> int:
    from contextlib import ExitStack

    from lgtc_ros.outputs import staged_dir

    if args.episodes < 1:
        raise SystemExit("lgtc: --episodes must be >= 1")
    scenario = _scenario(args.scenario)
    if args.record is not None and args.out is not None and Path(args.record).resolve() == Path(args.out).resolve():
        raise SystemExit("lgtc: --record and --out name the same folder: put the bag inside --out or elsewhere")
    if args.animate is not None:
        _check_animation(args.animate, args.force)  # before minutes of simulation, not after
    with ExitStack() as stack:  # everything is built in staging folders, renamed into place at the end
        out_dir = stack.enter_context(staged_dir(args.out, args.force)) if args.out is not None else None
        record_dir = None
        if args.record is not None:
            if args.out is not None and _inside(args.record, args.out):
                record_dir = out_dir / Path(args.record).resolve().relative_to(Path(args.out).resolve())
            else:
                record_dir = stack.enter_context(staged_dir(args.record, args.force, "--record"))
                record_dir.rmdir()  # the bag writer creates its folder itself
        summary = _simulate(scenario, args, out_dir, record_dir)
    if args.animate is not None:
        from lgtc_ros.animate import from_trace

        _write_animation(from_trace(summary.pop("_trace"), scenario), args,
                         f"{scenario.name}, {Path(args.policy).stem}, seed {args.seed} (episode 0)")
    summary.pop("_trace", None)
    _print_sim(summary, args)
    return 0


def _check_animation(path, force: bool) -> None:
    from lgtc_ros.animate import check_path
    from lgtc_ros.outputs import check_target

    try:
        check_path(path)
    except ValueError as exc:
        raise SystemExit(f"lgtc: {exc}") from None
    check_target(path, force, "--animate")


def _write_animation(frames, args, title: str) -> None:
    """`args.animate` (checked already), at `args.animate_speed` x real time, with a progress bar."""
    from tqdm import tqdm

    from lgtc_ros.animate import write
    from lgtc_ros.outputs import staged_files

    with staged_files([args.animate], args.force, "--animate") as (tmp,), \
            tqdm(desc=f"animating {args.animate}", unit="frame", file=sys.stderr, disable=args.quiet) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        write(frames, tmp, title, speed=args.animate_speed, progress=progress)
    print(f"wrote {args.animate} ({args.animate_speed:g}x real time)")


def _simulate(scenario, args, out_dir: Path | None, record_dir: Path | None) -> dict:
    """Roll out (batched, or through the runtime when recording); write the outputs into `out_dir`
    (a staging folder; `args.out` is where it will be). Returns the summary."""
    from lgtc_ros.evaluate import rollout, write_trace_csv
    from lgtc_ros.plots import trajectory_png

    label = Path(args.policy).stem
    runtime = args.runtime or record_dir is not None
    if runtime:
        stats, trace, extra = _run_missions(scenario, args, label, record_dir)
    else:
        policy = make_policy(args.policy, args.seed, scenario, args.any_consumers)
        _note_identical_episodes(scenario, args, runtime)
        with _EpisodeBar(args.episodes, scenario, f"{scenario.name} / {label}", args.quiet) as bar:
            stats, trace = rollout(scenario, policy, args.episodes, seed=args.seed,
                                   trace=out_dir is not None or args.animate is not None, on_step=bar)
        extra = {}
    summary = {"scenario": scenario.name, "policy": args.policy, "seed": args.seed, **stats.summary(), **extra,
               "threads": args.threads}
    if out_dir is not None:
        write_trace_csv(trace, scenario, out_dir / STEPS_CSV)
        trajectory_png(trace, scenario, out_dir / "trajectory.png",
                       title=f"{scenario.name}, {label}, seed {args.seed} (episode 0)")
        summary["steps_csv"] = f"{STEPS_CSV}: episode 0 of {args.episodes}, one row per step and drone"
        (out_dir / "summary.json").write_text(json.dumps(json.loads(to_json(summary)), indent=2) + "\n")
        summary["out"] = str(args.out)
    summary["_runtime"], summary["_trace"] = runtime, trace
    return summary


STEPS_CSV = "steps_episode0.csv"


def _note_identical_episodes(scenario, args, runtime: bool) -> None:
    """A scenario with a fixed start and no random event flies the same episode every time."""
    init = scenario.initial
    if (args.episodes > 1 and args.policy != "random" and (not runtime or args.drop == 0)
            and None not in (init.agent_pos, init.supply, init.consumer_pos, init.demand)
            and scenario.random.discharge_probability == 0):
        print(f"lgtc: note: {scenario.name} has a fixed start and no random events: its {args.episodes} episodes "
              f"are identical (--episodes 1 is enough)", file=sys.stderr)


def _print_sim(summary: dict, args) -> None:
    runtime = summary.pop("_runtime")
    if args.json:
        print(to_json(summary))
    else:
        print(format_summary({k: v for k, v in summary.items() if k != "steps_csv"},
                             f"lgtc sim: {args.episodes} episode(s)" + (" (per-drone runtime)" if runtime else "")))
        if args.out is not None:
            out = Path(args.out)
            print(f"wrote {out}/trajectory.png, {out}/{STEPS_CSV} (episode 0: one row per step and drone), "
                  f"{out}/summary.json")
        if args.record is not None:
            print(f"recorded {args.record} (episode 0; replay with: lgtc replay {args.record})")


class _EpisodeBar:
    """A progress bar in episodes that moves at every simulation step (a batch of 64 episodes
    ends all at once, 200 steps later): pass the bar as `rollout(on_step=bar)`; `bar.note(text)`
    shows what runs."""

    def __init__(self, episodes: int, scenario, desc: str, quiet: bool):
        from tqdm import tqdm

        self.steps = max(scenario.episode_steps, 1)
        self.bar = tqdm(total=episodes, desc=desc, file=sys.stderr, disable=quiet,
                        bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} episodes [{elapsed}<{remaining}{postfix}]")

    def __call__(self, envs: int) -> None:
        self.bar.update(envs / self.steps)

    def note(self, text: str) -> None:
        self.bar.set_postfix_str(text)

    def __enter__(self) -> "_EpisodeBar":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


def _run_missions(scenario, args, label, record_dir: Path | None = None):
    """Episodes through the per-drone runtime (radio, CBF); the first one is recorded into
    `record_dir` if given."""
    import numpy as np
    from tqdm import tqdm

    from lgtc_ros.evaluate import _merge
    from lgtc_ros.runtime.drone import load_drone_modules
    from lgtc_ros.runtime.radio import RadioConfig
    from lgtc_ros.runtime.swarm import RuntimeConfig, SwarmRuntime

    config = RuntimeConfig(cbf=args.cbf, radio=RadioConfig(latency_ticks=args.latency, drop_prob=args.drop,
                                                           seed=args.seed))
    config.radio.validate()  # (the parser checks the ranges; this is the runtime's own word)
    from lgtc_ros.expert import EXPERT_NAMES

    if EXPERT_NAMES.get(args.policy, None) is not None:
        raise SystemExit(f"lgtc: --policy {args.policy} with --runtime: the runtime applies its own CBF "
                         "(--cbf); use --policy expert")
    if args.policy in ("expert", "random"):
        drones, central = None, make_policy(args.policy, args.seed)
    else:
        drones, _ = load_drone_modules(args.policy, scenario, scenario.n_agents, args.any_consumers)  # ModelError
        central = None
    _note_identical_episodes(scenario, args, True)
    results = []
    with tqdm(total=args.episodes * scenario.episode_steps, desc=f"{scenario.name} / {label} (runtime)",
              unit="tick", file=sys.stderr, disable=args.quiet) as bar:
        for k in range(args.episodes):
            recorder = _recorder(scenario, args, record_dir) if (k == 0 and record_dir is not None) else None
            rt = SwarmRuntime(scenario, drones=drones, centralized=central, config=config, seed=args.seed + k,
                              recorder=recorder)
            try:
                if recorder is not None:
                    _open_recorder(recorder, args)
                results.append(rt.run(progress=bar.update))
            finally:
                if recorder is not None:
                    recorder.close()
    tick = np.concatenate([r.tick_s for r in results])
    extra = {"cbf": args.cbf, "tick_ms_p50": float(np.percentile(tick, 50) * 1e3),
             "tick_ms_p99": float(np.percentile(tick, 99) * 1e3),
             "overhead_ms_p99": float(np.percentile(np.concatenate([r.overhead_s for r in results]), 99) * 1e3),
             "cbf_fallbacks": int(sum(r.cbf.get("fallback", 0) for r in results)),
             "messages_rejected": int(sum(v for r in results for k, v in r.decode.items() if k != "ok"))}
    return _merge([r.stats for r in results]), results[0].trace, extra


def _open_recorder(recorder, args) -> None:
    from rosbags.rosbag2 import WriterError

    try:
        recorder.open()
    except (WriterError, OSError) as exc:
        raise Failure(f"--record {args.record}: cannot write the bag: {exc}") from None


def _recorder(scenario, args, path: Path):
    from rosbags.rosbag2 import WriterError

    from lgtc_ros.bags import BagRecorder

    meta = {"scenario": scenario.name, "scenario_file": scenario.source, "policy": args.policy, "seed": args.seed,
            "dt": scenario.dt, "cbf": args.cbf, "comm_radius": scenario.comm_radius,
            "consumer_radius": scenario.consumer_radius, "safety_radius": scenario.safety_radius, "latency_ticks": args.latency, "drop_prob": args.drop,
            "events": [{"time_s": e.time_s, "kind": e.kind, "agent": e.agent, "select": e.select}
                       for e in scenario.events]}
    try:
        return BagRecorder(path, scenario.n_agents, arena_size_m=scenario.arena_size_m,
                           altitude_m=scenario.altitude_m, metadata=meta)
    except WriterError as exc:
        raise Failure(f"--record {args.record}: cannot write the bag: {exc}") from None


def run_replay(args) -> int:
    from lgtc_ros.bags import BagError
    from lgtc_ros.outputs import staged_dir
    from lgtc_ros.replay import markdown, report

    bag = Path(args.bag)
    out = Path(args.out) if args.out is not None else bag.parent / f"{bag.name}_report"
    video = None if args.animate is None else Path(args.animate) if args.animate else out / REPLAY_VIDEO
    if video is not None and not _inside(video, out):
        _check_animation(video, args.force)
    try:
        with staged_dir(out, args.force) as tmp:
            result = report(args.bag, tmp, args.policy, any_consumers=args.any_consumers)
            if video is not None and _inside(video, out):  # part of the report: staged with it
                staged_video = tmp / video.resolve().relative_to(out.resolve())
                _render_recording(args, staged_video)
                result["files"].append(str(staged_video))
            _retarget_report(tmp, out, result, {"threads": args.threads})
        if video is not None and not _inside(video, out):
            args.animate = str(video)
            _render_recording(args, None)
    except (BagError, FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"lgtc: {exc}") from None
    if args.json:
        print(to_json(result))
    else:
        print(markdown(result, result["open_loop"]))
        print(f"\nwrote {', '.join(result['files'])}")
    return 0


REPLAY_VIDEO = "mission.gif"


def _render_recording(args, staged: Path | None) -> None:
    """The bag's mission as a video: into `staged` (inside the report's staging folder), else to
    `args.animate` through its own staging."""
    from lgtc_ros.animate import check_path, from_recording, write
    from lgtc_ros.bags import read_bag

    rec = read_bag(args.bag)
    scenario = None
    if "safety_radius" not in rec.meta:  # recordings by `lgtc sim --record` before it was recorded
        from lgtc_ros.scenario import load_scenario, resolve_scenario

        scenario = load_scenario(resolve_scenario(rec.meta.get("scenario_file") or rec.meta["scenario"]))
    frames = from_recording(rec, scenario)
    policy = f", {Path(str(rec.meta['policy'])).stem}" if rec.meta.get("policy") else ""
    title = f"{rec.meta.get('scenario', Path(args.bag).name)}{policy}, recorded ({Path(args.bag).name})"
    if staged is None:
        _write_animation(frames, args, title)
        return
    check_path(staged)
    write(frames, staged, title, speed=args.animate_speed)


def _retarget_report(staged: Path, final: Path, result: dict, extra: dict) -> None:
    """`replay.report` wrote into a staging folder: its file list must name where they will be."""
    result["files"] = [str(final / Path(f).name) for f in result["files"]]
    result.update(extra)
    path = staged / "report.json"
    payload = json.loads(path.read_text())
    payload["files"] = result["files"]
    payload.update(extra)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def run_sweep(args) -> int:
    """Fig. 4: every policy on variants of one mission over N and over M; CSV, markdown, PNG."""
    import csv

    from lgtc_ros import sweep
    from lgtc_ros.outputs import staged_dir
    from lgtc_ros.scenario import ScenarioError

    if args.episodes < 1:
        raise SystemExit("lgtc: --episodes must be >= 1")
    base = _scenario(args.scenario)
    from lgtc_ros.expert import EXPERT_NAMES

    policies = {}
    for name in args.policy:
        if name not in (*EXPERT_NAMES, "random"):  # a model: check it now, not an hour later (ModelError)
            make_policy(name, args.seed, base, any_consumers=True)
        label = name if name in (*EXPERT_NAMES, "random") else Path(name).stem
        policies[label] = lambda s, name=name: make_policy(name, args.seed, s, any_consumers=True)
    cases = (len(args.agents) + len(args.consumers)) * len(policies)
    out = Path(args.out)
    with staged_dir(out, args.force) as tmp:
        with _EpisodeBar(cases * args.episodes, base, "sweep", args.quiet) as bar:
            try:
                rows = sweep.sweep(base, policies, args.agents, args.consumers, args.episodes, args.seed,
                                   args.fixed_agents, args.fixed_consumers, progress=bar.note, on_step=bar)
            except ScenarioError as exc:
                raise SystemExit(f"lgtc: {exc}") from None
        with (tmp / "sweep.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        (tmp / "sweep.md").write_text(
            f"# Fig. 4 sweep: {base.name}, {args.episodes} episodes per case, seed {args.seed}\n\n"
            f"`lgtc sweep {' '.join(shlex.quote(a) for a in sys.argv[2:])}` ({args.threads} torch thread(s))\n\n"
            + sweep.markdown(rows))
        sweep.plot(rows, tmp / "fig4.png", f"{base.name}: per-agent return, {args.episodes} episodes per point")
    if args.json:
        print(to_json({"rows": rows, "out": str(out), "threads": args.threads}))
    else:
        print(sweep.markdown(rows))
        print(f"wrote {out}/sweep.csv, {out}/sweep.md, {out}/fig4.png")
    return 0


def run_eval(args) -> int:
    """K episodes -> mean/std table, per-episode CSV, markdown summary; --json for scripts."""
    import csv

    from lgtc_ros.evaluate import rollout
    from lgtc_ros.outputs import staged_dir

    if args.episodes < 1:
        raise SystemExit("lgtc: --episodes must be >= 1")
    scenario = _scenario(args.scenario)
    policy = make_policy(args.policy, args.seed, scenario, args.any_consumers)
    label = Path(args.policy).stem
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"runs/eval-{scenario.name}-{label}-{stamp}")
    with staged_dir(out, args.force) as tmp:
        with _EpisodeBar(args.episodes, scenario, f"eval {scenario.name} / {label}", args.quiet) as bar:
            stats, _ = rollout(scenario, policy, args.episodes, seed=args.seed, on_step=bar)
        summary = {"scenario": scenario.name, "policy": args.policy, "seed": args.seed, **stats.summary(),
                   "threads": args.threads}
        with (tmp / "episodes.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            terms = list(stats.term_returns)
            w.writerow(["episode", "return", *[f"return_{k}" for k in terms], "demand_satisfied_pct", "collisions",
                        "min_distance", "time_to_cover_s"])
            for k in range(stats.returns.size):
                w.writerow([k, f"{stats.returns[k]:.5f}", *[f"{stats.term_returns[t][k]:.5f}" for t in terms],
                            f"{stats.demand_satisfied_pct[k]:.3f}", int(stats.collisions[k]),
                            f"{stats.min_distance[k]:.4f}", f"{stats.time_to_cover_s[k]:.2f}"])
        (tmp / "summary.md").write_text(markdown_summary(summary, stats) + "\n")
        (tmp / "summary.json").write_text(json.dumps(json.loads(to_json(summary)), indent=2) + "\n")
    if args.json:
        print(to_json({**summary, "out": str(out)}))
    else:
        print(markdown_summary(summary, stats))
        print(f"\nwrote {out}/episodes.csv, {out}/summary.md, {out}/summary.json")
    return 0


def markdown_summary(summary: dict, stats) -> str:
    import numpy as np

    def ms(x):
        x = np.asarray(x, dtype=float)
        x = x[np.isfinite(x)]
        return f"{x.mean():.3f} ± {x.std():.3f}" if x.size else "n/a"

    rows = [("return (per agent)", ms(stats.returns)), ("demand satisfied %", ms(stats.demand_satisfied_pct)),
            ("collisions / episode", ms(stats.collisions)), ("min pair distance", f"{stats.min_distance.min():.3f}"),
            ("time to cover all (s)", ms(stats.time_to_cover_s)),
            ("episodes covering all", f"{100 * np.isfinite(stats.time_to_cover_s).mean():.0f} %")]
    rows += [(f"return: {k}", ms(v)) for k, v in stats.term_returns.items()]
    head = f"### {summary['policy']} on {summary['scenario']} ({summary['episodes']} episodes, seed {summary['seed']})"
    return "\n".join([head, "", "| metric | mean ± std |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def run_export(args) -> int:
    from lgtc_ros.outputs import Lock, check_target
    from lgtc_ros.policy.export import export
    from lgtc_ros.policy.hrl import load_trainer_policy as load_policy  # any trainer's (ActorCritic or hrl)

    scenario = _scenario(args.scenario)
    out = Path(args.out)
    if out.suffix != ".pt":
        raise SystemExit(f"lgtc: --out {out}: name the model file NAME.pt (NAME.json is written beside it)")
    with Lock(out):
        for path in (out, out.with_suffix(".json")):
            check_target(path, args.force)
        model, ck = load_policy(args.policy)  # ModelError: missing, truncated, exported already, ...
        if model.cfg.n_resources != scenario.n_resources:
            raise SystemExit(f"lgtc: {args.policy} has r = {model.cfg.n_resources}, scenario {scenario.name} has "
                             f"r = {scenario.n_resources}")
        metrics = {}
        if args.metrics:
            try:
                metrics = json.loads(Path(args.metrics).read_text())
            except (OSError, ValueError) as exc:
                raise SystemExit(f"lgtc: --metrics {args.metrics}: not a readable JSON file ({exc})") from None
        v_max = ck.get("v_max") or scenario.v_max
        scenario = dataclasses.replace(scenario, v_max=v_max)
        pt, meta = export(model, scenario, out, training={"args": ck.get("args", {}), "source": args.policy},
                          metrics=metrics)  # NotContractive (a ModelError, one line): c <= 0, nothing written
    from lgtc_ros.policy.certificate import describe

    print(f"exported {pt} and {meta}: {describe(json.loads(meta.read_text()))}")
    return 0


def run_demo(args) -> int:
    """Default mission through the per-drone runtime with the shipped policy and the CBF, recorded
    to a rosbag2, then replayed into a report."""
    from lgtc_ros.outputs import staged_dir
    from lgtc_ros.policy.shipped import NoShippedModel, default_model
    from lgtc_ros.replay import report

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"runs/demo-{stamp}")
    args.scenario, args.seed, args.out = DEFAULT_SCENARIO, 0, str(out)
    scenario = _scenario(DEFAULT_SCENARIO)
    try:
        args.policy = str(default_model(scenario))
    except NoShippedModel as exc:
        print(f"lgtc: {exc}; flying the expert instead", file=sys.stderr)
        args.policy = "expert"
    args.runtime, args.record, args.cbf, args.latency, args.drop = True, str(out / "bag"), "decentralized", 0, 0.0
    args.any_consumers = False
    with staged_dir(out, args.force) as tmp:  # the folder appears complete, or not at all
        summary = _simulate(scenario, args, tmp, tmp / "bag")
        result = report(tmp / "bag", tmp / "replay")
        _retarget_report(tmp / "replay", out / "replay", result, {"threads": args.threads})
    _print_sim(summary, args)
    print(f"replay report: {', '.join(result['files'])}")
    return 0


def run_bench(args) -> int:
    import torch
    from tqdm import tqdm

    from lgtc_ros import bench
    from lgtc_ros.policy.shipped import NoShippedModel, default_model
    from lgtc_ros.safety import bench_cbf

    if args.runtime_ticks < 100:
        raise SystemExit(f"lgtc: --runtime-ticks {args.runtime_ticks}: must be >= 100 (the runtime bench reports a p99)")
    machine_info = bench.machine()  # before the per-drone benches pin one thread
    needs_model = {"policy", "runtime", "collisions"} & set(args.only)
    try:  # the benches' mission is the paper's (the scale benches fly its model at other M)
        model = Path(args.model) if args.model else default_model(bench.default_scenario())
    except NoShippedModel as exc:
        if needs_model:
            raise SystemExit(f"lgtc: benches {sorted(needs_model)} need a model (--model): {exc}") from None
        model = None
    if needs_model and not model.is_file():
        raise SystemExit(f"lgtc: benches {sorted(needs_model)} need a model: no file {model}")
    rows: list[dict] = []

    def add(new: list[dict]) -> None:
        """Every row says the torch threads it ran with (`--threads`, default 1; the per-drone
        benches pin 1 themselves), read right after its bench."""
        threads = torch.get_num_threads()
        rows.extend({**r, "threads": r.get("threads", threads)} for r in new)

    with tqdm(desc="bench", file=sys.stderr, disable=args.quiet) as bar:
        def note(msg):
            bar.set_postfix_str(msg)
            bar.update()

        if "sim" in args.only:
            note("simulator")
            add(bench.bench_simulator(bench.default_scenario(), batches=args.batches, peers=tuple(args.peers)))
        if "assignment" in args.only:
            add(bench.bench_assignment(instances=args.instances, cvxpy_instances=args.cvxpy_instances,
                                       cvxpy_time_limit=args.cvxpy_time_limit, progress=note))
        if "cbf" in args.only:
            note("cbf")
            add(bench_cbf())
        if "policy" in args.only:
            note("policy step")
            add(bench.bench_policy_step(model))
        if "runtime" in args.only:
            note("runtime N=50, 100")
            add(bench.bench_runtime(model, ticks=args.runtime_ticks))
        if "collisions" in args.only:
            add(bench.bench_collisions(model, episodes=args.episodes, progress=note))
        if "graph" in args.only:
            add(bench.bench_graph(seconds=args.graph_seconds, progress=note))
        if "training" in args.only:
            log = Path(args.training_log) if args.training_log else (
                model.with_name(model.stem + "_train_log.csv") if model else None)
            if args.training_log and not log.is_file():
                raise SystemExit(f"lgtc: --training-log {log}: no such file")
            if (args.training_evals is None) != (args.threshold is None):
                raise SystemExit("lgtc: --training-evals and --threshold go together")
            if log is not None and log.is_file():
                add(bench.bench_training(log, args.training_evals, args.threshold))
    command = "lgtc " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "lgtc bench"
    if not args.no_write:
        path = bench.append_report(rows, command, args.report, machine_info)
        print(f"appended to {path}", file=sys.stderr)
    print(to_json({"machine": bench.machine(), "rows": rows, "verdicts": [bench.verdict(r) for r in rows]})
          if args.json else bench.format_rows(rows))
    print(bench.marks(rows), file=sys.stderr)
    return 0


TRAIN_DEFAULTS = {"algo": "lgtc-ippo", "scenario": DEFAULT_SCENARIO, "seed": 0, "total_steps": 3_000_000}
"""`lgtc train` without --resume; with --resume the run's stored settings are the defaults."""


def run_train(args) -> int:
    out = Path(args.out)
    if args.resume and args.force:
        raise SystemExit("lgtc: --resume continues the run in --out, --force starts it over: pass one of them")
    stored = _stored_run(out) if args.resume else None
    algo = args.algo or (stored or TRAIN_DEFAULTS)["algo"]
    Args, train = trainer_for(algo)
    fields = {f.name: f for f in dataclasses.fields(Args)}
    overrides = train_overrides(args.set or [], fields)
    given = {k: v for k, v in {"algo": args.algo, "scenario": args.scenario, "seed": args.seed,
                               "total_steps": args.steps}.items() if v is not None}
    if stored is not None:  # the run's settings, what was given on top (the trainer lists contradictions)
        base = {k: v for k, v in stored.items() if k in fields}
        base["hidden"] = tuple(base.get("hidden", fields["hidden"].default))
    else:
        base = dict(TRAIN_DEFAULTS)
    train_args = Args(**{**base, **given, **overrides, "algo": algo, "out": args.out, "threads": args.threads})
    try:
        train_args.validate()
        status = train(train_args, resume=args.resume, show_progress=not args.quiet, force=args.force)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise SystemExit(f"lgtc: {exc}") from None
    if status == "done":
        print(f"trained policy: {args.out}/policy.pt (log {args.out}/train_log.csv, curve {args.out}/learning_curve.png)")
    return 0 if status == "done" else 130


def trainer_for(algo: str):
    """(its Args dataclass, its train function) for `lgtc train --algo algo`."""
    if algo in ("vdn", "qmix"):  # the SAC-based value-decomposition peers
        from lgtc_ros.train.sac_mix import SacArgs, train
        return SacArgs, train
    if algo == "hrl-grouping":  # the hierarchical grouping peer (option-critic + centralized DeepSets critic)
        from lgtc_ros.train.hrl import Args, train
        return Args, train
    from lgtc_ros.train.ippo import Args, train
    return Args, train


def train_overrides(items: list[str], fields: dict) -> dict:
    """`--set KEY=VALUE ...` as typed trainer settings, or a one-line refusal (an option of its own,
    an unknown key, a value of the wrong type)."""
    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        if key in ("algo", "scenario", "total_steps", "seed", "out", "threads"):
            option = {"total_steps": "--steps"}.get(key, f"--{key}")
            raise SystemExit(f"lgtc: --set {key}: use {option} (see `lgtc train --help`)")
        if key not in fields:
            raise SystemExit(f"lgtc: --set {key}: not a trainer setting (see `lgtc train --help`)")
        try:
            overrides[key] = _parse_setting(fields[key].default, value)
        except ValueError as exc:
            raise SystemExit(f"lgtc: --set {item}: {exc}") from None
    return overrides


def _stored_run(out: Path) -> dict:
    """The settings of the run `--resume` continues (from its checkpoint), or a one-line refusal."""
    from lgtc_ros.policy.checkpoint import load_checkpoint

    if not (out / "checkpoint.pt").exists():
        if (out / "train_log.csv").exists():
            raise SystemExit(f"lgtc: --resume: {out} holds a training log but no checkpoint (the run stopped before "
                             f"its first checkpoint): nothing to resume; start over with --force (without --resume)")
        raise SystemExit(f"lgtc: --resume: no run to continue in {out} (no checkpoint.pt); train without --resume first")
    return dict(load_checkpoint(out / "checkpoint.pt")["args"])  # ModelError if truncated: one line


def _parse_setting(default, text: str):
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError("expected true or false")
        return text.lower() in ("true", "1")
    if isinstance(default, tuple):
        return tuple(int(v) for v in text.split(","))
    return type(default)(text)


def run_compare(args) -> int:
    from lgtc_ros.outputs import staged_files
    from lgtc_ros.plots import compare_curves_png

    logs = {}
    for item in args.logs:
        label, sep, path = item.partition("=")
        if not sep:
            label, path = Path(item).parent.name, item
        if not Path(path).is_file():
            raise SystemExit(f"lgtc: no training log at {path}")
        logs[label] = path
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise SystemExit(f"lgtc: --out {out}: name a .png file")
    with staged_files([out], args.force) as (tmp,):
        compare_curves_png(logs, tmp, args.title)
    print(f"wrote {out}")
    return 0


@contextlib.contextmanager
def _reproduce_errors():
    """A report with nothing to draw, a training run that failed: one line naming what to do."""
    try:
        yield
    except (FileNotFoundError, RuntimeError) as exc:
        raise SystemExit(f"lgtc: {exc}") from None


def run_reproduce(args) -> int:
    """Fig. 3, Fig. 4 or the ablations: train what is missing, evaluate, write the report folder."""
    from lgtc_ros import reproduce as rep
    from lgtc_ros.outputs import Lock

    budget = rep.BUDGETS[args.budget]
    small = args.budget == "small"  # a smoke test: nothing of it lands in docs/ unless asked
    report_dir = Path(args.out or (f"runs/reproduce-small/report/{args.figure}" if small
                                   else f"docs/reproduction/{args.figure}"))
    runs_root = Path(args.runs or ("runs/reproduce-small" if small else "runs/reproduce"))
    command = "lgtc reproduce " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["reproduce"] \
        else f"lgtc reproduce {args.figure} --budget {args.budget}"
    log = (lambda text: None) if args.quiet else (lambda text: print(f"lgtc reproduce: {text}", file=sys.stderr,
                                                                      flush=True))
    with Lock(report_dir), _reproduce_errors():
        if args.figure == "fig3":
            methods = [m for m in rep.FIG3 if not args.methods or m.label in args.methods]
            runs = rep.fig3_runs(budget, methods, args.seeds, args.steps)
            rep.run_all([(r, runs_root / "fig3") for r in runs], report_dir, budget.eval_episodes, args.jobs, log,
                        train_missing=not args.report_only)
            # the report covers every run the folder holds, whichever subset this call trained
            # and names the step count its runs reached, however this call was invoked
            steps = {s for r in rep.results(report_dir) for s in r.env_steps}
            step = steps.pop() if len(steps) == 1 else None
            text = rep.fig3_report(report_dir, rep.FIG3, f"lgtc reproduce fig3 --budget {args.budget}"
                                   + (f" --steps {step}" if step not in (None, budget.steps) else ""))
        elif args.figure == "fig4":
            text = rep.fig4(budget, report_dir, Path.cwd(), command=command, log=log)
        elif args.figure == "scaling":
            text = rep.scaling(budget, report_dir, Path.cwd(), command=command.replace(" --report-only", ""), log=log,
                               report_only=args.report_only)
        else:
            text = rep.ablations(budget, runs_root, report_dir, Path.cwd(), args.jobs, args.steps, command, log,
                                 args.report_only)
    print(text)
    print(f"wrote {report_dir}/README.md")
    return 0


def run_doctor(args) -> int:
    """One line per item with what to do; exit 1 when something simulation needs is broken."""
    from lgtc_ros.doctor import main as doctor

    return doctor()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lgtc", description=__doc__.split("\n\n")[0])  # subcommands: _Parser too
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, json_help="print the summary as one JSON object on stdout instead of a table"):
        p.add_argument("--json", action="store_true", help=json_help)
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        threads(p)

    def threads(p):
        p.add_argument("--threads", type=_int_at_least(1), default=1,
                       help="torch (and OpenMP) threads; recorded in the run's summary or config")

    def force(p, what="the output"):
        p.add_argument("--force", action="store_true",
                       help=f"replace {what} (never anything in the shipped models/ folder)")

    p = sub.add_parser("sim", help="roll out a policy on a scenario and summarize")
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="YAML file or bundled name (default: %(default)s)")
    p.add_argument("--policy", default="expert", help="expert | expert-cbf | expert-cbf-centralized | random | path to a model .pt "
                   "(default: %(default)s)")
    p.add_argument("--episodes", type=_int_at_least(1), default=10, help="episodes to run (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode draws (default: %(default)s)")
    p.add_argument("--out", default=None, help=f"folder for trajectory.png, {STEPS_CSV} (episode 0: one row per "
                   "step and drone) and summary.json")
    p.add_argument("--any-consumers", action="store_true",
                   help="fly a model on a scenario with a different number of consumers")
    p.add_argument("--runtime", action="store_true",
                   help="run through the per-drone runtime (radio, CBF) instead of the batched evaluator")
    p.add_argument("--record", default=None, metavar="BAG",
                   help="record episode 0 as a rosbag2 folder (implies --runtime)")
    p.add_argument("--cbf", default="decentralized", choices=["decentralized", "centralized", "off"],
                   help="safety filter in the runtime (default: %(default)s)")
    p.add_argument("--latency", type=_int_at_least(0), default=0, help="radio latency in extra ticks, >= 0 (runtime)")
    p.add_argument("--drop", type=_probability, default=0.0, help="radio drop probability in [0, 1] (runtime)")
    p.add_argument("--animate", default=None, metavar="VIDEO",
                   help="render episode 0 as VIDEO: .mp4 (needs ffmpeg) or .gif (drones, consumers sized by open "
                   "demand, clusters, links, safety radius)")
    p.add_argument("--animate-speed", type=_positive_float, default=4.0,
                   help="playback speed of --animate, x real time (default: %(default)s)")
    force(p, "an existing --out folder, --record bag or --animate file")
    common(p)
    p.set_defaults(func=run_sim)

    p = sub.add_parser("compare", help="overlay learning curves of several training runs")
    p.add_argument("logs", nargs="+", metavar="[LABEL=]TRAIN_LOG_CSV")
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--title", default="", help="figure title (default: 'learning curves')")
    force(p, "an existing --out file")
    p.set_defaults(func=run_compare)

    p = sub.add_parser("replay", help="report on a recorded mission; --policy re-runs it open-loop")
    p.add_argument("bag", help="rosbag2 folder written by `lgtc sim --record`")
    p.add_argument("--policy", default=None, help="model to replay the recorded observations through")
    p.add_argument("--out", default=None, help="report folder (default: <bag>_report beside the bag)")
    p.add_argument("--any-consumers", action="store_true", help="allow a model trained with another M")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--animate", nargs="?", const="", default=None, metavar="VIDEO",
                   help=f"render the mission too: VIDEO (.mp4 needs ffmpeg, or .gif); without VIDEO: "
                   f"{REPLAY_VIDEO} in the report folder")
    p.add_argument("--animate-speed", type=_positive_float, default=4.0,
                   help="playback speed of --animate, x real time (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    force(p, "an existing report folder or --animate file")
    threads(p)
    p.set_defaults(func=run_replay)

    p = sub.add_parser("eval", help="evaluate a policy or the expert over K episodes")
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="YAML file or bundled name (default: %(default)s)")
    p.add_argument("--policy", default="expert",
                   help="expert | expert-cbf | expert-cbf-centralized | random | path to a model .pt")
    p.add_argument("--episodes", type=_int_at_least(1), default=100, help="episodes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode draws")
    p.add_argument("--out", default=None,
                   help="folder for episodes.csv, summary.md, summary.json "
                   "(default: runs/eval-<scenario>-<policy>-<time>)")
    force(p, "an existing --out folder")
    p.add_argument("--any-consumers", action="store_true",
                   help="fly a model on a scenario with a different number of consumers")
    common(p)
    p.set_defaults(func=run_eval)

    p = sub.add_parser("sweep", help="Fig. 4: policies over team size N and consumer count M")
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="base mission (default: %(default)s)")
    p.add_argument("--policy", action="append", required=True,
                   help="expert | random | model .pt; repeat for several (models fly any M)")
    p.add_argument("--agents", type=_int_at_least(1), nargs="*", default=[5, 10, 20, 30, 50], help="N values (M fixed)")
    p.add_argument("--consumers", type=_int_at_least(1), nargs="*", default=[2, 4, 6, 8, 10],
                   help="M values (N fixed)")
    p.add_argument("--fixed-agents", type=_int_at_least(1), default=None,
                   help="N of the consumer axis (default: the base's)")
    p.add_argument("--fixed-consumers", type=_int_at_least(1), default=None,
                   help="M of the agent axis (default: the base's)")
    p.add_argument("--episodes", type=_int_at_least(1), default=10, help="episodes per case (the paper: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode draws")
    p.add_argument("--out", required=True, help="folder for sweep.csv, sweep.md, fig4.png")
    force(p, "an existing --out folder")
    common(p, "print the rows as one JSON object on stdout")
    p.set_defaults(func=run_sweep)

    p = sub.add_parser("export", help="TorchScript per-drone step + metadata JSON from a trained policy; "
                       "certifies the contraction rate c of eq. (9) and refuses c <= 0")
    p.add_argument("--policy", required=True, help="a run's policy.pt (or checkpoint.pt)")
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="scenario the model is for (limits in the JSON)")
    p.add_argument("--out", required=True, help="output .pt path (the .json goes beside it)")
    p.add_argument("--metrics", default=None, help="JSON file of final metrics to embed (e.g. an eval summary)")
    force(p, "an existing NAME.pt / NAME.json")
    threads(p)
    p.set_defaults(func=run_export)

    p = sub.add_parser("demo", help="default mission (10 drones, 4 consumers) via the runtime, CBF, bag, replay")
    p.add_argument("--episodes", type=_int_at_least(1), default=1, help="episodes to summarize (default: %(default)s)")
    p.add_argument("--out", default=None, help="output folder (default: runs/demo-<time>)")
    force(p, "an existing --out folder")
    common(p)
    p.set_defaults(func=run_demo)

    p = sub.add_parser("train", help="train a policy with the batched simulator: lgtc-ippo, ippo, momappo, vdn, qmix",
                       description="Train a policy with the batched simulator. PPO family (resumable): lgtc-ippo, "
                       "ippo, momappo; SAC-based value decomposition: vdn, qmix. With --resume the run's stored "
                       "settings are the defaults and an option that contradicts them is refused.")
    p.add_argument("--algo", default=None, choices=["lgtc-ippo", "ippo", "momappo", "vdn", "qmix", "hrl-grouping"],
                   help="lgtc-ippo: LGTC with the consensus state and the contractivity penalty (the paper); "
                   "ippo: vanilla IPPO, no state; momappo: attention-weighted consumer features, a value per "
                   "consumer; vdn, qmix: SAC-adapted value decomposition; hrl-grouping: "
                   "hierarchical option-critic grouping with a centralized DeepSets critic "
                   "(default: lgtc-ippo; with --resume: the run's)")
    p.add_argument("--scenario", default=None,
                   help=f"YAML file or bundled name (default: {DEFAULT_SCENARIO}; with --resume: the run's)")
    p.add_argument("--steps", type=_int_at_least(1), default=None,
                   help="environment steps, rounded up to whole updates (said at the start) "
                   f"(default: {TRAIN_DEFAULTS['total_steps']}; with --resume: the run's total)")
    p.add_argument("--seed", type=int, default=None, help="seed (default: 0; with --resume: the run's)")
    p.add_argument("--out", required=True, help="run folder (log, checkpoints, policy.pt, curve)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--force", action="store_true",
                   help="start over in an --out that holds a run or a log (its run files are removed)")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="other trainer settings, e.g. learning_rate=1e-4 num_envs=16 (see train/ippo.py Args)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    threads(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser("bench", help="benchmarks; appends to docs/BENCHMARKS.md")
    kinds = ["sim", "assignment", "cbf", "policy", "runtime", "collisions", "graph", "training"]
    p.add_argument("--only", nargs="+", default=kinds, choices=kinds, help="which benches (default: all)")
    p.add_argument("--model", default=None, help="exported model for policy/runtime/collision benches "
                   "(default: models/lgtc_paper_10x4.pt)")
    p.add_argument("--episodes", type=int, default=100, help="seeded episodes of the collision bench")
    p.add_argument("--training-log", default=None, metavar="CSV",
                   help="training bench: this run's train_log.csv (default: the --model's, beside it)")
    p.add_argument("--training-evals", default=None, metavar="CSV",
                   help="training bench: `lgtc eval` returns of the run's checkpoints (columns update, "
                   "eval_return...), for the wall time to --threshold")
    p.add_argument("--threshold", type=float, default=None,
                   help="training bench: the return counted as reached (e.g. 0.95 x the expert's)")
    p.add_argument("--graph-seconds", type=float, default=8.0,
                   help="seconds of mission the ROS graph bench watches per case (the missions last 10 s)")
    p.add_argument("--runtime-ticks", type=int, default=600,
                   help="ticks of each runtime bench mission: its p99 is the 1 %% worst of them (default: %(default)s; "
                   "at 200 the p99 was the second-worst tick and moved by 1 ms between runs)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024], help="simulator batch sizes")
    p.add_argument("--peers", nargs="*", default=["dispersion", "balance", "transport"], metavar="SCENARIO",
                   help="VMAS scenarios stepped beside the simulator at the same B and N, interleaved in this process "
                   "(needs pip install -e '.[peers]'; none: --peers) (default: %(default)s)")
    p.add_argument("--instances", type=int, default=10, help="assignment instances per N (default: %(default)s)")
    p.add_argument("--cvxpy-instances", type=int, default=5, help="of which also solved by plain cvxpy+SCIP")
    p.add_argument("--cvxpy-time-limit", type=float, default=60.0, help="seconds per plain cvxpy solve")
    p.add_argument("--report", default="docs/BENCHMARKS.md", help="markdown file to append to")
    p.add_argument("--no-write", action="store_true", help="do not append to the report")
    common(p, "print all rows as one JSON object on stdout")
    p.set_defaults(func=run_bench)

    p = sub.add_parser("reproduce", help="the paper's evaluation: Fig. 3 over seeds, Fig. 4, the ablations; "
                       "trains what is missing (resumable), writes a report folder")
    p.add_argument("figure", choices=["fig3", "fig4", "ablations", "scaling"])
    p.add_argument("--budget", choices=["small", "full"], default="full",
                   help="small: seconds-long runs for a smoke test; full: what docs/reproduction reports (default: %(default)s)")
    p.add_argument("--steps", type=_int_at_least(1), default=None,
                   help="train every run to this many env-steps instead of the budget's (a rerun extends them)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="fig3: these seeds (default: the budget's)")
    p.add_argument("--methods", nargs="+", default=None, choices=[m.label for m in _fig3_methods()],
                   help="fig3: these methods (default: all)")
    p.add_argument("--jobs", type=_int_at_least(1), default=1, help="training runs at once, one torch thread each")
    p.add_argument("--runs", default=None, help="folder of the training runs (default: runs/reproduce)")
    p.add_argument("--out", default=None, help="report folder (default: docs/reproduction/FIGURE for the full budget)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: collect the runs that have finished and redraw the report")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    threads(p)
    p.set_defaults(func=run_reproduce)

    p = sub.add_parser("doctor", help="check this installation: torch, solvers, models, ROS 2, Crazyflie radio")
    p.set_defaults(func=run_doctor)
    return parser


def _fig3_methods():
    from lgtc_ros.reproduce import FIG3

    return FIG3


def main(argv: list[str] | None = None) -> int:
    """Run one command. A known error (a bad model file, an output that exists or is locked, a
    scenario error, an out-of-range option...) is one line on stderr, `lgtc: <message>`, and exit
    status 2, never a traceback; Ctrl-C outside training is `lgtc: interrupted`, status 130."""
    args = build_parser().parse_args(argv)
    # torch 2.13 deprecates torch.jit.load/freeze, the TorchScript format our models ship in: a
    # notice about the library, not about the user's command (errors stay one line)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
    set_threads(getattr(args, "threads", 1), torch_too=hasattr(args, "threads"))
    try:
        return args.func(args)
    except Failure as exc:
        print(exc, file=sys.stderr)
        raise
    except SystemExit as exc:
        if not isinstance(exc.code, str):
            raise
        failure = Failure(exc.code)
    except KeyboardInterrupt:
        print("lgtc: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - only the library's own error types are reported as one line
        if not isinstance(exc, _user_errors()):
            raise
        failure = Failure(str(exc))
    print(failure, file=sys.stderr)
    raise failure from None


if __name__ == "__main__":
    sys.exit(main())
