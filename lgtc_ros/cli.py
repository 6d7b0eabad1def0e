"""`lgtc`: the command line. Thin: parse arguments, call library functions, print.

    lgtc sim    --scenario FILE --policy expert|random|MODEL --episodes K --seed S [--out DIR] [--json]
                [--runtime] [--record BAG] [--cbf decentralized|centralized|off] [--latency T] [--drop P]
    lgtc demo   the default mission through the per-drone runtime: 10 drones, shipped policy, CBF,
                a rosbag2 and its replay report -> runs/demo-*/
    lgtc replay BAG [--policy MODEL] [--out DIR] [--json]
    lgtc compare LABEL=RUN/train_log.csv ... --out FIG.png   (learning curves side by side)
    lgtc bench  simulator and assignment benchmarks, appended to docs/BENCHMARKS.md [--json]
    lgtc train  --algo lgtc-ippo|ippo|momappo|vdn|qmix --scenario FILE --steps N --seed S --out DIR [--resume]
    lgtc eval   --scenario FILE --policy expert|random|MODEL --episodes K [--out DIR] [--json]
    lgtc export --policy RUN/policy.pt --scenario FILE --out models/NAME.pt
    lgtc sweep  --policy MODEL --policy expert --agents 5 10 20 --consumers 2 4 10 --episodes K --out DIR
                (Fig. 4: return over team size and over consumer count)
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import shlex
import sys
from pathlib import Path

DEFAULT_SCENARIO = "paper_10x4"


def _scenario(name: str):
    from lgtc_ros.scenario import ScenarioError, load_scenario, resolve_scenario

    try:
        return load_scenario(resolve_scenario(name))
    except ScenarioError as exc:
        raise SystemExit(f"lgtc: {exc}") from None


def make_policy(name: str, seed: int, scenario=None, any_consumers: bool = False):
    """`expert`, `random`, or a path to a trained model (exported .pt or a run's policy.pt)."""
    from lgtc_ros.evaluate import RandomPolicy
    from lgtc_ros.expert import CentralizedExpert

    if name == "expert":
        return CentralizedExpert()
    if name == "random":
        return RandomPolicy(seed)
    if Path(name).suffix == ".pt" or Path(name).exists():
        from lgtc_ros.policy.export import ModelMismatch
        from lgtc_ros.policy.learned import LearnedPolicy

        try:
            return LearnedPolicy.load(name, scenario, allow_consumer_change=any_consumers)
        except (ModelMismatch, FileNotFoundError) as exc:
            raise SystemExit(f"lgtc: {exc}") from None
    raise SystemExit(f"lgtc: unknown policy '{name}' (use expert, random or a model .pt file)")


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
    from tqdm import tqdm

    from lgtc_ros.evaluate import rollout, write_trace_csv
    from lgtc_ros.plots import trajectory_png

    if args.episodes < 1:
        raise SystemExit("lgtc: --episodes must be >= 1")
    scenario = _scenario(args.scenario)
    label = Path(args.policy).stem
    runtime = args.runtime or args.record is not None
    if runtime:
        stats, trace, extra = _run_missions(scenario, args, label)
    else:
        policy = make_policy(args.policy, args.seed, scenario, args.any_consumers)
        with tqdm(total=args.episodes, desc=f"{scenario.name} / {label}", unit="ep",
                  file=sys.stderr, disable=args.quiet) as bar:
            stats, trace = rollout(scenario, policy, args.episodes, seed=args.seed,
                                   trace=args.out is not None, progress=bar.update)
        extra = {}
    summary = {"scenario": scenario.name, "policy": args.policy, "seed": args.seed, **stats.summary(), **extra}
    if args.out is not None:
        out = Path(args.out)
        write_trace_csv(trace, scenario, out / "steps.csv")
        trajectory_png(trace, scenario, out / "trajectory.png",
                       title=f"{scenario.name}, {label}, seed {args.seed} (episode 0)")
        (out / "summary.json").write_text(json.dumps(json.loads(to_json(summary)), indent=2) + "\n")
        summary["out"] = str(out)
    if args.json:
        print(to_json(summary))
    else:
        print(format_summary(summary, f"lgtc sim: {args.episodes} episode(s)" + (" (per-drone runtime)" if runtime else "")))
        if args.out is not None:
            print(f"wrote {out}/trajectory.png, {out}/steps.csv, {out}/summary.json")
        if args.record is not None:
            print(f"recorded {args.record} (replay with: lgtc replay {args.record})")
    return 0


def _run_missions(scenario, args, label):
    """Episodes through the per-drone runtime (radio, CBF); the first one is recorded if asked."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from lgtc_ros.evaluate import _merge
    from lgtc_ros.runtime.drone import load_drone_modules
    from lgtc_ros.runtime.radio import RadioConfig
    from lgtc_ros.runtime.swarm import RuntimeConfig, SwarmRuntime

    torch.set_num_threads(1)  # one drone, one thread: what a companion computer or a node gets
    config = RuntimeConfig(cbf=args.cbf, radio=RadioConfig(latency_ticks=args.latency, drop_prob=args.drop,
                                                           seed=args.seed))
    if args.policy in ("expert", "random"):
        drones, central = None, make_policy(args.policy, args.seed)
    else:
        from lgtc_ros.policy.export import ModelMismatch

        try:
            drones, _ = load_drone_modules(args.policy, scenario, scenario.n_agents, args.any_consumers)
        except (ModelMismatch, FileNotFoundError) as exc:
            raise SystemExit(f"lgtc: {exc}") from None
        central = None
    results = []
    with tqdm(total=args.episodes * scenario.episode_steps, desc=f"{scenario.name} / {label} (runtime)",
              unit="tick", file=sys.stderr, disable=args.quiet) as bar:
        for k in range(args.episodes):
            recorder = _recorder(scenario, args, label) if (k == 0 and args.record is not None) else None
            rt = SwarmRuntime(scenario, drones=drones, centralized=central, config=config, seed=args.seed + k,
                              recorder=recorder)
            try:
                if recorder is not None:
                    recorder.open()
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


def _recorder(scenario, args, label):
    from lgtc_ros.bags import BagRecorder

    path = Path(args.record)
    if path.exists():
        raise SystemExit(f"lgtc: {path} exists; choose a new --record folder")
    meta = {"scenario": scenario.name, "scenario_file": scenario.source, "policy": args.policy, "seed": args.seed,
            "dt": scenario.dt, "cbf": args.cbf, "comm_radius": scenario.comm_radius,
            "consumer_radius": scenario.consumer_radius, "latency_ticks": args.latency, "drop_prob": args.drop,
            "events": [{"time_s": e.time_s, "kind": e.kind, "agent": e.agent, "select": e.select}
                       for e in scenario.events]}
    return BagRecorder(path, scenario.n_agents, arena_size_m=scenario.arena_size_m, altitude_m=scenario.altitude_m,
                       metadata=meta)


def run_replay(args) -> int:
    from lgtc_ros.bags import BagError
    from lgtc_ros.replay import markdown, report

    try:
        result = report(args.bag, args.out, args.policy, any_consumers=args.any_consumers)
    except (BagError, FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"lgtc: {exc}") from None
    if args.json:
        print(to_json(result))
    else:
        print(markdown(result, result["open_loop"]))
        print(f"\nwrote {', '.join(result['files'])}")
    return 0


def run_sweep(args) -> int:
    """Fig. 4: every policy on variants of one mission over N and over M; CSV, markdown, PNG."""
    import csv

    from tqdm import tqdm

    from lgtc_ros import sweep
    from lgtc_ros.scenario import ScenarioError

    if args.episodes < 1:
        raise SystemExit("lgtc: --episodes must be >= 1")
    base = _scenario(args.scenario)
    policies = {}
    for name in args.policy:
        if name not in ("expert", "random") and not Path(name).is_file():  # fail now, not an hour later
            raise SystemExit(f"lgtc: unknown policy '{name}' (use expert, random or a model .pt file)")
        label = "expert" if name == "expert" else "random" if name == "random" else Path(name).stem
        policies[label] = lambda s, name=name: make_policy(name, args.seed, s, any_consumers=True)
    cases = (len(args.agents) + len(args.consumers)) * len(policies)
    with tqdm(total=cases, desc="sweep", file=sys.stderr, disable=args.quiet) as bar:
        def note(msg):
            bar.set_postfix_str(msg)
            bar.update()
        try:
            rows = sweep.sweep(base, policies, args.agents, args.consumers, args.episodes, args.seed,
                               args.fixed_agents, args.fixed_consumers, progress=note)
        except ScenarioError as exc:
            raise SystemExit(f"lgtc: {exc}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "sweep.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "sweep.md").write_text(f"# Fig. 4 sweep: {base.name}, {args.episodes} episodes per case, seed {args.seed}\n\n"
                                  f"`lgtc sweep {' '.join(sys.argv[2:])}`\n\n" + sweep.markdown(rows))
    png = sweep.plot(rows, out / "fig4.png", f"{base.name}: per-agent return, {args.episodes} episodes per point")
    if args.json:
        print(to_json({"rows": rows, "out": str(out)}))
    else:
        print(sweep.markdown(rows))
        print(f"wrote {out}/sweep.csv, {out}/sweep.md, {png}")
    return 0


def run_eval(args) -> int:
    """K episodes -> mean/std table, per-episode CSV, markdown summary; --json for scripts."""
    import csv

    from tqdm import tqdm

    from lgtc_ros.evaluate import rollout

    if args.episodes < 1:
        raise SystemExit("lgtc: --episodes must be >= 1")
    scenario = _scenario(args.scenario)
    policy = make_policy(args.policy, args.seed, scenario, args.any_consumers)
    label = Path(args.policy).stem
    with tqdm(total=args.episodes, desc=f"eval {scenario.name} / {label}", unit="ep", file=sys.stderr,
              disable=args.quiet) as bar:
        stats, _ = rollout(scenario, policy, args.episodes, seed=args.seed, progress=bar.update)
    summary = {"scenario": scenario.name, "policy": args.policy, "seed": args.seed, **stats.summary()}
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"runs/eval-{scenario.name}-{label}-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    with (out / "episodes.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        terms = list(stats.term_returns)
        w.writerow(["episode", "return", *[f"return_{k}" for k in terms], "demand_satisfied_pct", "collisions",
                    "min_distance", "time_to_cover_s"])
        for k in range(stats.returns.size):
            w.writerow([k, f"{stats.returns[k]:.5f}", *[f"{stats.term_returns[t][k]:.5f}" for t in terms],
                        f"{stats.demand_satisfied_pct[k]:.3f}", int(stats.collisions[k]),
                        f"{stats.min_distance[k]:.4f}", f"{stats.time_to_cover_s[k]:.2f}"])
    (out / "summary.md").write_text(markdown_summary(summary, stats) + "\n")
    (out / "summary.json").write_text(json.dumps(json.loads(to_json(summary)), indent=2) + "\n")
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
    from lgtc_ros.policy.checkpoint import load_policy
    from lgtc_ros.policy.export import export

    scenario = _scenario(args.scenario)
    try:
        model, ck = load_policy(args.policy)
    except FileNotFoundError as exc:
        raise SystemExit(f"lgtc: {exc}") from None
    if model.cfg.n_resources != scenario.n_resources:
        raise SystemExit(f"lgtc: {args.policy} has r = {model.cfg.n_resources}, scenario {scenario.name} has "
                         f"r = {scenario.n_resources}")
    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else {}
    v_max = ck.get("v_max") or scenario.v_max
    import dataclasses as _dc

    scenario = _dc.replace(scenario, v_max=v_max)
    pt, meta = export(model, scenario, args.out, training={"args": ck.get("args", {}), "source": args.policy},
                      metrics=metrics)
    print(f"exported {pt} and {meta}")
    return 0


def run_demo(args) -> int:
    """Default mission through the per-drone runtime with the shipped policy and the CBF, recorded
    to a rosbag2, then replayed into a report."""
    from lgtc_ros.policy.shipped import NoShippedModel, default_model
    from lgtc_ros.replay import report

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"runs/demo-{stamp}")
    args.scenario, args.seed, args.out = DEFAULT_SCENARIO, 0, str(out)
    try:
        args.policy = str(default_model(_scenario(DEFAULT_SCENARIO)))
    except NoShippedModel as exc:
        print(f"lgtc: {exc}; flying the expert instead", file=sys.stderr)
        args.policy = "expert"
    args.runtime, args.record, args.cbf, args.latency, args.drop = True, str(out / "bag"), "decentralized", 0, 0.0
    args.any_consumers = False
    code = run_sim(args)
    result = report(out / "bag", out / "replay")
    print(f"replay report: {', '.join(result['files'])}")
    return code


def run_bench(args) -> int:
    from tqdm import tqdm

    from lgtc_ros import bench
    from lgtc_ros.policy.shipped import NoShippedModel, default_model
    from lgtc_ros.safety import bench_cbf

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
    rows = []
    with tqdm(desc="bench", file=sys.stderr, disable=args.quiet) as bar:
        def note(msg):
            bar.set_postfix_str(msg)
            bar.update()

        if "sim" in args.only:
            note("simulator")
            rows += bench.bench_simulator(bench.default_scenario(), batches=args.batches)
        if "assignment" in args.only:
            rows += bench.bench_assignment(instances=args.instances, cvxpy_instances=args.cvxpy_instances,
                                           cvxpy_time_limit=args.cvxpy_time_limit, progress=note)
        if "cbf" in args.only:
            note("cbf")
            rows += bench_cbf()
        if "policy" in args.only:
            note("policy step")
            rows += bench.bench_policy_step(model)
        if "runtime" in args.only:
            note("runtime N=50, 100")
            rows += bench.bench_runtime(model)
        if "collisions" in args.only:
            rows += bench.bench_collisions(model, episodes=args.episodes, progress=note)
        if "graph" in args.only:
            rows += bench.bench_graph(seconds=args.graph_seconds, progress=note)
        if "training" in args.only:
            log = model.with_name(model.stem + "_train_log.csv") if model else None
            if log is not None and log.is_file():
                rows += bench.bench_training(log)
    command = "lgtc " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "lgtc bench"
    if not args.no_write:
        path = bench.append_report(rows, command, args.report, machine_info)
        print(f"appended to {path}", file=sys.stderr)
    print(to_json({"machine": bench.machine(), "rows": rows}) if args.json else bench.format_rows(rows))
    return 0


def run_train(args) -> int:
    if args.algo in ("vdn", "qmix"):  # the SAC-based value-decomposition peers
        from lgtc_ros.train.sac_mix import SacArgs as Args
        from lgtc_ros.train.sac_mix import train as sac_train

        if args.resume:
            raise SystemExit(f"lgtc: --resume is not supported for {args.algo} (off-policy replay is not checkpointed)")
        train = lambda a, resume, show_progress: sac_train(a, show_progress)  # noqa: E731
    else:
        from lgtc_ros.train.ippo import Args, train

    fields = {f.name: f for f in dataclasses.fields(Args)}
    overrides = {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        if key not in fields or key in ("algo", "scenario", "total_steps", "seed", "out"):
            raise SystemExit(f"lgtc: --set {key}: not a trainer setting (see `lgtc train --help`)")
        try:
            overrides[key] = _parse_setting(fields[key].default, value)
        except ValueError as exc:
            raise SystemExit(f"lgtc: --set {item}: {exc}") from None
    train_args = Args(algo=args.algo, scenario=args.scenario, total_steps=args.steps, seed=args.seed,
                      out=args.out, **overrides)
    try:
        train_args.validate()
        status = train(train_args, resume=args.resume, show_progress=not args.quiet)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise SystemExit(f"lgtc: {exc}") from None
    if status == "done":
        print(f"trained policy: {args.out}/policy.pt (log {args.out}/train_log.csv, curve {args.out}/learning_curve.png)")
    return 0 if status == "done" else 130


def _parse_setting(default, text: str):
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError("expected true or false")
        return text.lower() in ("true", "1")
    if isinstance(default, tuple):
        return tuple(int(v) for v in text.split(","))
    return type(default)(text)


def run_compare(args) -> int:
    from lgtc_ros.plots import compare_curves_png

    logs = {}
    for item in args.logs:
        label, sep, path = item.partition("=")
        if not sep:
            label, path = Path(item).parent.name, item
        if not Path(path).is_file():
            raise SystemExit(f"lgtc: no training log at {path}")
        logs[label] = path
    print(f"wrote {compare_curves_png(logs, args.out, args.title)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lgtc", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, json_help="print the summary as one JSON object on stdout instead of a table"):
        p.add_argument("--json", action="store_true", help=json_help)
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("sim", help="roll out a policy on a scenario and summarize")
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="YAML file or bundled name (default: %(default)s)")
    p.add_argument("--policy", default="expert", help="expert | random | path to a model .pt (default: %(default)s)")
    p.add_argument("--episodes", type=int, default=10, help="episodes to run (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode draws (default: %(default)s)")
    p.add_argument("--out", default=None, help="write trajectory.png, steps.csv, summary.json here")
    p.add_argument("--any-consumers", action="store_true",
                   help="fly a model on a scenario with a different number of consumers")
    p.add_argument("--runtime", action="store_true",
                   help="run through the per-drone runtime (radio, CBF) instead of the batched evaluator")
    p.add_argument("--record", default=None, metavar="BAG", help="record episode 0 as a rosbag2 (implies --runtime)")
    p.add_argument("--cbf", default="decentralized", choices=["decentralized", "centralized", "off"],
                   help="safety filter in the runtime (default: %(default)s)")
    p.add_argument("--latency", type=int, default=0, help="radio latency in extra ticks (runtime)")
    p.add_argument("--drop", type=float, default=0.0, help="radio drop probability (runtime)")
    common(p)
    p.set_defaults(func=run_sim)

    p = sub.add_parser("compare", help="overlay learning curves of several training runs")
    p.add_argument("logs", nargs="+", metavar="[LABEL=]TRAIN_LOG_CSV")
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--title", default="", help="figure title")
    p.set_defaults(func=run_compare)

    p = sub.add_parser("replay", help="report on a recorded mission; --policy re-runs it open-loop")
    p.add_argument("bag", help="rosbag2 folder written by `lgtc sim --record`")
    p.add_argument("--policy", default=None, help="model to replay the recorded observations through")
    p.add_argument("--out", default=None, help="report folder (default: <bag>_report beside the bag)")
    p.add_argument("--any-consumers", action="store_true", help="allow a model trained with another M")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run_replay)

    p = sub.add_parser("eval", help="evaluate a policy or the expert over K episodes")
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="YAML file or bundled name (default: %(default)s)")
    p.add_argument("--policy", default="expert", help="expert | random | path to a model .pt")
    p.add_argument("--episodes", type=int, default=100, help="episodes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for episodes.csv, summary.md, summary.json")
    p.add_argument("--any-consumers", action="store_true",
                   help="fly a model on a scenario with a different number of consumers")
    common(p)
    p.set_defaults(func=run_eval)

    p = sub.add_parser("sweep", help="Fig. 4: policies over team size N and consumer count M")
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="base mission (default: %(default)s)")
    p.add_argument("--policy", action="append", required=True,
                   help="expert | random | model .pt; repeat for several (models fly any M)")
    p.add_argument("--agents", type=int, nargs="*", default=[5, 10, 20, 30, 50], help="N values (M fixed)")
    p.add_argument("--consumers", type=int, nargs="*", default=[2, 4, 6, 8, 10], help="M values (N fixed)")
    p.add_argument("--fixed-agents", type=int, default=None, help="N of the consumer axis (default: the base's)")
    p.add_argument("--fixed-consumers", type=int, default=None, help="M of the agent axis (default: the base's)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per case (the paper: 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for sweep.csv, sweep.md, fig4.png")
    common(p, "print the rows as one JSON object on stdout")
    p.set_defaults(func=run_sweep)

    p = sub.add_parser("export", help="TorchScript per-drone step + metadata JSON from a trained policy")
    p.add_argument("--policy", required=True, help="a run's policy.pt (or checkpoint.pt)")
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="scenario the model is for (limits in the JSON)")
    p.add_argument("--out", required=True, help="output .pt path (the .json goes beside it)")
    p.add_argument("--metrics", default=None, help="JSON file of final metrics to embed (e.g. an eval summary)")
    p.set_defaults(func=run_export)

    p = sub.add_parser("demo", help="default mission (10 drones, 4 consumers) via the runtime, CBF, bag, replay")
    p.add_argument("--episodes", type=int, default=1, help="episodes to summarize (default: %(default)s)")
    p.add_argument("--out", default=None, help="output folder (default: runs/demo-<time>)")
    common(p)
    p.set_defaults(func=run_demo)

    p = sub.add_parser("train", help="train LGTC-IPPO or vanilla IPPO with the batched simulator")
    p.add_argument("--algo", default="lgtc-ippo", choices=["lgtc-ippo", "ippo", "momappo", "vdn", "qmix"])
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="YAML file or bundled name (default: %(default)s)")
    p.add_argument("--steps", type=int, default=3_000_000, help="environment steps (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run folder (log, checkpoints, policy.pt, curve)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="other trainer settings, e.g. learning_rate=1e-4 num_envs=16 (see train/ippo.py Args)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)

    p = sub.add_parser("bench", help="benchmarks; appends to docs/BENCHMARKS.md")
    kinds = ["sim", "assignment", "cbf", "policy", "runtime", "collisions", "graph", "training"]
    p.add_argument("--only", nargs="+", default=kinds, choices=kinds, help="which benches (default: all)")
    p.add_argument("--model", default=None, help="exported model for policy/runtime/collision benches "
                   "(default: models/lgtc_paper_10x4.pt)")
    p.add_argument("--episodes", type=int, default=100, help="seeded episodes of the collision bench")
    p.add_argument("--graph-seconds", type=float, default=8.0,
                   help="seconds of mission the ROS graph bench watches per case (the missions last 10 s)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024], help="simulator batch sizes")
    p.add_argument("--instances", type=int, default=10, help="assignment instances per N (default: %(default)s)")
    p.add_argument("--cvxpy-instances", type=int, default=5, help="of which also solved by plain cvxpy+SCIP")
    p.add_argument("--cvxpy-time-limit", type=float, default=60.0, help="seconds per plain cvxpy solve")
    p.add_argument("--report", default="docs/BENCHMARKS.md", help="markdown file to append to")
    p.add_argument("--no-write", action="store_true", help="do not append to the report")
    common(p, "print all rows as one JSON object on stdout")
    p.set_defaults(func=run_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
