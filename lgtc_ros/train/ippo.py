"""LGTC-IPPO and vanilla IPPO (paper §III.C, eq. 12-15), CleanRL style: read it top to bottom.

Order: config, pure functions (GAE, PPO losses), the training loop. Independent PPO: every
agent has its own value estimate from its own reward, parameters are shared across agents.
The recurrent consensus state is carried through the rollout and stored; updates recompute one
step from the stored state (truncated back-propagation of length 1), so minibatches are
independent env-steps (each with all its N agents, which the graph filter couples).

    lgtc train --algo lgtc-ippo --scenario paper_10x4 --steps 3000000 --seed 0 --out runs/lgtc

Speed (one CPU thread; the defaults are Table I's). An update is ~85 % learning: 4 epochs of
forward + backward over 6400 env-steps x 10 agents, where the time goes to the final MLPs
[197 -> 256 -> 256] and to the agent-relative DeepSets R, whose layers run on [B,N,M,r] rows
(skinny fp32 GEMMs and elementwise passes over ~1e6 values). The fast recipe, same algorithm:

    lgtc train ... --set minibatch_size=256 learning_rate=8e-4 bf16=true

minibatches of 256 env-steps (4x Table I's 64, so a quarter of the Adam steps) with the learning
rate scaled linearly (4x), and bfloat16 matrix products in those two places (`bf16`; only where
the CPU has bf16 instructions). On this project's 2-core machine: 8.6-9.1 s per update instead of
20.4 s (one thread), and no less return per env-step: the seed-0 run on paper_10x4 evaluates at
>= 95 % of the expert's return from update 75 (480k env-steps) and at 102 % after 1,024,000.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from torch.distributions import Normal

# the on-disk formats (and rebuilding the networks from them) live beside the policy, so that
# deployment code loads a run without importing this trainer; re-exported here for callers
from lgtc_ros.outputs import atomic_write_text
from lgtc_ros.policy.checkpoint import build_model, load_checkpoint, load_policy, save_checkpoint, save_policy
from lgtc_ros.policy.heads import obs_dict
from lgtc_ros.policy.lgtc import row_normalized
from lgtc_ros.scenario import load_scenario, resolve_scenario
from lgtc_ros.train.runner import (CsvLog, add_step_terms, clone_tree, episode_columns, learning_curve_png, plan,
                                   prepare_run_dir, resumed_args, rng_state, seed_everything, set_rng_state,
                                   signals_deferred, stop_on_signals)
from lgtc_ros.world import TERMS, World

ALGOS = ("lgtc-ippo", "ippo", "momappo")


@dataclass
class Args:
    algo: str = "lgtc-ippo"
    """lgtc-ippo (consensus state + contractivity penalty), ippo (vanilla: no state, §IV) or
    momappo (the MOMAPPO peer of §IV: no state, attention-weighted consumer features, a value per
    consumer whose attention-weighted sum is trained on the return)."""
    scenario: str = "paper_10x4"
    """Scenario YAML path or bundled name."""
    total_steps: int = 3_000_000
    """Environment steps to train for (one env step = N agent transitions)."""
    seed: int = 0
    out: str = "runs/train"
    """Output folder: train_log.csv, checkpoint.pt, policy.pt, learning_curve.png, config.json."""
    num_envs: int = 32
    """Parallel envs of the batched simulator."""
    num_steps: int = 200
    """Steps per env per rollout (32 x 200 = 6400 ~ Table I's 6144)."""
    learning_rate: float = 2e-4
    anneal_lr: bool = False
    gamma: float = 0.99
    gae_lambda: float = 0.95
    update_epochs: int = 4
    minibatch_size: int = 64
    """Env-steps per minibatch (Table I batch 64); each carries all N agents."""
    clip_coef: float = 0.2
    ent_coef: float = 0.0
    """Table I uses no entropy bonus for the PPO family."""
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    alpha: float = 1.0
    """Weight of the contractivity penalty Pi of eq. (14)-(15)."""
    margin: float = 0.1
    """Required contraction rate c >= margin."""
    feature_dim: int = 64
    state_dim: int = 64
    hidden: tuple[int, ...] = (256, 256)
    unfolds: int = 3
    ode_dt: float = 1.0 / 3.0
    zero_s: bool = False
    """Ablation: S = 0 in both networks' graph filter and consensus coupling (`LGTCConfig.zero_s`);
    saved with the policy, so it flies as trained. Default off."""
    clusters: bool = False
    """lgtc-ippo only: the hierarchical variant (`LGTCConfig.clusters`, issue 12). With init_from a
    flat model, its weights are loaded and the cluster weights start at zero."""
    bf16: bool = False
    """bfloat16 matrix products (torch.autocast) where a step spends its time: the final MLPs
    and the agent-relative DeepSets R ([B,N,M,r] rows), in rollouts and updates alike. Inputs,
    outputs, states, log-probabilities, losses, weights and optimizer stay fp32, and the policy
    flies in fp32. Pays on CPUs with bf16 instructions (avx512_bf16, AMX)."""
    init_from: str = ""
    """Start from the networks of this trainer output (a run's policy.pt or checkpoint.pt, same
    algo and sizes): a model trained on a small team continued on a larger one (issue 12). The
    optimizer, the step count and the log start fresh."""
    threads: int = 1
    """torch threads (`lgtc train --threads`; the cores are usually shared)."""
    checkpoint_every: int = 10
    """Updates between checkpoints on disk."""

    def validate(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo = {self.algo!r}: must be one of {ALGOS}")
        for name in ("total_steps", "num_envs", "num_steps", "update_epochs", "minibatch_size", "threads",
                     "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)}: must be >= 1")
        if self.clusters and self.algo != "lgtc-ippo":
            raise ValueError(f"clusters: the hierarchical variant is lgtc-ippo's (algo = {self.algo!r})")
        if self.minibatch_size > self.num_envs * self.num_steps:
            raise ValueError(f"minibatch_size = {self.minibatch_size}: larger than a rollout "
                             f"({self.num_envs} x {self.num_steps} env-steps)")


# ----------------------------------------------------------------------------- pure functions


def gae(rewards: Tensor, values: Tensor, dones: Tensor, last_value: Tensor, gamma: float,
        lam: float) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation. rewards/values/dones [T,...]; dones[t] = 1 when the
    episode ended after step t (no bootstrap across it); last_value [...] = V(s_T).
    Returns (advantages, returns) [T,...]."""
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros_like(last_value)
    for t in reversed(range(rewards.shape[0])):
        next_value = last_value if t == rewards.shape[0] - 1 else values[t + 1]
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * nonterminal - values[t]
        lastgaelam = delta + gamma * lam * nonterminal * lastgaelam
        advantages[t] = lastgaelam
    return advantages, advantages + values


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def ppo_losses(new_logprob: Tensor, old_logprob: Tensor, advantages: Tensor, new_value: Tensor,
               returns: Tensor, clip_coef: float, mask: Tensor) -> dict[str, Tensor]:
    """Clipped surrogate (eq. 12, as a loss to minimize) and value loss (eq. 13), over `mask`."""
    logratio = new_logprob - old_logprob
    ratio = logratio.exp()
    pg1 = -advantages * ratio
    pg2 = -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)
    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1) - logratio, mask)
        clipfrac = masked_mean(((ratio - 1).abs() > clip_coef).float(), mask)
    return {
        "pg_loss": masked_mean(torch.maximum(pg1, pg2), mask),
        "v_loss": 0.5 * masked_mean((new_value - returns) ** 2, mask),
        "approx_kl": approx_kl,
        "clipfrac": clipfrac,
    }


def normalize(adv: Tensor, mask: Tensor) -> Tensor:
    mean = masked_mean(adv, mask)
    std = masked_mean((adv - mean) ** 2, mask).sqrt()
    return (adv - mean) / (std + 1e-8)


MINIBATCH_KEYS = ("pos", "supply", "consumer_pos", "demand", "S", "action", "logprob", "value", "active",
                  "x_pi", "psi_pi", "x_v", "psi_v", "pos_msg", "valid")
"""Per env-step tensors of a rollout that a minibatch carries (plus `adv` and `ret`, and the
hierarchical variant's extra recurrent state: `minibatch_keys`)."""


def minibatch_keys(model) -> tuple[str, ...]:
    """MINIBATCH_KEYS plus whatever else `model` carries from step to step."""
    return MINIBATCH_KEYS + tuple(k for k in model.state_keys() if k not in MINIBATCH_KEYS)


def minibatch_loss(model, mb: dict[str, Tensor], kinds: Tensor, a: Args) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss of eq. (14) on a minibatch of env-steps (each with all N agents): one step of both
    nets recomputed from the stored recurrent state. Returns (loss, detached statistics)."""
    od = {"pos": mb["pos"], "supply": mb["supply"], "consumer_pos": mb["consumer_pos"], "demand": mb["demand"],
          "kinds": kinds}
    state = {k: mb[k] for k in model.state_keys()}
    mean, log_std, value, _, aux = model.step(od, state, mb["S"])
    dist = Normal(mean, log_std.exp())
    new_logprob = dist.log_prob(mb["action"]).sum(-1)
    entropy = masked_mean(dist.entropy().sum(-1), mb["active"])
    losses = ppo_losses(new_logprob, mb["logprob"], normalize(mb["adv"], mb["active"]), value, mb["ret"],
                        a.clip_coef, mb["active"])
    rows, cluster_rows = mb["S"].sum(-1), aux.get("cluster_rows")
    pen_pi = model.actor.contractivity_penalty(model.actor.contraction_rate(aux["f"], rows, cluster_rows), a.margin) \
        if model.cfg.consensus else torch.zeros(())
    pen_v = model.critic.contractivity_penalty(model.critic.contraction_rate(aux["f_v"], rows, cluster_rows),
                                               a.margin) if model.cfg.consensus else torch.zeros(())
    # eq. (14): J_pi + alpha Pi_pi and J_V + alpha Pi_V; both penalties >= 0, they only
    # ever push back toward the constraints of Theorem 1
    loss = (losses["pg_loss"] - a.ent_coef * entropy + a.alpha * pen_pi
            + a.vf_coef * (losses["v_loss"] + a.alpha * pen_v))
    stats = {**losses, "entropy": entropy, "penalty": pen_pi + pen_v}
    return loss, {k: v.detach().float() for k, v in stats.items()}


# ----------------------------------------------------------------------------- training loop

LOG_FIELDS = ["update", "env_steps", "agent_steps", "wall_s", "sps_env", "sps_agent", "lr",
              "episode_return", "episodes", *[f"ret_{k}" for k in TERMS], "pg_loss", "v_loss",
              "entropy", "approx_kl", "clipfrac", "explained_variance", "contraction_min",
              "contraction_mean", "tau_min", "penalty"]


def _initial_weights(path: str, model: torch.nn.Module, args: Args) -> dict:
    """`model`'s state dict with the weights of trainer output `path`, refused (one line) unless
    its networks are the ones `args` builds: the same algo and sizes (zero_s switches inputs off,
    not weights). A flat model may start the hierarchical variant (`clusters`): the cluster
    weights keep their initial values."""
    theirs_model, ck = load_policy(path)
    theirs = ck.get("args", {})
    keys = ("algo", "feature_dim", "state_dim", "hidden", "unfolds")
    differ = [f"{k} {theirs.get(k)!r} vs {getattr(args, k)!r}" for k in keys
              if k in theirs and (tuple(theirs[k]) if k == "hidden" else theirs[k]) != getattr(args, k)]
    if theirs.get("clusters", False) and not args.clusters:
        differ.append("clusters True vs False")
    if differ:
        raise ValueError(f"init_from = {path}: other networks than this run's ({'; '.join(differ)})")
    return {**model.state_dict(), **theirs_model.state_dict()}


class Trainer:
    """Holds everything a checkpoint must restore for the next update to be bit-identical."""

    def __init__(self, args: Args):
        args.validate()
        self.args = args
        self.out = Path(args.out)
        self.scenario = load_scenario(resolve_scenario(args.scenario))
        seed_everything(args.seed, args.threads)
        s = self.scenario
        self.world = World(s, n_envs=args.num_envs, seed=args.seed)
        self.model = build_model(args, s.n_resources)
        if args.init_from:
            self.model.load_state_dict(_initial_weights(args.init_from, self.model, args))
        self.model.use_bf16(args.bf16)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
        self.state = self.model.initial_state(args.num_envs, s.n_agents)
        self.update, self.env_steps, self.wall = 0, 0, 0.0
        self.ep_terms = {k: torch.zeros(args.num_envs, s.n_agents) for k in TERMS}
        self.log = CsvLog(self.out / "train_log.csv", LOG_FIELDS)

    # -------------------------------------------------------------- checkpoints

    def snapshot(self) -> dict:
        w = self.world
        return {
            "args": asdict(self.args), "update": self.update, "env_steps": self.env_steps, "wall": self.wall,
            "model": {k: v.clone() for k, v in self.model.state_dict().items()},
            "opt": clone_tree(self.opt.state_dict()),
            "world": w.state_dict(), "world_gen": w.gen.get_state(),
            "state": {k: v.clone() for k, v in self.state.items()},
            "ep_terms": {k: v.clone() for k, v in self.ep_terms.items()}, "rng": rng_state(),
        }

    def restore(self, ck: dict) -> None:
        self.update, self.env_steps, self.wall = ck["update"], ck["env_steps"], ck["wall"]
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["opt"])
        self.world.load_state_dict(ck["world"])
        self.world.gen.set_state(ck["world_gen"])
        self.state = {k: v.clone() for k, v in ck["state"].items()}
        self.ep_terms = {k: v.clone() for k, v in ck["ep_terms"].items()}
        set_rng_state(ck["rng"])
        self.log.truncate_after(self.update)

    # -------------------------------------------------------------- one update

    def collect(self, on_step: Callable[[int], None] | None = None) -> dict[str, Tensor]:
        """One rollout of num_steps x num_envs env-steps with the current policy; `on_step(n)` is
        told of every vectorized step (n = num_envs env-steps)."""
        a, s, w, model = self.args, self.scenario, self.world, self.model
        buf: dict[str, list[Tensor]] = {}
        finished: list[dict[str, float]] = []

        def put(name: str, value: Tensor) -> None:
            buf.setdefault(name, []).append(value)

        for _ in range(a.num_steps):
            obs = w.observe()
            od = obs_dict(obs)
            S = row_normalized(obs.neighbours)
            with torch.no_grad():
                mean, log_std, value, new_state, aux = model.step(od, self.state, S)
                action = mean + log_std.exp() * torch.randn_like(mean)
                logprob = Normal(mean, log_std.exp()).log_prob(action).sum(-1)
                contraction = model.actor.contraction_rate(aux["f"], S.sum(-1), aux.get("cluster_rows")) \
                    if model.cfg.consensus \
                    else torch.zeros(a.num_envs)
            for k in ("pos", "supply", "consumer_pos", "demand"):
                put(k, od[k].clone())  # the world resets some tensors in place
            for k, v in self.state.items():
                put(k, v.clone())
            put("S", S), put("action", action), put("logprob", logprob), put("value", value)
            put("active", obs.active.float())  # .float() copies
            put("contraction", contraction)
            res = w.step(action * s.v_max)
            put("reward", res.reward)
            put("done", res.done.float())
            finished += add_step_terms(self.ep_terms, res.terms, res.done, obs.active)
            self.state = new_state
            if res.done.any():
                done = res.done
                w.reset(done)
                for k in self.state:
                    self.state[k][done] = 0.0
            if on_step is not None:
                on_step(a.num_envs)
        self.env_steps += a.num_steps * a.num_envs
        rollout = {k: torch.stack(v) for k, v in buf.items()}
        obs = w.observe()
        with torch.no_grad():
            last_value = model.value(obs_dict(obs), self.state, row_normalized(obs.neighbours))
        rollout["last_value"] = last_value
        rollout["finished"] = finished  # type: ignore[assignment]
        return rollout

    def learn(self, ro: dict) -> dict[str, float]:
        a, model = self.args, self.model
        dones = ro["done"][..., None].expand_as(ro["reward"])
        adv, ret = gae(ro["reward"], ro["value"], dones, ro["last_value"], a.gamma, a.gae_lambda)
        T, B = ro["reward"].shape[:2]
        flat = lambda x: x.reshape(T * B, *x.shape[2:])  # noqa: E731
        data = {k: flat(ro[k]) for k in minibatch_keys(model)}
        data["adv"], data["ret"] = flat(adv), flat(ret)
        kinds = self.world.kinds
        stats: list[Tensor] = []
        for _ in range(a.update_epochs):
            order = torch.randperm(T * B)
            for start in range(0, T * B, a.minibatch_size):
                idx = order[start:start + a.minibatch_size]
                mb = {k: v[idx] for k, v in data.items()}
                loss, mb_stats = minibatch_loss(model, mb, kinds, a)
                self.opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), a.max_grad_norm)
                self.opt.step()
                stats.append(torch.stack(list(mb_stats.values())))
        y_pred, y_true = data["value"].flatten(), data["ret"].flatten()
        var = float(y_true.var())
        out = dict(zip(mb_stats, torch.stack(stats).double().mean(0).tolist()))
        out["explained_variance"] = float("nan") if var == 0 else 1 - float((y_true - y_pred).var()) / var
        return out

    def run(self, progress: Callable[[int, dict], None] | None = None,
            on_step: Callable[[int], None] | None = None, on_phase: Callable[[str], None] | None = None) -> str:
        """Train until total_steps. Returns 'done' or 'interrupted' (Ctrl-C, even mid-rollout, saves
        the checkpoint of the last finished update). `progress(env_steps, row)` after each update,
        `on_step(n)` during the rollout, `on_phase(text)` when collection or learning starts."""
        a = self.args
        boundary = self.snapshot()
        try:
            while self.env_steps < a.total_steps:
                t0 = time.perf_counter()
                if a.anneal_lr:
                    frac = 1.0 - self.env_steps / a.total_steps
                    self.opt.param_groups[0]["lr"] = frac * a.learning_rate
                self.update += 1
                if on_phase:
                    on_phase(f"update {self.update}: collecting")
                ro = self.collect(on_step)
                if on_phase:
                    on_phase(f"update {self.update}: learning")
                stats = self.learn(ro)
                dt = time.perf_counter() - t0
                self.wall += dt
                row = self._log_row(ro, stats, dt)
                with signals_deferred():  # the log row and the snapshot of this update: both or neither
                    self.log.write(row)
                    boundary = self.snapshot()
                    if self.update % a.checkpoint_every == 0:
                        save_checkpoint(self.out / "checkpoint.pt", boundary)
                if progress:
                    progress(a.num_steps * a.num_envs, row)
        except KeyboardInterrupt:
            save_checkpoint(self.out / "checkpoint.pt", boundary)
            return "interrupted"
        save_checkpoint(self.out / "checkpoint.pt", boundary)
        self.finish()
        return "done"

    def _log_row(self, ro: dict, stats: dict, dt: float) -> dict:
        a, n = self.args, self.scenario.n_agents
        finished = ro["finished"]
        row = {
            "update": self.update, "env_steps": self.env_steps, "agent_steps": self.env_steps * n,
            "wall_s": self.wall, "sps_env": a.num_steps * a.num_envs / dt,
            "sps_agent": a.num_steps * a.num_envs * n / dt, "lr": self.opt.param_groups[0]["lr"],
            **episode_columns(finished),
            "contraction_min": float(ro["contraction"].min()), "contraction_mean": float(ro["contraction"].mean()),
            "tau_min": float(self.model.actor.tau.detach().min()) if self.model.cfg.consensus else float("nan"),
            **stats,
        }
        return row

    def finish(self) -> None:
        """Final policy, config and learning curve beside the log (each written whole, then renamed)."""
        save_policy(self.out / "policy.pt", self.model, self.args, self.scenario.source)
        atomic_write_text(self.out / "config.json", json.dumps(asdict(self.args), indent=2) + "\n")
        learning_curve_png(self.out / "train_log.csv", self.out / "learning_curve.png",
                           f"{self.args.algo} on {self.scenario.name} (seed {self.args.seed})", TERMS)


def train(args: Args, resume: bool = False, show_progress: bool = True, force: bool = False) -> str:
    """Entry point of `lgtc train`: progress bar with reward and speed; returns the run status.

    A fresh run refuses a folder holding a run or a log (`force`: start over); `resume` continues
    the checkpoint in `args.out` to `args.total_steps` and refuses settings that contradict the
    run's (listed); only `RUNTIME_SETTINGS` may change. A lock file refuses a second trainer."""
    from lgtc_ros.outputs import Lock

    out = Path(args.out)
    with Lock(out):
        return _train(args, out, resume, show_progress, force)


def _train(args: Args, out: Path, resume: bool, show_progress: bool, force: bool) -> str:
    from tqdm import tqdm

    if resume:  # (runs from before the bf16 option trained in fp32)
        args, ck = resumed_args(out, args, older_runs={"bf16": False})
    else:
        prepare_run_dir(out, force)
    args.validate()
    trainer = Trainer(args)
    if resume:
        trainer.restore(ck)
    stop_on_signals()
    print(plan(args, trainer.env_steps), flush=True)
    atomic_write_text(out / "config.json", json.dumps(asdict(args), indent=2) + "\n")
    per = args.num_envs * args.num_steps
    total = max(math.ceil(args.total_steps / per), 0) * per
    with tqdm(total=total, initial=min(trainer.env_steps, total), unit="step",
              desc=f"{args.algo} {trainer.scenario.name}", disable=not show_progress, smoothing=0.3) as bar:
        def on_step(n: int) -> None:
            bar.update(n)

        def on_phase(text: str) -> None:
            bar.set_description_str(f"{args.algo} {trainer.scenario.name} ({text})")

        def progress(steps: int, row: dict) -> None:
            ret = row["episode_return"]
            bar.set_postfix(ret=f"{ret:.2f}" if math.isfinite(ret) else "-", sps=f"{row['sps_env']:.0f}",
                            kl=f"{row.get('approx_kl', 0):.3f}", c=f"{row['contraction_min']:.2f}")
            bar.update(min(trainer.env_steps, total) - bar.n)  # the rollout's steps were counted as they ran

        status = trainer.run(progress, on_step=on_step, on_phase=on_phase)
    if status == "interrupted":
        saved = load_checkpoint(out / "checkpoint.pt")["update"]
        print(f"\ninterrupted: checkpoint saved at update {saved} in {out / 'checkpoint.pt'}; continue with --resume")
    return status
