"""The Liquid-Graph Time-Constant (LGTC) network of paper §III.B, eq. (4)-(9).

One agent's step, given its observation, its previous state x_i and its neighbours' previous
messages (Psi_j, x_j):

    Phi_m  = phi2( sum_l phi1(d_m, de_ml, kappa_l, e_l) )            consumer features, eq. (4)
    R_im   = rho2( sum_l rho1(d_m - p_i, |d_m - p_i|, de_ml, so_il, kappa_l, e_l) )   (see below)
    Psi_i  = psi(p_i, so_i, kappa)                                    agent features
    Delta  = Psi_i B0 + (S Psi) B1 + mean_m Phi_m + b_u               1-hop graph filter, eq. (5)
    Xi_i   = softmax_m( tanh(Delta + x_i A0 + (S x) A1 + b_x) . (Phi_m + R_im) / sqrt(G) )
    f_i    = relu(W Phi_{argmax Xi_i} + b)                            selected dynamics, eq. (6)
    x_i   <- (x_i + h (f_i * B_f - (S x) A)) / (1 + h (tau + kappa_A + f_i))   `unfolds` times
    y_i    = [x_i, sum_m Xi_im (Phi_m + R_im), Delta, p_i, crowd_i]  -> final MLP (policy/heads.py)

S is the row-normalized adjacency of the radius-C graph (Remark 1), so (S Psi)_i and (S x)_i
are the neighbour *means* of the previous tick's messages: the only coupling between agents,
which is why `core()` below serves both the batched training forward and one drone's exported
step. A := A_raw^T A_raw (Remark 1), B_f := tanh(.) so |B_f| <= 1 (Assumption 1).

Decisions beyond the paper (DESIGN §3 and the closing notes):
- The fused semi-implicit step treats the neighbour coupling explicitly with the bound
  |(S x) A|_q <= kappa_q = sum_k |A_kq| moved into the leak. This is the paper's ODE with the
  time constant tau + kappa_A; it keeps x in [-1, 1] for ANY input whenever tau >= 0 (tested)
  and makes the contraction rate c = min(tau + f) >= 0 under the same condition.
- Attention keys add agent-relative consumer features R_im (relative position, own supply of
  each demanded type) to the paper's Phi_m: a drone needs "where is it from me and can I serve
  it" to choose. The dynamics f use the shared Phi_m only, so agents choosing the same consumer
  share f, as Theorem 2 needs.
- crowd_i (`crowding`): the paper's agent only sees the *mean* of its neighbours' features over
  radius C (most of the arena), from which it cannot tell that one neighbour is about to hit
  it, yet the collision term of eq. (2) is local. Neighbour positions travel in the messages
  anyway (comm.py), so a 3-number crowding summary of the previous tick's positions enters y.
- Consumer features are averaged (not summed) in Delta so a policy trained at M = 4 keeps its
  input scale when evaluated at M = 2..10.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class LGTCConfig:
    """Sizes and ODE settings. Defaults follow the paper's Table I (G = F = 64)."""

    n_resources: int
    feature_dim: int = 64
    """G: width of Phi, Psi, Delta."""
    state_dim: int = 64
    """F: width of the consensus state x."""
    hidden_dim: int = 32
    """Hidden width of the DeepSets MLPs (not fixed by the paper; 32 halves the training cost)."""
    unfolds: int = 3
    """Fused ODE steps per control step."""
    ode_dt: float = 1.0 / 3.0
    """h: ODE time per unfold (ODE time per control step = unfolds * ode_dt)."""
    consensus: bool = True
    """False = vanilla IPPO of §IV: no state x, attention from the current input only."""
    pooling: str = "argmax"
    """Without consensus: "argmax" (IPPO, y takes the selected consumer's feature) or "weighted"
    (MOMAPPO, y takes the attention-weighted sum of every consumer's features)."""

    crowd_radius: float = 0.3
    """Neighbours closer than this (arena units) enter the crowding feature."""
    zero_s: bool = False
    """Ablation (`train --set zero_s=true`): S = 0 in the graph filter and the consensus coupling,
    i.e. the neighbour means S Psi and S x enter as zeros, so an agent's features, attention and
    state never depend on a neighbour's message. Crowding (positions only) still hears them."""
    clusters: bool = False
    """The hierarchical variant (issue 12, DECISIONS.md "Hierarchical clusters"; `train --set
    clusters=true`, lgtc-ippo only). A cluster is the set of drones whose previous choice was the
    same consumer. Each drone hears two cluster summaries, besides its neighbours: the mean
    state of its own cluster (H x, a second consensus coupling A_h in the ODE and a query term),
    and, for every consumer m, the supply that the *other* members of m's cluster carry (the
    residual demand de_m - committed_m, a key term). Both are bounded per drone: 1 + M
    messages whatever N. The new weights start at zero and A_h small (its bound adds ~0.1 to the
    leak), so a flat model loaded into this variant starts close to the flat policy."""

    @property
    def output_dim(self) -> int:
        """Width of y fed to the final MLP."""
        g = self.feature_dim
        return (self.state_dim + 2 * g + 2 + CROWD_DIM) if self.consensus else (2 * g + 2 + CROWD_DIM)


