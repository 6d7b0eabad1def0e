"""The hierarchical grouping peer (`lgtc train --algo hrl-grouping`): networks, TorchScript step, files.

Adapted from "Hierarchical RL for Optimal Agent Grouping in Cooperative Systems" (arXiv 2501.06554,
/work/shared/seeds/hierarchical-grouping-summary.md) to the resource-delivery mission:

* an agent's **group** is the consumer it serves: option omega_i in {0..M-1};
* **high level** (option-critic): a policy over options pi_Omega(m | o_i) and a learned termination
  beta(o_i, omega), both from one per-consumer head (a DeepSets over consumers: the same MLP scores
  every consumer from [its features, the agent's context], so it is consumer-permutation equivariant).
  Initiation sets: an option is available when its consumer demands a type the agent carries (all
  are, if none is); a held option also terminates when it leaves that set while the agent is not
  at its consumer (`outside_initiation`). Otherwise it is kept until beta fires;
* **low level**: the intra-option Gaussian velocity policy pi(a | o_i, omega_i), fed the chosen
  consumer's features (where it is from me, what it wants that I carry) and the agent context;
* **centralized critic** (training only, CTDE): Q(s, i, m) for every agent i and option m, from
  agent i's features of consumer m, its context and a permutation-invariant DeepSets pooling
  (mean) over *every* agent's embedding (its position, features, its current group) plus each
  group's global occupancy. It is not in the exported step.

Execution is decentralized: a drone needs only its own observation, its previous option and its
neighbours' messages. The message psi it broadcasts is its current option as a one-hot over the
consumers, and its carried state x is the same one-hot (zeros = no option yet), both zero-padded
to `max_consumers` entries (F = G = 16: one model flies any M up to that, like the LGTC models);
the neighbours' mean of psi (the share of neighbours in each group) enters the option head, which
is how agents coordinate the grouping at execution. `attention` is the option's one-hot [M], so
the runtime's choice / cluster bookkeeping reads the group. The exported step is deterministic:
terminate when beta > 0.5, pick the best available option, fly the mean velocity.

The linear assignment (scipy.optimize.linear_sum_assignment over the critic's option values)
is used in training only (train/hrl.py): it proposes the joint grouping that maximizes the
centralized option values under balanced group capacities, which the high-level policy is
distilled toward with an annealed auxiliary loss. Flying never solves it.

Files: `policy.pt` / `checkpoint.pt` of train/hrl.py ({"model", "args", "hrl": HRLConfig,
"v_max", "scenario"}), loaded here without importing the trainer; `export_hrl` writes the
TorchScript step + `.json` of `policy/export.py`'s interface (no contraction certificate: no
consensus ODE, the fields are null).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lgtc_ros.policy.lgtc import LGTC, LGTCConfig, crowding, mlp

ALGO = "hrl-grouping"
LOG_STD_MIN, LOG_STD_MAX = -5.0, 0.5


@dataclass(frozen=True)
class HRLConfig:
    n_resources: int
    n_consumers: int
    """M: options are consumers; the carried state and the message are one-hots over them."""
    feature_dim: int = 64
    """G of the consumer/agent DeepSets encoder (LGTC's `features`, no consensus state)."""
    hidden_dim: int = 32
    option_hidden: tuple[int, ...] = (128, 128)
    low_hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (128, 128)
    agent_embed: int = 64
    crowd_radius: float = 0.3
    max_consumers: int = 16
    """Width of the exported state and message (the option one-hot, zero-padded): the largest M
    the exported step flies."""
    home_radius: float = 0.3
    """An agent closer than this to its option's consumer keeps the option even when that consumer
    shows no open demand it can serve (2 x the paper mission's consumer radius R_m = 0.15)."""
    init_log_std: float = -0.5


def outside_initiation(u: Tensor, opt_prev: Tensor, g: int, home_radius: float) -> Tensor:
    """[...] bool: the held option has left its initiation set, so it terminates (beta = 1 there):
    its consumer no longer demands anything the agent carries and the agent is not at it (farther
    than `home_radius`; an agent covering a persistent demand sees that demand as covered, i.e.
    0, and must stay). Never when no consumer wants what the agent carries (nothing to switch to).
    u [...,M,u_dim] from `encode` (u[..., g+2] distance, u[..., g+3] match), opt_prev [...,M]."""
    wanted = u[..., g + 3] > 1e-6
    keep = wanted | (u[..., g + 2] < home_radius)
    held_keep = (keep.to(opt_prev.dtype) * opt_prev).sum(-1) > 0.5
    has = opt_prev.sum(-1) > 0.5
    return has & ~held_keep & wanted.any(-1)


class PairMLP(nn.Module):
    """mlp([u_dim + c_dim, *hidden, out]) applied to [u_m, c] for every consumer m, with the first
    layer split so that c's share (the same for every m) is computed once per agent."""

    def __init__(self, u_dim: int, c_dim: int, hidden: tuple[int, ...], out: int):
        super().__init__()
        self.first_u = nn.Linear(u_dim, hidden[0])
        self.first_c = nn.Linear(c_dim, hidden[0], bias=False)
        self.rest = mlp([*hidden, out])

    def forward(self, u: Tensor, c: Tensor) -> Tensor:
        """u [...,M,u_dim], c [...,c_dim] -> [...,M,out]."""
        return self.rest(torch.relu(self.first_u(u) + self.first_c(c).unsqueeze(-2)))


class HRLGrouping(nn.Module):
    """Actor (option head + intra-option policy) and the centralized DeepSets critic.

    Shapes: `...` leading dims ([B,N] batched, [] one drone); consumers [...c,M,.] broadcastable."""

    def __init__(self, cfg: HRLConfig):
        super().__init__()
        self.cfg = cfg
        g = cfg.feature_dim
        self.enc = LGTC(LGTCConfig(n_resources=cfg.n_resources, feature_dim=g, state_dim=1,
                                   hidden_dim=cfg.hidden_dim, consensus=False, crowd_radius=cfg.crowd_radius))
        self.u_dim = g + 6    # consumer m: keys (G), relative position (2), distance, match, occupancy, current
        self.ctx_dim = 2 * g + 5  # agent: psi (G), mean consumer phi (G), position, crowd (3)
        self.option_head = PairMLP(self.u_dim, self.ctx_dim, cfg.option_hidden, 2)     # (logit, termination)
        self.low_head = mlp([self.u_dim + self.ctx_dim, *cfg.low_hidden, 4])           # (mean, log_std)
        self.embed = mlp([2 * g + 2, cfg.agent_embed, cfg.agent_embed])
        self.critic_head = PairMLP(self.u_dim + 1, self.ctx_dim + cfg.agent_embed, cfg.critic_hidden, 1)
        with torch.no_grad():
            last = self.low_head[-1]
            last.weight.mul_(0.01)
            last.bias.zero_()
            last.bias[2:].fill_(cfg.init_log_std)
            oh = self.option_head.rest[-1]
            oh.weight.mul_(0.01)
            oh.bias.zero_()
            oh.bias[1] = -2.0  # start with rare terminations (beta ~ 0.12)

    # ------------------------------------------------------------------ shared by training and the drone step

    def encode(self, pos: Tensor, supply: Tensor, consumer_pos: Tensor, demand: Tensor, kinds: Tensor,
               opt_prev: Tensor, agg_opt: Tensor, crowd: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(u [...,M,u_dim], ctx [...,ctx_dim], keys [...,M,G], psi [...,G], avail [...,M] bool)."""
        psi, phi, rel = self.enc.features(pos, supply, consumer_pos, demand, kinds)
        keys = phi + rel
        full = list(keys.shape[:-1])
        relpos = consumer_pos - pos.unsqueeze(-2)
        relpos = relpos.expand(full + [2])
        dist = torch.linalg.vector_norm(relpos, 2.0, [-1], True)
        carried = (supply > 0).to(demand.dtype).unsqueeze(-2)
        match = (demand * carried).sum(-1)
        match = match.expand(full)
        u = torch.cat([keys, relpos, dist, match.unsqueeze(-1), agg_opt.unsqueeze(-1).expand(full + [1]),
                       opt_prev.unsqueeze(-1).expand(full + [1])], -1)
        lead = list(pos.shape[:-1])
        ctx = torch.cat([psi, phi.mean(-2).expand(lead + [phi.shape[-1]]), pos, crowd], -1)
        avail = match > 1e-6
        avail = avail | ~avail.any(-1, keepdim=True)
        return u, ctx, keys, psi, avail

    def options(self, u: Tensor, ctx: Tensor, avail: Tensor) -> Tuple[Tensor, Tensor]:
        """(masked option logits [...,M], termination logits [...,M]) of every option."""
        out = self.option_head(u, ctx)
        return out[..., 0].masked_fill(~avail, -1e9), out[..., 1]

    def low(self, u: Tensor, ctx: Tensor, opt: Tensor) -> Tuple[Tensor, Tensor]:
        """Intra-option policy: (mean [...,2], log_std [...,2]) for the option one-hot `opt` [...,M]."""
        chosen = (opt.unsqueeze(-1) * u).sum(-2)
        out = self.low_head(torch.cat([chosen, ctx], -1))
        return out[..., :2], out[..., 2:].clamp(LOG_STD_MIN, LOG_STD_MAX)

    def decide(self, u: Tensor, logits: Tensor, term_logits: Tensor, opt_prev: Tensor) -> Tensor:
        """Deterministic option (execution): keep the previous one unless there is none, it left its
        initiation set or beta > 0.5."""
        has = opt_prev.sum(-1) > 0.5
        beta = (torch.sigmoid(term_logits) * opt_prev).sum(-1)
        terminate = (~has) | (beta > 0.5) | outside_initiation(u, opt_prev, self.cfg.feature_dim, self.cfg.home_radius)
        new = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(opt_prev.dtype)
        return torch.where(terminate.unsqueeze(-1), new, opt_prev)

    # ------------------------------------------------------------------ centralized critic (training)

    @torch.jit.unused
    def critic(self, u: Tensor, ctx: Tensor, keys: Tensor, psi: Tensor, pos: Tensor, opt: Tensor,
               active: Tensor) -> Tensor:
        """Q(s, i, m) [B,N,M]: every agent's option values given the joint grouping `opt` [B,N,M].
        Permutation invariant in the other agents (mean pooling), equivariant in i and m."""
        e = self.embed(torch.cat([(opt.unsqueeze(-1) * keys).sum(-2), psi, pos], -1))   # [B,N,E]
        w = active.to(e.dtype).unsqueeze(-1)
        count = w.sum(1, keepdim=True).clamp_min(1.0)
        pooled = (e * w).sum(1, keepdim=True) / count                                    # [B,1,E]
        occupancy = (opt * w).sum(1, keepdim=True) / count                               # [B,1,M]
        b, n, m = opt.shape
        per_consumer = torch.cat([u, occupancy.unsqueeze(-1).expand(b, n, m, 1)], -1)
        per_agent = torch.cat([ctx, pooled.expand(b, n, pooled.shape[-1])], -1)
        return self.critic_head(per_consumer, per_agent).squeeze(-1)

    # ------------------------------------------------------------------ the per-drone step

    def drone_step(self, v_max: float) -> "HRLStep":
        return HRLStep(self, v_max)


class HRLStep(nn.Module):
    """The HRL actor as one drone's step, with `policy/export.py`'s interface:

        velocity, x_new, psi, attention = module(pos, supply, consumer_pos, demand, kinds, x, nb_pos, nb_psi, nb_x)

    attention = the option one-hot [M]; x = psi = the same one-hot zero-padded to `slots` entries
    (F = G = HRLConfig.max_consumers), so one model flies any M <= slots (the network is DeepSets
    over consumers), as the LGTC models do."""

    __constants__ = ["v_max", "state_dim", "feature_dim", "crowd_radius", "g", "home_radius", "slots"]

    def __init__(self, model: HRLGrouping, v_max: float):
        super().__init__()
        self.enc = model.enc
        self.option_head = model.option_head
        self.low_head = model.low_head
        self.v_max = float(v_max)
        self.slots = max(model.cfg.max_consumers, model.cfg.n_consumers)
        self.state_dim = self.slots
        self.feature_dim = self.slots
        self.crowd_radius = model.cfg.crowd_radius  # (the critic is not part of the step)
        self.g = model.cfg.feature_dim
        self.home_radius = model.cfg.home_radius

    def _act(self, pos: Tensor, supply: Tensor, consumer_pos: Tensor, demand: Tensor, kinds: Tensor,
             opt_prev: Tensor, agg_opt: Tensor, crowd: Tensor) -> Tuple[Tensor, Tensor]:
        psi, phi, rel = self.enc.features(pos, supply, consumer_pos, demand, kinds)
        keys = phi + rel
        full = list(keys.shape[:-1])
        relpos = (consumer_pos - pos.unsqueeze(-2)).expand(full + [2])
        dist = torch.linalg.vector_norm(relpos, 2.0, [-1], True)
        carried = (supply > 0).to(demand.dtype).unsqueeze(-2)
        match = (demand * carried).sum(-1).expand(full)
        u = torch.cat([keys, relpos, dist, match.unsqueeze(-1), agg_opt.unsqueeze(-1).expand(full + [1]),
                       opt_prev.unsqueeze(-1).expand(full + [1])], -1)
        lead = list(pos.shape[:-1])
        ctx = torch.cat([psi, phi.mean(-2).expand(lead + [phi.shape[-1]]), pos, crowd], -1)
        avail = match > 1e-6
        avail = avail | ~avail.any(-1, keepdim=True)
        out = self.option_head(u, ctx)
        logits = out[..., 0].masked_fill(~avail, -1e9)
        has = opt_prev.sum(-1) > 0.5
        beta = (torch.sigmoid(out[..., 1]) * opt_prev).sum(-1)
        terminate = (~has) | (beta > 0.5) | outside_initiation(u, opt_prev, self.g, self.home_radius)
        new = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(opt_prev.dtype)
        opt = torch.where(terminate.unsqueeze(-1), new, opt_prev)
        chosen = (opt.unsqueeze(-1) * u).sum(-2)
        mean = self.low_head(torch.cat([chosen, ctx], -1))[..., :2]
        return self._scale(mean), opt

    def _scale(self, mean: Tensor) -> Tensor:
        mean = mean.clamp(-1.0, 1.0) * self.v_max
        norm = torch.linalg.vector_norm(mean, 2.0, [-1], True)
        return mean * torch.clamp(self.v_max / norm.clamp_min(1e-12), max=1.0)

    def forward(self, pos: Tensor, supply: Tensor, consumer_pos: Tensor, demand: Tensor, kinds: Tensor,
                x: Tensor, nb_pos: Tensor, nb_psi: Tensor, nb_x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        k, m = nb_psi.shape[0], consumer_pos.shape[-2]
        agg = nb_psi[:, :m].mean(0) if k > 0 else torch.zeros(m)
        crowd = crowding(pos.unsqueeze(0) - nb_pos, torch.ones(k), self.crowd_radius)
        vel, opt = self._act(pos, supply, consumer_pos, demand, kinds, x[..., :m], agg, crowd)
        padded = torch.cat([opt, torch.zeros(self.slots - m)], -1)
        return vel, padded, padded, opt

    @torch.jit.export
    def batched(self, pos: Tensor, supply: Tensor, consumer_pos: Tensor, demand: Tensor, kinds: Tensor,
                x: Tensor, pos_msg: Tensor, psi_prev: Tensor, neighbours: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """[B,N,...] inputs, consumers [B,M,.], neighbours [B,N,N] bool (whose previous message arrived)."""
        mask = neighbours.to(pos.dtype)
        s = mask / mask.sum(-1, keepdim=True).clamp_min(1.0)
        crowd = crowding(pos.unsqueeze(2) - pos_msg.unsqueeze(1), mask, self.crowd_radius)
        m = consumer_pos.shape[-2]
        vel, opt = self._act(pos, supply, consumer_pos.unsqueeze(1), demand.unsqueeze(1), kinds, x[..., :m],
                             torch.matmul(s, psi_prev[..., :m]), crowd)
        padded = torch.cat([opt, torch.zeros(list(opt.shape[:-1]) + [self.slots - m])], -1)
        return vel, padded, padded, opt


# ----------------------------------------------------------------------------- files


def is_hrl(ck: dict) -> bool:
    args = ck.get("args") if isinstance(ck, dict) else None
    return isinstance(args, dict) and args.get("algo") == ALGO


def config_from_args(args: Any, n_resources: int, n_consumers: int) -> HRLConfig:
    get = args.__getitem__ if isinstance(args, dict) else lambda name: getattr(args, name)
    return HRLConfig(n_resources=n_resources, n_consumers=n_consumers, feature_dim=get("feature_dim"),
                     option_hidden=tuple(get("option_hidden")), low_hidden=tuple(get("hidden")),
                     critic_hidden=tuple(get("critic_hidden")))


def save_hrl_policy(path: str | Path, model: HRLGrouping, args: Any, scenario_source: str, v_max: float) -> None:
    from lgtc_ros.policy.checkpoint import save_checkpoint

    save_checkpoint(path, {"model": model.state_dict(), "args": asdict(args), "hrl": asdict(model.cfg),
                           "scenario": scenario_source, "v_max": v_max})


def model_from_checkpoint(ck: dict, path: str | Path) -> HRLGrouping:
    from lgtc_ros.policy.export import ModelMetadataError

    try:
        if "hrl" in ck:
            raw = dict(ck["hrl"])
            for key in ("option_hidden", "low_hidden", "critic_hidden"):
                raw[key] = tuple(raw[key])
            cfg = HRLConfig(**raw)
        else:  # a training checkpoint: the arguments and the training scenario say which networks
            from lgtc_ros.scenario import load_scenario, resolve_scenario

            s = load_scenario(resolve_scenario(ck["args"]["scenario"]))
            cfg = config_from_args(ck["args"], s.n_resources, s.n_consumers)
        model = HRLGrouping(cfg)
        model.load_state_dict(ck["model"])
    except (KeyError, TypeError, RuntimeError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelMetadataError(f"{path}: its stored configuration does not rebuild its networks ({first[:160]})",
                                 path) from None
    return model.eval()


def load_trainer_policy(path: str | Path):
    """A trainer's policy.pt / checkpoint.pt of any algorithm: (model, dict). The IPPO family and the
    SAC peers go through `policy.checkpoint.load_policy` (an `ActorCritic`); hrl-grouping runs
    rebuild an `HRLGrouping`. Both have `.cfg.n_resources`; `HRLGrouping` has `drone_step`."""
    from lgtc_ros.policy.checkpoint import load_checkpoint, load_policy
    from lgtc_ros.policy.export import EXPORTED, model_format

    path = Path(path)
    if path.exists() and model_format(path) != EXPORTED:
        ck = load_checkpoint(path, missing=f"no model at {path}")
        if is_hrl(ck):
            return model_from_checkpoint(ck, path), ck
    return load_policy(path)


def export_hrl(model: HRLGrouping, scenario, out: str | Path, training: dict | None = None,
               metrics: dict | None = None) -> tuple[Path, Path]:
    """`policy/export.py`'s `export` for an `HRLGrouping`: the TorchScript drone step and its `.json`
    (no consensus state: the certificate fields are null, nothing is refused)."""
    from lgtc_ros.outputs import replace_protected
    from lgtc_ros.policy.certificate import metadata_fields
    from lgtc_ros.policy.export import FORMAT_VERSION, git_commit, write_model

    out = Path(out)
    meta_path = out.with_suffix(".json")
    for path in (out, meta_path):
        replace_protected(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(HRLStep(model.eval(), scenario.v_max).eval())
    module = torch.jit.freeze(scripted, preserved_attrs=["batched", "v_max", "state_dim", "feature_dim"])
    slots = max(model.cfg.max_consumers, model.cfg.n_consumers)
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": "lgtc_ros drone step",
        "inputs": {"pos": [2], "supply": ["r"], "consumer_pos": ["M", 2], "demand": ["M", "r"], "kinds": ["r"],
                   "x": ["F"], "nb_pos": ["K", 2], "nb_psi": ["K", "G"], "nb_x": ["K", "F"]},
        "outputs": {"velocity": [2], "x_new": ["F"], "psi": ["G"], "attention": ["M"]},
        "shapes": {"M": scenario.n_consumers, "r": scenario.n_resources, "F": slots, "G": slots},
        "consensus": False,
        "consumer_count_agnostic": True,  # DeepSets over consumers; the option one-hot is padded to F
        "max_consumers": slots,
        "hrl": asdict(model.cfg),
        "state_meaning": "attention = the current option (group = consumer) as a one-hot [M]; x = psi = the "
                         "same one-hot zero-padded to F = G entries; zeros: no option yet",
        "scenario": {"name": scenario.name, "n_agents": scenario.n_agents, "n_consumers": scenario.n_consumers,
                     "resources": [asdict(r) for r in scenario.resources], "v_max": scenario.v_max,
                     "comm_radius": scenario.comm_radius, "dt": scenario.dt},
        "training": training or {},
        "metrics": metrics or {},
        **metadata_fields(None),
        "git_commit": git_commit(),
        "torch": torch.__version__,
    }
    meta["certificate"]["note"] = "hrl-grouping: no consensus state, no ODE, nothing to certify"
    return write_model(module, meta, out)
