"""VDN and QMIX adapted to continuous actions with soft actor-critic: the value-decomposition peers
of §IV (eq. for J_QVDN and J_QMIX), in one file.

    lgtc train --algo vdn  --scenario paper_10x4 --steps 1024000 --seed 0 --out runs/vdn
    lgtc train --algo qmix --scenario paper_10x4 --steps 1024000 --seed 0 --out runs/qmix

Per agent: the vanilla-IPPO network of §IV for the policy (no consensus state, attention from the
current input, y = [(Xi o Phi)_argmax, Delta, p, crowd]) with a tanh-squashed Gaussian head, twin soft Q
functions Q_i(z_i, a_i) built the same way with the action appended to y. The team value is
  VDN   sum_i Q_i                          QMIX   MIX(Q_1..Q_N; s), monotonic in every Q_i
(MIX: a hypernetwork [32, 32] conditioned on the global state s = the mean of the agents' Q
features). Both regress the team reward rw = sum_i rw_i plus the discounted soft value of the
next state under the current policy, twin minimum, Polyak-averaged targets; the policy maximizes
the team value minus alpha * sum_i log pi(a_i | z_i) (fixed alpha, Table I's entropy coefficient).
Off-policy from a replay of whole env-steps (all agents, so the team target is defined).

A run checkpoints everything it learns from, the replay included (~0.2 GB at Table I sizes), and
`lgtc train --resume` continues it to the bit: at the paper's update ratio a run is ~1.5 h on one
core, longer than a sitting on a shared machine.

As in `ippo.py` the neighbours' messages an agent reads are stored with each transition (the
previous tick's, as the radio delivers them) and fixed-length episodes end as terminal. The policy is saved like an IPPO policy, so
`lgtc export` / `lgtc eval` take it unchanged.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Normal

from lgtc_ros.outputs import atomic_write_text
from lgtc_ros.policy.checkpoint import save_checkpoint, save_policy
from lgtc_ros.policy.heads import LOG_STD_MAX, LOG_STD_MIN, ActorCritic, HeadConfig, obs_dict
from lgtc_ros.policy.lgtc import LGTC, LGTCConfig, mlp, row_normalized
from lgtc_ros.scenario import load_scenario, resolve_scenario
from lgtc_ros.train.runner import (CsvLog, add_step_terms, episode_columns, learning_curve_png, plan,
                                   prepare_run_dir, resumed_args, rng_state, seed_everything, set_rng_state,
                                   signals_deferred, stop_on_signals)
from lgtc_ros.world import TERMS, World

ALGOS = ("vdn", "qmix")


@dataclass
class SacArgs:
    algo: str = "vdn"
    scenario: str = "paper_10x4"
    total_steps: int = 1_024_000
    """Environment steps (one env step = N agent transitions)."""
    seed: int = 0
    out: str = "runs/vdn"
    num_envs: int = 32
    learning_rate: float = 2e-4
    gamma: float = 0.99
    batch_size: int = 256
    """Env-steps per gradient step (Table I)."""
    buffer_size: int = 20_000
    """Env-steps kept in the replay (Table I)."""
    learning_starts: int = 2_000
    """Env-steps collected with the initial policy before the first update."""
    updates_per_step: int = 1
    """Gradient steps per update round."""
    update_every: int = 1
    """Vectorized env steps (num_envs env-steps each) between update rounds. At Table I sizes one
    gradient step costs ~0.25 s on one idle core of the 2-core CI machine (0.17 s with `bf16`): raise
    this to fit a CPU budget."""
    alpha: float = 0.01
    """Entropy coefficient (Table I)."""
    tau: float = 0.005
    """Polyak factor of the target Q networks (Table I)."""
    max_grad_norm: float = 0.5
    feature_dim: int = 64
    hidden: tuple[int, ...] = (256, 256)
    mix_hidden: int = 32
    threads: int = 1
    """torch threads (`lgtc train --threads`; the cores are usually shared)."""
    log_every: int = 200
    """Vectorized env steps between log rows (200 = one episode of every env)."""
    checkpoint_every: int = 10
    """Log rows between checkpoints (each writes the replay too; Ctrl-C and the end always save)."""
    bf16: bool = False
    """bfloat16 matrix products in the hidden layers of the actor's and the critics' MLPs and in
    their agent-relative DeepSets (torch.autocast; weights, inputs and every network's last layer,
    hence Q values and log-densities, stay fp32). 1.45x per gradient step on a CPU with avx512_bf16."""

    def validate(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo = {self.algo!r}: must be one of {ALGOS}")
        for name in ("total_steps", "num_envs", "batch_size", "buffer_size", "updates_per_step", "update_every",
                     "log_every", "threads", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)}: must be >= 1")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size {self.batch_size} > buffer_size {self.buffer_size}")


# ----------------------------------------------------------------------------- networks


def run_head(head: nn.Sequential, x: Tensor, bf16: bool) -> Tensor:
    """An MLP whose hidden layers may run in bfloat16; its last layer always runs in fp32 (a Q
    value of ~30 in bfloat16 is only good to 0.1, coarser than a tick's reward)."""
    if not bf16:
        return head(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = head[:-1](x)
    return head[-1](hidden.float())


class QNet(nn.Module):
    """Q_i(z_i, a_i) for every agent: the §IV encoder (no consensus) and an MLP on [y_i, a_i]."""

    def __init__(self, cfg: LGTCConfig, hidden: tuple[int, ...]):
        super().__init__()
        self.encoder = LGTC(cfg)
        self.head = mlp([cfg.output_dim + 2, *hidden, 1])
        self.bf16 = False

    def forward(self, obs: dict[str, Tensor], agg_psi: Tensor, crowd: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Q [B,N] and the features y [B,N,D] (QMIX's state is built from them)."""
        x = torch.zeros(list(agg_psi.shape[:-1]) + [1])  # unused without consensus
        y, _, _, _ = self.encoder.core(*ActorCritic._local_inputs(obs), x, agg_psi, x, crowd)
        return run_head(self.head, torch.cat([y, action], -1), self.bf16).squeeze(-1), y


class Mixer(nn.Module):
    """QMIX's monotonic mixing network [32, 32] with hypernetworks on the global state."""

    def __init__(self, n_agents: int, state_dim: int, hidden: int = 32):
        super().__init__()
        self.n, self.h = n_agents, hidden
        self.w1 = nn.Linear(state_dim, n_agents * hidden)
        self.b1 = nn.Linear(state_dim, hidden)
        self.w2 = nn.Linear(state_dim, hidden)
        self.b2 = mlp([state_dim, hidden, 1])

    def forward(self, q: Tensor, state: Tensor) -> Tensor:
        """q [B,N] (0 for landed agents), state [B,S] -> Q_tot [B]. |w| keeps dQ_tot/dQ_i >= 0."""
        w1 = self.w1(state).abs().view(-1, self.n, self.h)
        hidden = nn.functional.elu(torch.bmm(q.unsqueeze(1), w1).squeeze(1) + self.b1(state))
        return (hidden * self.w2(state).abs()).sum(-1) + self.b2(state).squeeze(-1)


def team_value(q: Tensor, y: Tensor, active: Tensor, mixer: Mixer | None) -> Tensor:
    """VDN: sum over flying agents; QMIX: MIX over them, state = mean of their Q features."""
    q = q * active
    if mixer is None:
        return q.sum(-1)
    state = (y * active.unsqueeze(-1)).sum(1) / active.sum(1, keepdim=True).clamp_min(1.0)
    return mixer(q, state)


# ----------------------------------------------------------------------------- replay


class Replay:
    """A ring buffer of whole env-steps: every tensor [capacity, ...]."""

    def __init__(self, capacity: int):
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.data: dict[str, Tensor] = {}

    def add(self, batch: dict[str, Tensor]) -> None:
        n = next(iter(batch.values())).shape[0]
        if not self.data:
            self.data = {k: torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype) for k, v in batch.items()}
        idx = (self.pos + torch.arange(n)) % self.capacity
        for k, v in batch.items():
            self.data[k][idx] = v
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int, gen: torch.Generator) -> dict[str, Tensor]:
        idx = torch.randint(0, self.size, (n,), generator=gen)
        return {k: v[idx] for k, v in self.data.items()}


# ----------------------------------------------------------------------------- training

OBS_KEYS = ("pos", "supply", "consumer_pos", "demand")
LOG_FIELDS = ["update", "env_steps", "agent_steps", "wall_s", "sps_env", "episode_return", "episodes",
              *[f"ret_{k}" for k in TERMS], "q_loss", "actor_loss", "entropy", "q_mean"]


class SacTrainer:
    def __init__(self, args: SacArgs):
        args.validate()
        self.args, self.out = args, Path(args.out)
        self.scenario = s = load_scenario(resolve_scenario(args.scenario))
        seed_everything(args.seed, args.threads)
        self.gen = torch.Generator().manual_seed(args.seed)
        self.world = World(s, n_envs=args.num_envs, seed=args.seed)
        cfg = LGTCConfig(n_resources=s.n_resources, feature_dim=args.feature_dim, consensus=False)
        self.model = ActorCritic(cfg, HeadConfig(hidden=tuple(args.hidden), squash=True))  # its actor is the policy
        self.q = nn.ModuleList([QNet(cfg, tuple(args.hidden)) for _ in range(2)])
        self.mixers = nn.ModuleList([Mixer(s.n_agents, cfg.output_dim, args.mix_hidden) for _ in range(2)]) \
            if args.algo == "qmix" else None
        self.q_target = [self._copy(q) for q in self.q]
        self.mix_target = [self._copy(m) for m in self.mixers] if self.mixers is not None else None
        self.model.actor.bf16_sets = args.bf16
        for q in [*self.q, *self.q_target]:
            q.bf16 = q.encoder.bf16_sets = args.bf16
        critic_params = list(self.q.parameters()) + (list(self.mixers.parameters()) if self.mixers else [])
        actor_params = list(self.model.actor.parameters()) + list(self.model.actor_head.parameters())
        self.q_opt = torch.optim.Adam(critic_params, lr=args.learning_rate)
        self.pi_opt = torch.optim.Adam(actor_params, lr=args.learning_rate)
        self.replay = Replay(args.buffer_size)
        self.state = self.model.initial_state(args.num_envs, s.n_agents)
        self.env_steps, self.updates, self.wall = 0, 0, 0.0
        self.ep_terms = {k: torch.zeros(args.num_envs, s.n_agents) for k in TERMS}
        self.log = CsvLog(self.out / "train_log.csv", LOG_FIELDS)
        self.block: dict = {"finished": [], "stats": [], "start_steps": 0}
        """The log block in progress: episodes and update stats not yet in a row (kept by a checkpoint
        taken between rows, so a resumed run writes the rows the uninterrupted one would)."""

    @staticmethod
    def _copy(module: nn.Module) -> nn.Module:
        import copy

        target = copy.deepcopy(module)
        target.requires_grad_(False)
        return target

    # -------------------------------------------------------------- checkpoints

    def snapshot(self) -> dict:
        """Everything the next step depends on, replay and random streams included (saved at
        once, so nothing is cloned)."""
        w = self.world
        return {
            "args": asdict(self.args), "env_steps": self.env_steps, "updates": self.updates, "wall": self.wall,
            "model": self.model.state_dict(), "q": self.q.state_dict(),
            "q_target": [t.state_dict() for t in self.q_target],
            "mixers": self.mixers.state_dict() if self.mixers is not None else None,
            "mix_target": [t.state_dict() for t in self.mix_target] if self.mix_target is not None else None,
            "q_opt": self.q_opt.state_dict(), "pi_opt": self.pi_opt.state_dict(),
            "replay": {"size": self.replay.size, "pos": self.replay.pos, "data": self.replay.data},
            "world": w.state_dict(clone=False), "world_gen": w.gen.get_state(),
            "gen": self.gen.get_state(), "rng": rng_state(), "state": self.state, "ep_terms": self.ep_terms,
            "block": self.block,
        }

    def restore(self, ck: dict) -> None:
        self.env_steps, self.updates, self.wall = ck["env_steps"], ck["updates"], ck["wall"]
        self.model.load_state_dict(ck["model"])
        self.q.load_state_dict(ck["q"])
        for t, sd in zip(self.q_target, ck["q_target"]):
            t.load_state_dict(sd)
        if self.mixers is not None:
            self.mixers.load_state_dict(ck["mixers"])
            for t, sd in zip(self.mix_target, ck["mix_target"]):
                t.load_state_dict(sd)
        self.q_opt.load_state_dict(ck["q_opt"])
        self.pi_opt.load_state_dict(ck["pi_opt"])
        r = ck["replay"]
        self.replay.size, self.replay.pos, self.replay.data = r["size"], r["pos"], r["data"]
        self.world.load_state_dict(ck["world"])
        self.world.gen.set_state(ck["world_gen"])
        self.gen.set_state(ck["gen"])
        set_rng_state(ck["rng"])
        self.state, self.ep_terms, self.block = ck["state"], ck["ep_terms"], ck["block"]
        self.log.truncate_after(self.env_steps, key="env_steps")

    def save(self) -> None:
        save_checkpoint(self.out / "checkpoint.pt", self.snapshot())

    # -------------------------------------------------------------- the pieces

    def _messages(self, pos: Tensor, state: dict[str, Tensor], S: Tensor) -> tuple[Tensor, Tensor]:
        """(mean of neighbours' last messages Psi [B,N,G], crowding [B,N,3]) as the actor reads them."""
        return S @ state["psi_pi"], self.model.crowd(pos, state, S)

    def _policy(self, obs: dict[str, Tensor], agg_psi: Tensor, crowd: Tensor):
        x = torch.zeros(list(agg_psi.shape[:-1]) + [1])
        y, _, psi, _ = self.model.actor.core(*ActorCritic._local_inputs(obs), x, agg_psi, x, crowd)
        out = run_head(self.model.actor_head, y, self.args.bf16)
        return out[..., :2], out[..., 2:].clamp(LOG_STD_MIN, LOG_STD_MAX), psi

    def _sample(self, mean: Tensor, log_std: Tensor) -> tuple[Tensor, Tensor]:
        """a = tanh(u), u ~ N(mean, std): bounded actions, log-density with the tanh correction
        (unbounded ones let the entropy bonus inflate std where the clipped world is flat, and the
        critic then extrapolates off the action box and diverges)."""
        dist = Normal(mean, log_std.exp())
        u = dist.rsample()
        action = torch.tanh(u)
        logp = dist.log_prob(u) - 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
        return action, logp.sum(-1)

    def _team_q(self, qs, mixers, obs, agg_psi, crowd, action, active) -> Tensor:
        """min over the twin critics of the team value [B]."""
        vals = []
        for k, q in enumerate(qs):
            qi, y = q(obs, agg_psi, crowd, action)
            vals.append(team_value(qi, y, active, None if mixers is None else mixers[k]))
        return torch.minimum(vals[0], vals[1]), vals

    # -------------------------------------------------------------- acting

    def act_step(self) -> list[dict[str, float]]:
        a, s, w = self.args, self.scenario, self.world
        obs = w.observe()
        od = obs_dict(obs)
        S = row_normalized(obs.neighbours)
        agg_psi, crowd = self._messages(od["pos"], self.state, S)
        with torch.no_grad():
            mean, log_std, psi = self._policy(od, agg_psi, crowd)
            action = torch.tanh(mean + log_std.exp() * torch.randn(mean.shape, generator=self.gen))
        res = w.step(action * s.v_max)
        new_state = {**self.state, "psi_pi": psi, "pos_msg": od["pos"], "valid": torch.ones_like(self.state["valid"])}
        nobs = res.obs
        nS = row_normalized(nobs.neighbours)
        n_agg, n_crowd = self._messages(nobs.pos, new_state, nS)
        self.replay.add({**{k: od[k].clone() for k in OBS_KEYS}, "agg_psi": agg_psi, "crowd": crowd,
                         "action": action, "active": obs.active.float(), "reward": (res.reward * obs.active).sum(-1),
                         "done": res.done.float(),
                         **{f"next_{k}": getattr(nobs, k).clone() for k in OBS_KEYS},
                         "next_agg_psi": n_agg, "next_crowd": n_crowd, "next_active": nobs.active.float()})
        finished = add_step_terms(self.ep_terms, res.terms, res.done, obs.active)
        self.state = new_state
        if res.done.any():
            done = res.done
            w.reset(done)
            for k in self.state:
                self.state[k][done] = 0.0
        self.env_steps += a.num_envs
        return finished

    # -------------------------------------------------------------- learning

    def update(self) -> dict[str, float]:
        a = self.args
        b = self.replay.sample(a.batch_size, self.gen)
        kinds = self.world.kinds
        obs = {**{k: b[k] for k in OBS_KEYS}, "kinds": kinds}
        nobs = {**{k: b[f"next_{k}"] for k in OBS_KEYS}, "kinds": kinds}
        with torch.no_grad():
            n_mean, n_log_std, _ = self._policy(nobs, b["next_agg_psi"], b["next_crowd"])
            n_action, n_logp = self._sample(n_mean, n_log_std)
            n_q, _ = self._team_q(self.q_target, self.mix_target, nobs, b["next_agg_psi"], b["next_crowd"],
                                  n_action, b["next_active"])
            soft = n_q - a.alpha * (n_logp * b["next_active"]).sum(-1)
            target = b["reward"] + a.gamma * (1.0 - b["done"]) * soft
        _, (q1, q2) = self._team_q(self.q, self.mixers, obs, b["agg_psi"], b["crowd"], b["action"], b["active"])
        q_loss = 0.5 * ((q1 - target) ** 2).mean() + 0.5 * ((q2 - target) ** 2).mean()
        self.q_opt.zero_grad()
        q_loss.backward()
        nn.utils.clip_grad_norm_([p for g in self.q_opt.param_groups for p in g["params"]], a.max_grad_norm)
        self.q_opt.step()

        mean, log_std, _ = self._policy(obs, b["agg_psi"], b["crowd"])
        action, logp = self._sample(mean, log_std)
        for p in self.q.parameters():
            p.requires_grad_(False)
        q_pi, _ = self._team_q(self.q, self.mixers, obs, b["agg_psi"], b["crowd"], action, b["active"])
        for p in self.q.parameters():
            p.requires_grad_(True)
        actor_loss = (a.alpha * (logp * b["active"]).sum(-1) - q_pi).mean()
        self.pi_opt.zero_grad()
        actor_loss.backward()
        nn.utils.clip_grad_norm_([p for g in self.pi_opt.param_groups for p in g["params"]], a.max_grad_norm)
        self.pi_opt.step()

        with torch.no_grad():  # Polyak averaging of the targets
            pairs = list(zip(self.q, self.q_target))
            if self.mixers is not None:
                pairs += list(zip(self.mixers, self.mix_target))
            for net, tgt in pairs:
                for p, tp in zip(net.parameters(), tgt.parameters()):
                    tp.mul_(1.0 - a.tau).add_(p, alpha=a.tau)
        self.updates += 1
        entropy = Normal(mean, log_std.exp()).entropy().sum(-1).mean().item()
        return {"q_loss": q_loss.item(), "actor_loss": actor_loss.item(), "entropy": entropy,
                "q_mean": q1.mean().item()}

    # -------------------------------------------------------------- the loop

    def run(self, progress=None, on_step=None) -> str:
        """Train until total_steps; `progress(env_steps, row)` at each log row, `on_step(n)` at
        every vectorized env step (n = num_envs env-steps). Ctrl-C (or SIGTERM under `train`)
        stops between two steps and saves a checkpoint that `--resume` continues to the bit."""
        a, blk = self.args, self.block
        start, rows = time.perf_counter(), 0
        try:
            while self.env_steps < a.total_steps:
                with signals_deferred():  # a step, its updates and its log row: whole or not at all
                    blk["finished"] += self.act_step()
                    if on_step is not None:
                        on_step(a.num_envs)
                    if self.replay.size >= a.learning_starts and (self.env_steps // a.num_envs) % a.update_every == 0:
                        for _ in range(a.updates_per_step):
                            blk["stats"].append(self.update())
                    if (self.env_steps // a.num_envs) % a.log_every == 0:
                        now = time.perf_counter()
                        self.wall += now - start
                        row = self._row(blk["finished"], blk["stats"],
                                        (self.env_steps - blk["start_steps"]) / max(now - start, 1e-9))
                        self.log.write(row)
                        steps = self.env_steps - blk["start_steps"]
                        blk.update(finished=[], stats=[], start_steps=self.env_steps)
                        start, rows = now, rows + 1
                        if rows % a.checkpoint_every == 0:
                            self.save()
                        if progress:
                            progress(steps, row)
        except KeyboardInterrupt:
            self.wall += time.perf_counter() - start
            self.save()
            return "interrupted"
        if self.env_steps > blk["start_steps"]:  # the last partial block, so even a short run has a curve
            now = time.perf_counter()
            self.wall += now - start
            self.log.write(self._row(blk["finished"], blk["stats"],
                                     (self.env_steps - blk["start_steps"]) / max(now - start, 1e-9)))
            blk.update(finished=[], stats=[], start_steps=self.env_steps)
        self.save()
        self.finish()
        return "done"

    def _row(self, finished, stats, sps) -> dict:
        row = {"update": self.updates, "env_steps": self.env_steps, "agent_steps": self.env_steps * self.scenario.n_agents,
               "wall_s": self.wall, "sps_env": sps, **episode_columns(finished)}
        for k in ("q_loss", "actor_loss", "entropy", "q_mean"):
            row[k] = float(np.mean([s[k] for s in stats])) if stats else float("nan")
        return row

    def finish(self) -> None:
        """The policy (IPPO's format: `lgtc export` takes it), config, critics and the curve."""
        self.out.mkdir(parents=True, exist_ok=True)
        save_policy(self.out / "policy.pt", self.model, self.args, self.scenario.source)
        save_checkpoint(self.out / "critics.pt", {"q": self.q.state_dict(), "args": asdict(self.args),
                                                 "mixers": self.mixers.state_dict() if self.mixers else None,
                                                 "env_steps": self.env_steps})
        atomic_write_text(self.out / "config.json", json.dumps(asdict(self.args), indent=2) + "\n")
        learning_curve_png(self.out / "train_log.csv", self.out / "learning_curve.png",
                           f"{self.args.algo} (SAC) on {self.scenario.name} (seed {self.args.seed})", TERMS)


def train(args: SacArgs, resume: bool = False, show_progress: bool = True, force: bool = False) -> str:
    """Entry point of `lgtc train --algo vdn|qmix`. A fresh run refuses a folder holding a run or
    a log (`force`: start over); `resume` continues the checkpoint in `args.out` to
    `args.total_steps` and refuses settings that contradict the run's; only `RUNTIME_SETTINGS`
    may change. A lock file refuses a second trainer."""
    from lgtc_ros.outputs import Lock

    out = Path(args.out)
    with Lock(out):
        return _train(args, out, resume, show_progress, force)


def _train(args: SacArgs, out: Path, resume: bool, show_progress: bool, force: bool) -> str:
    from tqdm import tqdm

    if resume:
        args, ck = resumed_args(out, args)
    else:
        prepare_run_dir(out, force)
    args.validate()
    trainer = SacTrainer(args)
    if resume:
        trainer.restore(ck)
    stop_on_signals()
    print(plan(args, trainer.env_steps, per=args.num_envs, unit="vectorized steps"), flush=True)
    atomic_write_text(out / "config.json", json.dumps(asdict(args), indent=2) + "\n")  # known from the start
    total = math.ceil(args.total_steps / args.num_envs) * args.num_envs
    with tqdm(total=total, initial=min(trainer.env_steps, total), unit="step",
              desc=f"{args.algo} {trainer.scenario.name}", disable=not show_progress, smoothing=0.3) as bar:
        def progress(steps: int, row: dict) -> None:
            ret = row["episode_return"]
            bar.set_postfix(ret=f"{ret:.2f}" if math.isfinite(ret) else "-", sps=f"{row['sps_env']:.0f}",
                            q=f"{row['q_loss']:.3f}")

        status = trainer.run(progress, on_step=bar.update)
    if status == "interrupted":
        print(f"\ninterrupted: checkpoint saved at {trainer.env_steps} env-steps in {out / 'checkpoint.pt'}; "
              f"continue with --resume")
    return status
