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
from lgtc_ros.train.runner import (CsvLog, add_step_terms, episode_columns, learning_curve_png, prepare_run_dir,
                                   seed_everything)
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
    gradient step costs ~0.4 s on one core of the 2-core CI machine: raise this to fit a CPU budget."""
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

    def validate(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo = {self.algo!r}: must be one of {ALGOS}")
        for name in ("total_steps", "num_envs", "batch_size", "buffer_size", "updates_per_step", "update_every",
                     "log_every", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)}: must be >= 1")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size {self.batch_size} > buffer_size {self.buffer_size}")


# ----------------------------------------------------------------------------- networks


class QNet(nn.Module):
    """Q_i(z_i, a_i) for every agent: the §IV encoder (no consensus) and an MLP on [y_i, a_i]."""

    def __init__(self, cfg: LGTCConfig, hidden: tuple[int, ...]):
        super().__init__()
        self.encoder = LGTC(cfg)
        self.head = mlp([cfg.output_dim + 2, *hidden, 1])

    def forward(self, obs: dict[str, Tensor], agg_psi: Tensor, crowd: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Q [B,N] and the features y [B,N,D] (QMIX's state is built from them)."""
        x = torch.zeros(list(agg_psi.shape[:-1]) + [1])  # unused without consensus
        y, _, _, _ = self.encoder.core(*ActorCritic._local_inputs(obs), x, agg_psi, x, crowd)
        return self.head(torch.cat([y, action], -1)).squeeze(-1), y


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
        critic_params = list(self.q.parameters()) + (list(self.mixers.parameters()) if self.mixers else [])
        actor_params = list(self.model.actor.parameters()) + list(self.model.actor_head.parameters())
        self.q_opt = torch.optim.Adam(critic_params, lr=args.learning_rate)
        self.pi_opt = torch.optim.Adam(actor_params, lr=args.learning_rate)
        self.replay = Replay(args.buffer_size)
        self.state = self.model.initial_state(args.num_envs, s.n_agents)
        self.env_steps, self.updates, self.wall = 0, 0, 0.0
        self.ep_terms = {k: torch.zeros(args.num_envs, s.n_agents) for k in TERMS}
        self.log = CsvLog(self.out / "train_log.csv", LOG_FIELDS)

    @staticmethod
    def _copy(module: nn.Module) -> nn.Module:
        import copy

        target = copy.deepcopy(module)
        target.requires_grad_(False)
        return target

    # -------------------------------------------------------------- the pieces

    def _messages(self, pos: Tensor, state: dict[str, Tensor], S: Tensor) -> tuple[Tensor, Tensor]:
        """(mean of neighbours' last messages Psi [B,N,G], crowding [B,N,3]) as the actor reads them."""
        return S @ state["psi_pi"], self.model.crowd(pos, state, S)

    def _policy(self, obs: dict[str, Tensor], agg_psi: Tensor, crowd: Tensor):
        x = torch.zeros(list(agg_psi.shape[:-1]) + [1])
        y, _, psi, _ = self.model.actor.core(*ActorCritic._local_inputs(obs), x, agg_psi, x, crowd)
        out = self.model.actor_head(y)
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
        entropy = float(Normal(mean, log_std.exp()).entropy().sum(-1).mean())
        return {"q_loss": float(q_loss), "actor_loss": float(actor_loss), "entropy": entropy,
                "q_mean": float(q1.mean())}

    # -------------------------------------------------------------- the loop

    def run(self, progress=None, on_step=None) -> str:
        """Train until total_steps; `progress(env_steps, row)` at each log row, `on_step(n)` at
        every vectorized env step (n = num_envs env-steps). Ctrl-C stops and saves the policy."""
        a = self.args
        finished, stats = [], []
        start, last_steps = time.perf_counter(), self.env_steps
        try:
            while self.env_steps < a.total_steps:
                finished += self.act_step()
                if on_step is not None:
                    on_step(a.num_envs)
                if self.replay.size >= a.learning_starts and (self.env_steps // a.num_envs) % a.update_every == 0:
                    for _ in range(a.updates_per_step):
                        stats.append(self.update())
                if (self.env_steps // a.num_envs) % a.log_every == 0:
                    now = time.perf_counter()
                    self.wall += now - start
                    row = self._row(finished, stats, (self.env_steps - last_steps) / max(now - start, 1e-9))
                    self.log.write(row)
                    if progress:
                        progress(self.env_steps - last_steps, row)
                    finished, stats, start, last_steps = [], [], now, self.env_steps
        except KeyboardInterrupt:
            status = "interrupted"
        else:
            status = "done"
        if self.env_steps > last_steps:  # the last partial block, so even a short run has a curve
            self.wall += time.perf_counter() - start
            self.log.write(self._row(finished, stats, (self.env_steps - last_steps) / max(time.perf_counter() - start, 1e-9)))
        self.finish()
        return status

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


def train(args: SacArgs, show_progress: bool = True, force: bool = False) -> str:
    """Entry point of `lgtc train --algo vdn|qmix`. A folder holding a run or a log is refused
    (`force`: start over); a lock file refuses a second trainer. No resume (the replay buffer is
    not checkpointed)."""
    from lgtc_ros.outputs import Lock

    out = Path(args.out)
    with Lock(out):
        prepare_run_dir(out, force, resumable=False)
        return _train(args, out, show_progress)


def _train(args: SacArgs, out: Path, show_progress: bool) -> str:
    from tqdm import tqdm

    from lgtc_ros.train.ippo import _stop_on_signals, plan

    args.validate()
    trainer = SacTrainer(args)
    _stop_on_signals()
    print(plan(args, per=args.num_envs, unit="vectorized steps"), flush=True)
    atomic_write_text(out / "config.json", json.dumps(asdict(args), indent=2) + "\n")  # known from the start
    total = math.ceil(args.total_steps / args.num_envs) * args.num_envs
    with tqdm(total=total, unit="step", desc=f"{args.algo} {trainer.scenario.name}",
              disable=not show_progress, smoothing=0.3) as bar:
        def progress(steps: int, row: dict) -> None:
            ret = row["episode_return"]
            bar.set_postfix(ret=f"{ret:.2f}" if math.isfinite(ret) else "-", sps=f"{row['sps_env']:.0f}",
                            q=f"{row['q_loss']:.3f}")

        return trainer.run(progress, on_step=bar.update)