CROWD_DIM = 3


def crowding(offsets: Tensor, mask: Tensor, radius: float) -> Tensor:
    """Local crowding from neighbours' message positions: [sum_j w_j u_ij (2), sum_j w_j (1)].

    offsets [...,K,2] = p_i - p_j, mask [...,K] (1 for a neighbour whose message arrived),
    w_j = max(0, 1 - d_ij / radius), u_ij the unit vector away from j. Zeros without neighbours.
    """
    dist = torch.linalg.vector_norm(offsets, 2.0, [-1], True)
    w = (1.0 - dist / radius).clamp_min(0.0) * mask.unsqueeze(-1)
    away = offsets / dist.clamp_min(1e-6)
    return torch.cat([(w * away).sum(-2), w.sum(-2)], -1)


def mlp(sizes: list[int], out_act: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2 or out_act:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class LGTC(nn.Module):
    """The LGTC cell. Shapes use `...` for any leading dims (e.g. [B,N] batched, [] one drone).

    TorchScript-compatible: export.py scripts this very code for the per-drone step.
    """

    __constants__ = ["consensus", "weighted", "unfolds", "ode_dt", "scale", "zero_s", "clusters"]  # TorchScript prunes dead branches

    def __init__(self, cfg: LGTCConfig):
        super().__init__()
        self.cfg = cfg
        self.consensus, self.unfolds, self.ode_dt = cfg.consensus, cfg.unfolds, cfg.ode_dt
        self.zero_s = cfg.zero_s
        self.clusters = cfg.clusters
        if cfg.clusters and not cfg.consensus:
            raise ValueError("clusters: the hierarchical variant needs the consensus state (lgtc-ippo)")
        if cfg.pooling not in ("argmax", "weighted"):
            raise ValueError(f"pooling = {cfg.pooling!r}: must be argmax or weighted")
        if cfg.consensus and cfg.pooling != "argmax":
            raise ValueError("pooling applies to the networks without consensus (ippo, momappo)")
        self.weighted = cfg.pooling == "weighted"
        self.scale = 1.0 / math.sqrt(cfg.feature_dim)
        self.bf16_sets = False
        """Training speed-up (not saved, never scripted): the agent-relative DeepSets R, whose
        layers run on [..., M, r] rows, with bfloat16 matrix products (`train --set bf16=true`)."""
        r, g, fdim, h = cfg.n_resources, cfg.feature_dim, cfg.state_dim, cfg.hidden_dim
        self.phi1 = mlp([2 + 2 + r, h, h], out_act=True)        # (d_m, de_ml, kappa_l, e_l)
        self.phi2 = mlp([h, h, g])
        self.rel1 = mlp([3 + 3 + r, h, h], out_act=True)        # (d_m - p, |d_m - p|, de, so, kappa, e)
        self.rel2 = mlp([h, h, g])
        self.psi = mlp([2 + 2 * r, h, g])                       # (p_i, so_i, kappa)
        self.B0 = nn.Linear(g, g)                               # bias = b_u
        self.B1 = nn.Linear(g, g, bias=False)
        self.register_buffer("eye_r", torch.eye(r))
        if cfg.consensus:
            self.A0 = nn.Linear(fdim, g)                        # bias = b_x
            self.A1 = nn.Linear(fdim, g, bias=False)
            self.W = nn.Linear(g, fdim)                         # bias = b
            self.A_raw = nn.Parameter(torch.randn(fdim, fdim) * (0.1 / math.sqrt(fdim)))
            self.tau = nn.Parameter(torch.ones(fdim))
            self.B_raw = nn.Parameter(torch.randn(fdim) * 0.5)
            if cfg.clusters:
                self.cluster_key = nn.Linear(r + 1, g)          # (residual demand of m, m has other members)
                self.A2 = nn.Linear(fdim, g, bias=False)        # the cluster's mean state into the query
                for layer in (self.cluster_key, self.A2):
                    nn.init.zeros_(layer.weight)
                nn.init.zeros_(self.cluster_key.bias)
                # A_h = Ah_raw^T Ah_raw: zero at Ah_raw = 0 is a saddle (no gradient), hence small
                self.Ah_raw = nn.Parameter(torch.randn(fdim, fdim) * (0.1 / math.sqrt(fdim)))
        else:
            self.bx = nn.Parameter(torch.zeros(g))

    # ------------------------------------------------------------------ parameters of eq. (6)

    def coupling(self) -> Tensor:
        """A = A_raw^T A_raw [F,F] (positive semi-definite, Remark 1)."""
        return self.A_raw.t() @ self.A_raw

    def kappa(self) -> Tensor:
        """kappa_q = sum_k |A_kq| [F]: bound of the neighbour coupling, folded into the leak."""
        return self.coupling().abs().sum(0)

    def cluster_coupling(self) -> Tensor:
        """A_h = Ah_raw^T Ah_raw [F,F]: the coupling to the cluster's mean state (clusters only)."""
        return self.Ah_raw.t() @ self.Ah_raw

    def b_f(self) -> Tensor:
        """B_f = tanh(B_raw) in [-1, 1]^F (Assumption 1)."""
        return torch.tanh(self.B_raw)

    def ode_constants(self) -> Tuple[Tensor, Tensor, Tensor]:
        """(A, tau + kappa_A, B_f): the parameter-only parts of eq. (6). Training recomputes them
        every step (they carry gradients); an exported drone step computes them once."""
        a = self.coupling()
        leak = self.tau + a.abs().sum(0)
        if self.clusters:  # the cluster coupling's bound joins the leak the same way
            leak = leak + self.cluster_coupling().abs().sum(0)
        return a, leak, self.b_f()

    # ------------------------------------------------------------------ features

    def features(self, pos: Tensor, supply: Tensor, consumer_pos: Tensor, demand: Tensor,
                 kinds: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Psi [...,G], Phi [...c,M,G], R [...,M,G] from one agent's observation.

        pos [...,2], supply [...,r], kinds [r]; consumer_pos [...c,M,2], demand [...c,M,r] with
        leading dims ...c broadcastable to ... (batched training passes [B,1,M,.] so Phi, the
        same for every agent of an env, is computed once per env).
        """
        m, r = demand.shape[-2], demand.shape[-1]
        clead = list(demand.shape[:-2])
        lead = list(pos.shape[:-1])
        eye = self.eye_r.expand(clead + [m, r, r])
        kind = kinds.expand(clead + [m, r]).unsqueeze(-1)
        d = consumer_pos.unsqueeze(-2).expand(clead + [m, r, 2])
        de = demand.unsqueeze(-1)
        phi = self.phi2(self.phi1(torch.cat([d, de, kind, eye], -1)).sum(-2))
        rel = consumer_pos - pos.unsqueeze(-2)
        dist = torch.linalg.vector_norm(rel, 2.0, [-1], True)
        full = lead + [m, r]
        geo = torch.cat([rel, dist], -1).unsqueeze(-2).expand(full + [3])
        own = supply.unsqueeze(-2).unsqueeze(-1).expand(full + [1])
        rel_in = torch.cat([geo, de.expand(full + [1]), own, kind.expand(full + [1]), eye.expand(full + [r])], -1)
        if self.bf16_sets and not torch.jit.is_scripting():
            rel_feat = self._relative_bf16(rel_in)
        else:
            rel_feat = self.rel2(self.rel1(rel_in).sum(-2))
        psi = self.psi(torch.cat([pos, supply, kinds.expand(lead + [r])], -1))
        return psi, phi, rel_feat

    @torch.jit.unused
    def _relative_bf16(self, rel_in: Tensor) -> Tensor:
        """R = rel2(sum_l rel1(.)) with bfloat16 matrix products, returned as fp32. The largest
        activations of a training step ([B,N,M,r,h]); their skinny fp32 GEMMs are slow on CPU."""
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.rel2(self.rel1(rel_in).sum(-2)).float()

    # ------------------------------------------------------------------ one step, local

    def core(self, pos: Tensor, supply: Tensor, consumer_pos: Tensor, demand: Tensor, kinds: Tensor,
             x: Tensor, agg_psi: Tensor, agg_x: Tensor, crowd: Tensor,
             consts: Optional[Tuple[Tensor, Tensor, Tensor]] = None, agg_cx: Optional[Tensor] = None,
             cluster_feat: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor, Dict[str, Tensor]]:
        """One control step of one or many agents from local data only.

        x [...,F] own previous state; agg_psi [...,G], agg_x [...,F]: neighbour means of the
        previous tick's messages (zeros without neighbours); crowd [...,3] from `crowding`
        (enters y only: the final MLP needs it to keep distance); consts: `ode_constants()` if
        precomputed (inference). Clusters only: agg_cx [...,F] the mean state of the drone's
        cluster (zeros when alone), cluster_feat [...,M,r+1] (`heads.cluster_inputs`). Returns (y [...,output_dim],
        x_new [...,F], psi [...,G] (the message to send with x_new), aux: attention
        [...,M], choice [...], f [...,F]).
        """
        if self.zero_s:  # the S = 0 ablation: no neighbour message reaches the filter or the ODE
            agg_psi, agg_x = torch.zeros_like(agg_psi), torch.zeros_like(agg_x)
        psi, phi, rel = self.features(pos, supply, consumer_pos, demand, kinds)
        delta = self.B0(psi) + self.B1(agg_psi) + phi.mean(-2)
        keys = phi + rel
        if self.clusters:
            assert agg_cx is not None and cluster_feat is not None
            keys = keys + self.cluster_key(cluster_feat)
            query = torch.tanh(delta + self.A0(x) + self.A1(agg_x) + self.A2(agg_cx))
        elif self.consensus:
            query = torch.tanh(delta + self.A0(x) + self.A1(agg_x))
        else:
            query = torch.tanh(delta + self.bx)
        # (products and sums over G rather than batched [M,G] x [G,1] matmuls: fewer, faster kernels
        # for the many tiny matrices of a training minibatch; the same numbers)
        attn = torch.softmax((keys * query.unsqueeze(-2)).sum(-1) * self.scale, -1)
        choice = attn.argmax(-1)
        if not self.consensus:  # vanilla IPPO, §IV: y = [(Xi o Phi)_argmax, Delta, p]; MOMAPPO: the sum
            if self.weighted:
                picked = (attn.unsqueeze(-1) * keys).sum(-2)
            else:
                index = choice.unsqueeze(-1).unsqueeze(-1).expand(list(choice.shape) + [1, keys.shape[-1]])
                picked = torch.gather(attn.unsqueeze(-1) * keys, -2, index).squeeze(-2)
            y = torch.cat([picked, delta, pos, crowd], -1)
            return y, x, psi, {"attention": attn, "choice": choice, "f": torch.zeros_like(x),
                               "keys": keys, "delta": delta}
        # Phi of the chosen consumer, selected by a one-hot over M (phi stays [...c,M,G]: no copy
        # per agent; its gradient is a sum, not a scatter into an expanded tensor)
        chosen = (F.one_hot(choice, keys.shape[-2]).to(phi.dtype).unsqueeze(-1) * phi).sum(-2)
        f = F.relu(self.W(chosen))
        x_new = self.integrate(x, f, agg_x, consts, agg_cx)
        y = torch.cat([x_new, (attn.unsqueeze(-1) * keys).sum(-2), delta, pos, crowd], -1)
        return y, x_new, psi, {"attention": attn, "choice": choice, "f": f}

    def integrate(self, x: Tensor, f: Tensor, agg_x: Tensor,
                  consts: Optional[Tuple[Tensor, Tensor, Tensor]] = None, agg_cx: Optional[Tensor] = None) -> Tensor:
        """`unfolds` fused semi-implicit steps of dx/dt = -(tau + kappa + f) x - (S x) A + f B_f
        (clusters: also - (H x) A_h, with kappa_h in the leak).

        The neighbour term uses the previous tick's states (what the radio delivered), fixed
        over the unfolds. In [-1, 1] for any input when tau >= 0.
        """
        h = self.ode_dt
        a, tau_kappa, b_f = self.ode_constants() if consts is None else consts
        drive = f * b_f - agg_x @ a
        if self.clusters:
            assert agg_cx is not None
            drive = drive - agg_cx @ self.cluster_coupling()
        # guard against a division blow-up if training ever drives tau far negative; the
        # contractivity penalty keeps tau >= 0, where this clamp never acts
        leak = tau_kappa.clamp_min(-0.9 / h) + f
        for _ in range(self.unfolds):
            x = (x + h * drive) / (1.0 + h * leak)
        return x

    # ------------------------------------------------------------------ theory

    def contraction_rate(self, f: Tensor, row_sum: Tensor, cluster_row_sum: Optional[Tensor] = None) -> Tensor:
        """c of eq. (9) for the dynamics actually integrated: -mu_inf(J), J the Jacobian.

        J = -(diag(tau + kappa + f) + A^T (x) S); with S >= 0, S_ii = 0:
        -mu_inf(J) = min over agents i, features q of tau_q + kappa_q (1 - rowsum(S)_i) + f_iq.
        f [...,N,F] per agent, row_sum [...,N] (1 with neighbours, 0 without). Returns [...].
        Clusters add kappa_h,q (1 - rowsum(H)_i) by the same argument; without `cluster_row_sum`
        it is taken as 1, its smallest value: c is then a lower bound.
        """
        per = self.tau + self.kappa() * (1.0 - row_sum[..., None]) + f
        if self.clusters and cluster_row_sum is not None:
            per = per + self.cluster_coupling().abs().sum(0) * (1.0 - cluster_row_sum[..., None])
        return per.flatten(-2).min(-1).values

    def contractivity_penalty(self, c: Tensor, margin: float = 0.1, sharpness: float = 10.0) -> Tensor:
        """Pi of eq. (15), sign explicit: penalize violation of c >= margin and tau >= 0 only.

        softplus with `sharpness` ~ a hinge: ~0 when the constraints hold, linear when violated.
        """
        if not self.consensus:
            return c.new_zeros(())
        pen_c = F.softplus(margin - c, beta=sharpness).mean()
        pen_tau = F.softplus(-self.tau, beta=sharpness).sum()
        return pen_c + pen_tau


def row_normalized(neighbours: Tensor) -> Tensor:
    """S [B,N,N] from the neighbour mask: 1/|N_i| for j in N_i (rows without neighbours stay 0)."""
    s = neighbours.to(torch.float32)
    return s / s.sum(-1, keepdim=True).clamp_min(1.0)
