"""An inference graph of the LGTC actor for ONE drone, built from the trained weights.

Same mathematics as `LGTC.core` (a test checks equality to 1e-5), about half the TorchScript
operations: a drone's step is dominated by per-operation interpreter cost (~1.7 µs each), not
arithmetic. What changes is only how the linear algebra is grouped:

- the two DeepSets (consumer features Phi and agent-relative features R) run side by side as
  block-diagonal layers of width 2h instead of two stacks;
- their first layers are split by input: the per-consumer part (position, relative position,
  distance) is one matmul, the per-(consumer, type) demand and the per-type own supply, kind and
  one-hot columns are broadcast adds, so no [M, r, .] input tensor is ever concatenated;
- the graph filter B0/B1 and the attention query A0/A1 are single matmuls on [own, neighbours];
- eq. (6)'s parameter-only terms (A, tau + kappa_A, B_f) are constants;
- every layer applied to one vector is `addmv` (measured 6 µs for 256 x 256 on one thread,
  against 31 µs for `linear` on a 1-D input, which takes a matrix-matrix path).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor, nn

from lgtc_ros.policy.lgtc import LGTC


def _block_diag(a: nn.Linear, b: nn.Linear) -> tuple[Tensor, Tensor]:
    return torch.block_diag(a.weight, b.weight), torch.cat([a.bias, b.bias])


class FusedActor(nn.Module):
    """One drone's actor step: (pos, supply, consumer_pos, demand, kinds, x, nb_pos, nb_psi, nb_x)
    -> (mean action in [-1,1]^2 before scaling, x_new, psi, attention)."""

    __constants__ = ["h", "g", "f", "r", "unfolds", "ode_dt", "scale", "crowd_radius"]

    def __init__(self, cell: LGTC, head: nn.Sequential):
        super().__init__()
        if not cell.consensus:
            raise ValueError("the fused graph covers the LGTC actor (consensus state); vanilla IPPO uses LGTC.core")
        cfg = cell.cfg
        self.h, self.g, self.f, self.r = cfg.hidden_dim, cfg.feature_dim, cfg.state_dim, cfg.n_resources
        self.unfolds, self.ode_dt, self.scale = cfg.unfolds, cfg.ode_dt, 1.0 / math.sqrt(cfg.feature_dim)
        self.crowd_radius = cfg.crowd_radius
        h, r = self.h, self.r
        p1, r1 = cell.phi1[0], cell.rel1[0]  # inputs [d(2), de, kind, eye(r)] / [rel(2), dist, de, own, kind, eye(r)]
        with torch.no_grad():
            wm = torch.zeros(2 * h, 5)
            wm[:h, 0:2] = p1.weight[:, 0:2]
            wm[h:, 2:5] = r1.weight[:, 0:3]
            buffers = {
                "w_m": wm,
                "w_de": torch.cat([p1.weight[:, 2], r1.weight[:, 3]]),
                "w_own": torch.cat([torch.zeros(h), r1.weight[:, 4]]),
                "w_kind": torch.cat([p1.weight[:, 3], r1.weight[:, 5]]),
                "e_type": torch.cat([p1.weight[:, 4:4 + r].t() + p1.bias, r1.weight[:, 6:6 + r].t() + r1.bias], 1),
            }
            for name, (a, b) in {"l2": (cell.phi1[2], cell.rel1[2]), "l3": (cell.phi2[0], cell.rel2[0]),
                                 "l4": (cell.phi2[2], cell.rel2[2])}.items():
                buffers[f"{name}_w"], buffers[f"{name}_b"] = _block_diag(a, b)
            for name, seq in (("psi", cell.psi), ("head", head)):
                layers = [m for m in seq if isinstance(m, nn.Linear)]
                for k, layer in enumerate(layers):
                    buffers[f"{name}{k}_w"], buffers[f"{name}{k}_b"] = layer.weight, layer.bias
            buffers["W_w"], buffers["W_b"] = cell.W.weight, cell.W.bias
            for name in ("l2", "l3", "l4"):  # rows @ w^T: store w^T contiguous
                buffers[f"{name}_w"] = buffers[f"{name}_w"].t().contiguous()
            buffers["w_m"] = buffers["w_m"].t().contiguous()
            buffers["w_delta"] = torch.cat([cell.B0.weight, cell.B1.weight], 1)
            buffers["b_delta"] = cell.B0.bias.clone()
            buffers["w_query"] = torch.cat([cell.A0.weight, cell.A1.weight], 1)
            buffers["b_query"] = cell.A0.bias.clone()
            a, leak, b_f = cell.ode_constants()
            buffers.update(ode_a_t=a.t(), ode_leak=leak.clamp_min(-0.9 / cfg.ode_dt), ode_bf=b_f)
        # only the mean action (2 outputs) is flown: keep just those rows of the last layer
        buffers["head2_w"], buffers["head2_b"] = buffers["head2_w"][:2], buffers["head2_b"][:2]
        for name, value in buffers.items():
            self.register_buffer(name, value.detach().clone().contiguous())
        if len([m for m in cell.psi if isinstance(m, nn.Linear)]) != 2 or \
                len([m for m in head if isinstance(m, nn.Linear)]) != 3:
            raise ValueError("the fused graph expects psi with 2 layers and a head with 3 (hidden = 2 layers)")

    def forward(self, pos: Tensor, supply: Tensor, consumer_pos: Tensor, demand: Tensor, kinds: Tensor,
                x: Tensor, nb_pos: Tensor, nb_psi: Tensor, nb_x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        k = nb_psi.shape[0]
        if k > 0:
            agg_psi, agg_x = nb_psi.mean(0), nb_x.mean(0)
        else:
            agg_psi, agg_x = torch.zeros(self.g), torch.zeros(self.f)
        rel = consumer_pos - pos
        xm = torch.cat([consumer_pos, rel, torch.linalg.vector_norm(rel, 2.0, [-1], True)], 1)  # [M,5]
        per_type = supply.unsqueeze(1) * self.w_own + kinds.unsqueeze(1) * self.w_kind + self.e_type  # [r,2h]
        h1 = torch.relu(torch.matmul(xm, self.w_m).unsqueeze(1) + demand.unsqueeze(2) * self.w_de + per_type)
        h2 = torch.relu(torch.matmul(h1, self.l2_w) + self.l2_b).sum(1)                               # [M,2h]
        out = torch.addmm(self.l4_b, torch.relu(torch.addmm(self.l3_b, h2, self.l3_w)), self.l4_w)
        phi, rel_feat = out[:, :self.g], out[:, self.g:]
        psi = torch.addmv(self.psi1_b, self.psi1_w, torch.relu(torch.addmv(self.psi0_b, self.psi0_w,
                                                                            torch.cat([pos, supply, kinds]))))
        delta = torch.addmv(self.b_delta, self.w_delta, torch.cat([psi, agg_psi])) + phi.mean(0)
        query = torch.tanh(torch.addmv(delta + self.b_query, self.w_query, torch.cat([x, agg_x])))
        keys = phi + rel_feat
        attn = torch.softmax(torch.matmul(keys, query) * self.scale, 0)
        f = torch.relu(torch.addmv(self.W_b, self.W_w, phi[int(attn.argmax())]))
        step = self.ode_dt * (f * self.ode_bf - torch.mv(self.ode_a_t, agg_x))
        denom = 1.0 + self.ode_dt * (self.ode_leak + f)
        for _ in range(self.unfolds):
            x = (x + step) / denom
        # crowding (lgtc.crowding) with every neighbour present
        offsets = pos - nb_pos
        dist = torch.linalg.vector_norm(offsets, 2.0, [-1], True)
        w = torch.clamp(1.0 - dist / self.crowd_radius, min=0.0)
        crowd = torch.cat([(w * offsets / dist.clamp_min(1e-6)).sum(0), w.sum(0)])
        y = torch.cat([x, torch.matmul(attn, keys), delta, pos, crowd])
        hidden = torch.relu(torch.addmv(self.head0_b, self.head0_w, y))
        hidden = torch.relu(torch.addmv(self.head1_b, self.head1_w, hidden))
        return torch.addmv(self.head2_b, self.head2_w, hidden), x, psi, attn
