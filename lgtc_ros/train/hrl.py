"""The hierarchical grouping peer (arXiv 2501.06554), CleanRL style: read it top to bottom.

    lgtc train --algo hrl-grouping --scenario paper_10x4 --steps 1024000 --seed 0 --out runs/hrl

Networks and the exported step: `lgtc_ros/policy/hrl.py` (its docstring has the design). Training is
option-critic in its PPO form (PPOC), with the centralized DeepSets critic of CTDE:

* rollout: each agent keeps its option (consumer) omega until it terminates, with probability
  beta(s, omega) (forced when it has none or the option left its initiation set:
  policy/hrl.py); a new option is sampled from pi_Omega over the options
  available to it; the velocity is sampled from the intra-option policy pi(a | s, omega).
* critic: Q(s, i, m) for every option; trained on the GAE(lambda) return of the option actually
  held (values Q(s_t, omega_t), bootstrap from U(s_T, omega) = (1 - beta) Q + beta V_Omega,
  V_Omega(s) = sum_m pi_Omega(m | s) Q(s, m)).
* low level: PPO clipped surrogate on the action with the GAE advantage.
* high level: PPO clipped surrogate on the option choice, at the steps where a choice was made,
  with the option advantage  G_t - V_Omega(s_t);  plus an entropy bonus on pi_Omega.
* termination: the option-critic termination gradient, loss = beta(s_t, omega_{t-1})
  (A_Omega(s_t, omega_{t-1}) + xi), A_Omega = Q(s_t, omega_{t-1}) - V_Omega(s_t) (normalized),
  so an option worse than the average is dropped and xi (the deliberation cost) keeps options long.
* linear assignment (training only, centralized): at each step where some agent chooses, the
  joint grouping maximizing sum_i Q(s, i, m_i) with balanced capacities (each available consumer
  ceil(N / M) slots) by scipy.optimize.linear_sum_assignment; pi_Omega is distilled toward it by
  a cross-entropy whose weight anneals to 0 over the first half of the budget (the flown
  policy is its own).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torch.distributions import Categorical, Normal

from lgtc_ros.outputs import atomic_write_text
from lgtc_ros.policy.checkpoint import load_checkpoint, save_checkpoint
from lgtc_ros.policy.hrl import ALGO, HRLGrouping, config_from_args, outside_initiation, save_hrl_policy
from lgtc_ros.policy.lgtc import crowding
from lgtc_ros.scenario import load_scenario, resolve_scenario
from lgtc_ros.train.ippo import gae, masked_mean, normalize
from lgtc_ros.train.runner import (CsvLog, add_step_terms, clone_tree, episode_columns, learning_curve_png, plan,
                                   prepare_run_dir, resumed_args, rng_state, seed_everything, set_rng_state,
                                   signals_deferred, stop_on_signals)
from lgtc_ros.world import TERMS, World


@dataclass
class Args:
    algo: str = ALGO
    scenario: str = "paper_10x4"
    total_steps: int = 1_024_000
    seed: int = 0
    out: str = "runs/hrl"
    num_envs: int = 32
    num_steps: int = 200
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    update_epochs: int = 2
    minibatch_size: int = 128
    """Env-steps per minibatch (each with all N agents: the critic pools over them)."""
    clip_coef: float = 0.2
    vf_coef: float = 0.5
    option_coef: float = 1.0
    """Weight of the high-level (option) surrogate."""
    option_ent_coef: float = 0.01
    term_coef: float = 0.1
    """Weight of the termination loss."""
    deliberation_cost: float = 0.1
    """xi of the termination loss (in units of the normalized option advantage)."""
    lsa_coef: float = 0.2
    """Initial weight of the linear-assignment distillation (annealed linearly to 0)."""
    lsa_anneal_steps: int = 512_000
    """Env-steps over which the distillation weight falls to 0 (a fixed schedule: a resumed run
    with another --steps learns the same)."""
    max_grad_norm: float = 0.5
    feature_dim: int = 64
    hidden: tuple[int, ...] = (256, 256)
    """Intra-option (low-level) policy MLP."""
    option_hidden: tuple[int, ...] = (128, 128)
    critic_hidden: tuple[int, ...] = (128, 128)
    threads: int = 1
    checkpoint_every: int = 10

    def validate(self) -> None:
        if self.algo != ALGO:
            raise ValueError(f"algo = {self.algo!r}: this trainer is {ALGO}")
        for name in ("total_steps", "num_envs", "num_steps", "update_epochs", "minibatch_size", "threads",
                     "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)}: must be >= 1")
        if self.minibatch_size > self.num_envs * self.num_steps:
            raise ValueError(f"minibatch_size = {self.minibatch_size}: larger than a rollout "
                             f"({self.num_envs} x {self.num_steps} env-steps)")


# ----------------------------------------------------------------------------- pure functions


def clipped(new_logp: Tensor, old_logp: Tensor, adv: Tensor, clip: float,
            mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """PPO clipped surrogate (a loss) over `mask`, approx KL and clip fraction."""
    logratio = new_logp - old_logp
    ratio = logratio.exp()
    loss = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip))
    with torch.no_grad():
        kl = masked_mean((ratio - 1) - logratio, mask)
        frac = masked_mean(((ratio - 1).abs() > clip).float(), mask)
    return masked_mean(loss, mask), kl, frac


def balanced_assignment(q: np.ndarray, avail: np.ndarray, active: np.ndarray) -> np.ndarray:
    """The grouping maximizing sum_i q[i, m_i] with every available consumer given ceil(n / M_avail)
    slots (linear_sum_assignment on the slot-expanded matrix). q [N,M], avail [N,M] bool, active [N]
    bool. Returns m_i [N] (-1 for inactive agents)."""
    n, m = q.shape
    out = np.full(n, -1, dtype=np.int64)
    rows = np.flatnonzero(active)
    if rows.size == 0:
        return out
    open_cols = np.flatnonzero(avail[rows].any(0)) if avail[rows].any() else np.arange(m)
    slots = math.ceil(rows.size / open_cols.size)
    cols = np.tile(open_cols, slots)
    cost = -q[np.ix_(rows, cols)] + 1e3 * ~avail[np.ix_(rows, cols)]
    r, c = linear_sum_assignment(cost)
    out[rows[r]] = cols[c]
    out[rows[r][~avail[rows[r], cols[c]]]] = -1  # a slot outside the agent's initiation set: no target
    return out


def termination_loss(beta: Tensor, term_adv: Tensor, xi: float, mask: Tensor) -> Tensor:
    """Option-critic termination gradient as a loss: beta (A_Omega + xi), A_Omega treated as constant."""
    return masked_mean(beta * (term_adv + xi).detach(), mask)


# ----------------------------------------------------------------------------- training loop

LOG_FIELDS = ["update", "env_steps", "agent_steps", "wall_s", "sps_env", "sps_agent", "lr",
              "episode_return", "episodes", *[f"ret_{k}" for k in TERMS], "pg_loss", "v_loss",
              "entropy", "approx_kl", "clipfrac", "explained_variance", "option_loss", "option_entropy",
              "option_kl", "term_loss", "lsa_loss", "lsa_agree", "beta_mean", "switch_rate", "forced_rate", "lsa_coef"]
OBS_KEYS = ("pos", "supply", "consumer_pos", "demand")
MB_KEYS = (*OBS_KEYS, "opt_prev", "agg_opt", "crowd", "opt", "chose", "has_prev", "action", "logp", "logp_opt",
           "active", "term_adv", "adv_opt", "lsa_target", "value")


class Trainer:
    def __init__(self, args: Args):
        args.validate()
        self.args = args
        self.out = Path(args.out)
        self.scenario = load_scenario(resolve_scenario(args.scenario))
        seed_everything(args.seed, args.threads)
        s = self.scenario
        self.world = World(s, n_envs=args.num_envs, seed=args.seed)
        self.model = HRLGrouping(config_from_args(args, s.n_resources, s.n_consumers))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=args.learning_rate, eps=1e-5)
        self.state = self.initial_state()
        self.update, self.env_steps, self.wall = 0, 0, 0.0
        self.ep_terms = {k: torch.zeros(args.num_envs, s.n_agents) for k in TERMS}
        self.log = CsvLog(self.out / "train_log.csv", LOG_FIELDS)

    def initial_state(self) -> dict[str, Tensor]:
        b, n, m = self.args.num_envs, self.scenario.n_agents, self.scenario.n_consumers
        return {"opt": torch.zeros(b, n, m), "pos_msg": torch.zeros(b, n, 2), "valid": torch.zeros(b, n)}

    # -------------------------------------------------------------- checkpoints

    def snapshot(self) -> dict:
        w = self.world
        return {
            "args": asdict(self.args), "update": self.update, "env_steps": self.env_steps, "wall": self.wall,
            "model": {k: v.clone() for k, v in self.model.state_dict().items()}, "opt": clone_tree(self.opt.state_dict()),
            "world": w.state_dict(), "world_gen": w.gen.get_state(),
            "state": {k: v.clone() for k, v in self.state.items()},
            "ep_terms": {k: v.clone() for k, v in self.ep_terms.items()}, "rng": rng_state(),
            "hrl": asdict(self.model.cfg), "v_max": self.scenario.v_max,
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

    def _inputs(self, obs) -> dict[str, Tensor]:
        """Local inputs of every agent from the observation and the carried messages."""
        st = self.state
        mask = (obs.neighbours & (st["valid"] > 0)[:, None, :]).float()
        s = mask / mask.sum(-1, keepdim=True).clamp_min(1.0)
        crowd = crowding(obs.pos[:, :, None, :] - st["pos_msg"][:, None, :, :], mask, self.model.cfg.crowd_radius)
        return {"pos": obs.pos, "supply": obs.supply, "consumer_pos": obs.consumer_pos, "demand": obs.demand,
                "opt_prev": st["opt"], "agg_opt": s @ st["opt"], "crowd": crowd}

    def _encode(self, d: dict[str, Tensor]):
        return self.model.encode(d["pos"], d["supply"], d["consumer_pos"][:, None], d["demand"][:, None],
                                 self.world.kinds, d["opt_prev"], d["agg_opt"], d["crowd"])

    def collect(self, on_step: Callable[[int], None] | None = None) -> dict:
        a, s, w, model = self.args, self.scenario, self.world, self.model
        buf: dict[str, list[Tensor]] = {}
        finished: list[dict[str, float]] = []
        m = s.n_consumers

        def put(name: str, value: Tensor) -> None:
            buf.setdefault(name, []).append(value)

        for _ in range(a.num_steps):
            obs = w.observe()
            d = self._inputs(obs)
            active = obs.active
            with torch.no_grad():
                u, ctx, keys, psi, avail = self._encode(d)
                logits, term_logits = model.options(u, ctx, avail)
                opt_prev = d["opt_prev"]
                forced = outside_initiation(u, opt_prev, model.cfg.feature_dim, model.cfg.home_radius)
                has_prev = (opt_prev.sum(-1) > 0.5) & ~forced  # where beta decides
                beta = (torch.sigmoid(term_logits) * opt_prev).sum(-1)
                chose = (opt_prev.sum(-1) < 0.5) | forced | (torch.rand_like(beta) < beta)
                dist_o = Categorical(logits=logits)
                sampled = dist_o.sample()
                opt = torch.where(chose[..., None], F.one_hot(sampled, m).float(), opt_prev)
                logp_opt = dist_o.log_prob(opt.argmax(-1))
                mean, log_std = model.low(u, ctx, opt)
                action = mean + log_std.exp() * torch.randn_like(mean)
                logp = Normal(mean, log_std.exp()).log_prob(action).sum(-1)
                q = model.critic(u, ctx, keys, psi, d["pos"], opt, active)               # [B,N,M]
                pi = torch.softmax(logits, -1)
                v_omega = (pi * q).sum(-1)
                value = (q * opt).sum(-1)
                term_adv = (q * opt_prev).sum(-1) - v_omega
            lsa = torch.full(beta.shape, -1, dtype=torch.long)
            need = (chose & active).any(-1)
            if need.any():
                qn, an, ac = q.numpy(), avail.numpy(), active.numpy()
                for e in torch.nonzero(need).flatten().tolist():
                    lsa[e] = torch.from_numpy(balanced_assignment(qn[e], an[e], ac[e]))
            for k in OBS_KEYS:
                put(k, d[k].clone())
            for k in ("opt_prev", "agg_opt", "crowd"):
                put(k, d[k])
            put("opt", opt), put("chose", (chose & active).float()), put("has_prev", (has_prev & active).float())
            put("action", action), put("logp", logp), put("logp_opt", logp_opt), put("active", active.float())
            put("term_adv", term_adv), put("v_omega", v_omega), put("value", value), put("lsa_target", lsa)
            put("beta", beta), put("forced", (forced & active).float())
            res = w.step(action * s.v_max)
            put("reward", res.reward)
            put("done", res.done.float())
            finished += add_step_terms(self.ep_terms, res.terms, res.done, obs.active)
            self.state = {"opt": opt.clone(), "pos_msg": obs.pos.clone(), "valid": active.float()}
            if res.done.any():
                done = res.done
                w.reset(done)
                for k in self.state:
                    self.state[k][done] = 0.0
            if on_step is not None:
                on_step(a.num_envs)
        self.env_steps += a.num_steps * a.num_envs
        ro = {k: torch.stack(v) for k, v in buf.items()}
        obs = w.observe()
        d = self._inputs(obs)
        with torch.no_grad():  # U(s_T, omega) = (1 - beta) Q(s_T, omega) + beta V_Omega(s_T)
            u, ctx, keys, psi, avail = self._encode(d)
            logits, term_logits = model.options(u, ctx, avail)
            opt_prev = d["opt_prev"]
            q = model.critic(u, ctx, keys, psi, d["pos"], opt_prev, obs.active)
            v_omega = (torch.softmax(logits, -1) * q).sum(-1)
            has = (opt_prev.sum(-1) > 0.5) & ~outside_initiation(u, opt_prev, model.cfg.feature_dim,
                                                                  model.cfg.home_radius)
            beta = torch.where(has, (torch.sigmoid(term_logits) * opt_prev).sum(-1), torch.ones_like(v_omega))
            ro["last_value"] = (1 - beta) * (q * opt_prev).sum(-1) + beta * v_omega
        ro["finished"] = finished  # type: ignore[assignment]
        return ro

    def learn(self, ro: dict) -> dict[str, float]:
        a, model = self.args, self.model
        dones = ro["done"][..., None].expand_as(ro["reward"])
        adv, ret = gae(ro["reward"], ro["value"], dones, ro["last_value"], a.gamma, a.gae_lambda)
        ro["adv_opt"] = ret - ro["v_omega"]
        T, B = ro["reward"].shape[:2]
        flat = lambda x: x.reshape(T * B, *x.shape[2:])  # noqa: E731
        data = {k: flat(ro[k]) for k in MB_KEYS if k in ro}
        data["adv"], data["ret"] = flat(adv), flat(ret)
        # the termination advantage, normalized over the rollout (centred: the critic's values of the
        # options not held are extrapolated, and their bias would otherwise move every beta at once)
        data["term_adv"] = normalize(data["term_adv"], data["has_prev"])
        lsa_coef = a.lsa_coef * max(0.0, 1.0 - self.env_steps / a.lsa_anneal_steps)
        kinds = self.world.kinds
        stats: list[Tensor] = []
        names: list[str] = []
        for _ in range(a.update_epochs):
            order = torch.randperm(T * B)
            for start in range(0, T * B, a.minibatch_size):
                mb = {k: v[order[start:start + a.minibatch_size]] for k, v in data.items()}
                active, chose = mb["active"], mb["chose"]
                u, ctx, keys, psi, avail = model.encode(mb["pos"], mb["supply"], mb["consumer_pos"][:, None],
                                                        mb["demand"][:, None], kinds, mb["opt_prev"], mb["agg_opt"],
                                                        mb["crowd"])
                logits, term_logits = model.options(u, ctx, avail)
                # low level
                mean, log_std = model.low(u, ctx, mb["opt"])
                dist = Normal(mean, log_std.exp())
                logp = dist.log_prob(mb["action"]).sum(-1)
                pg_loss, kl, clipfrac = clipped(logp, mb["logp"], normalize(mb["adv"], active), a.clip_coef, active)
                entropy = masked_mean(dist.entropy().sum(-1), active)
                # high level
                logp_all = torch.log_softmax(logits, -1)
                logp_opt = (logp_all * mb["opt"]).sum(-1)
                opt_loss, opt_kl, _ = clipped(logp_opt, mb["logp_opt"], normalize(mb["adv_opt"], chose), a.clip_coef,
                                              chose)
                probs = logp_all.exp()
                opt_ent = masked_mean(-(probs * logp_all.clamp_min(-1e4)).sum(-1), chose)
                # termination of the option held before this step
                beta = (torch.sigmoid(term_logits) * mb["opt_prev"]).sum(-1)
                term_loss = termination_loss(beta, mb["term_adv"], a.deliberation_cost, mb["has_prev"])
                # linear-assignment distillation
                target = mb["lsa_target"]
                has_t = (target >= 0).float() * chose
                ce = -logp_all.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1).clamp_min(-1e4)
                lsa_loss = masked_mean(ce, has_t)
                with torch.no_grad():
                    agree = masked_mean((logits.argmax(-1) == target).float(), has_t)
                # centralized critic
                q = model.critic(u, ctx, keys, psi, mb["pos"], mb["opt"], active > 0)
                v_loss = 0.5 * masked_mean(((q * mb["opt"]).sum(-1) - mb["ret"]) ** 2, active)
                loss = (pg_loss + a.option_coef * (opt_loss - a.option_ent_coef * opt_ent) + a.term_coef * term_loss
                        + lsa_coef * lsa_loss + a.vf_coef * v_loss)
                self.opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), a.max_grad_norm)
                self.opt.step()
                row = {"pg_loss": pg_loss, "v_loss": v_loss, "entropy": entropy, "approx_kl": kl, "clipfrac": clipfrac,
                       "option_loss": opt_loss, "option_entropy": opt_ent, "option_kl": opt_kl, "term_loss": term_loss,
                       "lsa_loss": lsa_loss, "lsa_agree": agree}
                names = list(row)
                stats.append(torch.stack([v.detach().float() for v in row.values()]))
        y_pred, y_true = data["value"].flatten(), data["ret"].flatten()
        var = float(y_true.var())
        out = dict(zip(names, torch.stack(stats).double().mean(0).tolist()))
        out["explained_variance"] = float("nan") if var == 0 else 1 - float((y_true - y_pred).var()) / var
        out["beta_mean"] = float(masked_mean(ro["beta"], ro["has_prev"]))
        out["switch_rate"] = float(masked_mean(ro["chose"] * ro["has_prev"], ro["has_prev"]))
        out["forced_rate"] = float(masked_mean(ro["forced"], ro["active"]))
        out["lsa_coef"] = lsa_coef
        return out

    def run(self, progress=None, on_step=None, on_phase=None) -> str:
        a = self.args
        boundary = self.snapshot()
        try:
            while self.env_steps < a.total_steps:
                t0 = time.perf_counter()
                self.update += 1
                if on_phase:
                    on_phase(f"update {self.update}: collecting")
                ro = self.collect(on_step)
                if on_phase:
                    on_phase(f"update {self.update}: learning")
                stats = self.learn(ro)
                dt = time.perf_counter() - t0
                self.wall += dt
                n = self.scenario.n_agents
                row = {"update": self.update, "env_steps": self.env_steps, "agent_steps": self.env_steps * n,
                       "wall_s": self.wall, "sps_env": a.num_steps * a.num_envs / dt,
                       "sps_agent": a.num_steps * a.num_envs * n / dt, "lr": self.opt.param_groups[0]["lr"],
                       **episode_columns(ro["finished"]), **stats}
                with signals_deferred():
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

    def finish(self) -> None:
        save_hrl_policy(self.out / "policy.pt", self.model, self.args, self.scenario.source, self.scenario.v_max)
        atomic_write_text(self.out / "config.json", json.dumps(asdict(self.args), indent=2) + "\n")
        learning_curve_png(self.out / "train_log.csv", self.out / "learning_curve.png",
                           f"{self.args.algo} on {self.scenario.name} (seed {self.args.seed})", TERMS)


TUPLES = ("hidden", "option_hidden", "critic_hidden")


def train(args: Args, resume: bool = False, show_progress: bool = True, force: bool = False) -> str:
    """Entry point of `lgtc train --algo hrl-grouping` (same contract as `train.ippo.train`)."""
    from lgtc_ros.outputs import Lock

    out = Path(args.out)
    with Lock(out):
        return _train(args, out, resume, show_progress, force)


def _train(args: Args, out: Path, resume: bool, show_progress: bool, force: bool) -> str:
    from tqdm import tqdm

    if resume:
        args, ck = resumed_args(out, args, tuples=TUPLES)
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
        def progress(steps: int, row: dict) -> None:
            ret = row["episode_return"]
            bar.set_postfix(ret=f"{ret:.2f}" if math.isfinite(ret) else "-", sps=f"{row['sps_env']:.0f}",
                            beta=f"{row['beta_mean']:.2f}", lsa=f"{row['lsa_agree']:.2f}")
            bar.update(min(trainer.env_steps, total) - bar.n)

        status = trainer.run(progress, on_step=bar.update,
                             on_phase=lambda t: bar.set_description_str(f"{args.algo} {trainer.scenario.name} ({t})"))
    if status == "interrupted":
        saved = load_checkpoint(out / "checkpoint.pt")["update"]
        print(f"\ninterrupted: checkpoint saved at update {saved} in {out / 'checkpoint.pt'}; continue with --resume")
    return status
