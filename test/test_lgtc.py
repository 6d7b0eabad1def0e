"""The LGTC cell: shapes, the theory checks of Theorems 1-2, export equivalence, metadata checks."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lgtc_ros.policy.export import DroneStep, ModelMismatch, export, load, static_forward
from lgtc_ros.policy.heads import ActorCritic, HeadConfig
from lgtc_ros.policy.learned import LearnedPolicy
from lgtc_ros.policy.lgtc import LGTC, LGTCConfig, row_normalized
from lgtc_ros.scenario import load_scenario, resolve_scenario
from lgtc_ros.world import World

PAPER = load_scenario(resolve_scenario("paper_10x4"))
KINDS = torch.tensor([0.0, 0.0, 1.0, 1.0])


def small(consensus=True, value="scalar", **kw) -> ActorCritic:
    torch.manual_seed(0)
    cfg = LGTCConfig(n_resources=4, feature_dim=16, state_dim=8, hidden_dim=16, consensus=consensus, **kw)
    return ActorCritic(cfg, HeadConfig(hidden=(32, 32), value=value))


def momappo() -> ActorCritic:
    return small(False, value="vector", pooling="weighted")


def drone_inputs(k: int, m: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    return (r(2) * 2 - 1, r(4), r(m, 2) * 2 - 1, r(m, 4), KINDS, r(8) * 2 - 1, r(k, 2) * 2 - 1, r(k, 16), r(k, 8))


@pytest.mark.parametrize("consensus", [True, False])
@pytest.mark.parametrize("k", [0, 1, 7])
def test_drone_step_shapes_with_any_neighbour_count(consensus, k):
    step = torch.jit.script(DroneStep(small(consensus), v_max=0.5))
    vel, x, psi, attn = step(*drone_inputs(k))
    assert vel.shape == (2,) and x.shape == (8,) and psi.shape == (16,) and attn.shape == (4,)
    assert vel.norm() <= 0.5 + 1e-6 and torch.isclose(attn.sum(), torch.tensor(1.0))
    assert torch.isfinite(torch.cat([vel, x, psi])).all()


def test_batched_shapes_and_isolated_agents():
    model = small()
    world = World(PAPER, n_envs=3, seed=0, solve_assignment=False)
    obs = world.observe()
    state = model.initial_state(3, 10)
    nb = torch.zeros(3, 10, 10, dtype=torch.bool)  # nobody hears anybody
    od = {"pos": obs.pos, "supply": obs.supply, "consumer_pos": obs.consumer_pos, "demand": obs.demand,
          "kinds": obs.kinds}
    mean, log_std, value, new, aux = model.step(od, state, row_normalized(nb))
    assert mean.shape == (3, 10, 2) and value.shape == (3, 10) and aux["attention"].shape == (3, 10, 4)
    assert set(new) == set(state) and new["valid"].all()


# ----------------------------------------------------------------------------- Theorem 1


def test_state_stays_in_unit_box_for_any_input_when_tau_nonnegative():
    torch.manual_seed(1)
    cell = LGTC(LGTCConfig(n_resources=4, feature_dim=16, state_dim=8, hidden_dim=16, unfolds=5, ode_dt=2.0))
    with torch.no_grad():
        for p in cell.parameters():
            p.mul_(20.0)             # wild weights ...
        cell.tau.copy_(torch.rand(8) * 3)  # ... but tau >= 0 (Theorem 1)
    for trial in range(30):
        g = torch.Generator().manual_seed(trial)
        x = torch.rand(64, 8, generator=g) * 2 - 1
        big = lambda *s: (torch.rand(*s, generator=g) * 2 - 1) * 100  # noqa: E731
        for _ in range(20):
            _, x, _, _ = cell.core(big(64, 2), big(64, 4).abs(), big(64, 4, 2), big(64, 4, 4).abs(), KINDS, x,
                                   big(64, 16), torch.rand(64, 8, generator=g) * 2 - 1, big(64, 3))
            assert x.abs().max() <= 1.0 + 1e-6


def test_contraction_rate_equals_minus_lognorm_of_the_jacobian():
    torch.manual_seed(2)
    cell = LGTC(LGTCConfig(n_resources=4, feature_dim=4, state_dim=3, hidden_dim=8))
    n, fdim = 4, 3
    S = row_normalized(torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)[None])[0]
    f = torch.rand(n, fdim)
    A, kappa, tau = cell.coupling(), cell.kappa(), cell.tau

    def rhs(xflat):  # the ODE actually integrated: dx/dt = -(tau + kappa + f) x - S x A + f B_f
        x = xflat.reshape(n, fdim)
        return (-(tau + kappa + f) * x - S @ x @ A + f * cell.b_f()).reshape(-1)

    J = torch.autograd.functional.jacobian(rhs, torch.zeros(n * fdim))
    mu_inf = (J.diagonal() + (J.abs().sum(1) - J.diagonal().abs())).max()
    c = cell.contraction_rate(f[None], S.sum(-1)[None])[0]
    assert torch.isclose(c, -mu_inf, atol=1e-5)
    assert c >= 0  # tau >= 0 at init


def test_contractivity_penalty_only_penalizes_violations():
    cell = LGTC(LGTCConfig(n_resources=4, feature_dim=4, state_dim=3, hidden_dim=8))
    ok = cell.contractivity_penalty(torch.tensor([2.0]), margin=0.1)
    with torch.no_grad():
        cell.tau.fill_(-1.0)
    bad = cell.contractivity_penalty(torch.tensor([-1.0]), margin=0.1)
    assert ok < 1e-3 < bad
    bad.backward()
    assert (cell.tau.grad < 0).all()  # gradient descent raises tau back toward >= 0


# ----------------------------------------------------------------------------- Theorem 2


def integrate_fixed_choice(cell: LGTC, choice: torch.Tensor, S: torch.Tensor, phi: torch.Tensor, steps: int,
                           seed: int) -> torch.Tensor:
    """Run the cell's ODE with each agent's consumer fixed (f from the shared Phi of its choice)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(S.shape[0], cell.cfg.state_dim, generator=g) * 2 - 1
    f = torch.relu(cell.W(phi[choice]))
    traj = []
    with torch.no_grad():
        for _ in range(steps):
            x = cell.integrate(x, f, S @ x)
            traj.append(x)
    return torch.stack(traj)


def test_same_choice_same_trajectory_different_choices_different_clusters():
    torch.manual_seed(3)
    cell = LGTC(LGTCConfig(n_resources=4, feature_dim=16, state_dim=8, hidden_dim=16))
    with torch.no_grad():
        cell.A_raw.mul_(5.0)  # noticeable coupling between neighbours
        cell.W.weight.mul_(5.0)
    phi = torch.randn(3, 16)
    choice = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    # Assumption 3: constant row sums inside every block of S: complete graph inside each
    # cluster, and every agent of cluster 1 hears every agent of cluster 2 (and vice versa)
    same = (choice[:, None] == choice[None, :]) & ~torch.eye(8, dtype=torch.bool)
    cross = ((choice[:, None] == 1) & (choice[None, :] == 2)) | ((choice[:, None] == 2) & (choice[None, :] == 1))
    S = row_normalized((same | cross)[None])[0]
    for a in range(3):
        for b in range(3):
            block = S[choice == a][:, choice == b].sum(1)
            assert torch.allclose(block, block[0].expand_as(block))
    traj = integrate_fixed_choice(cell, choice, S, phi, steps=300, seed=0)
    final = traj[-1]
    for c in range(3):
        members = final[choice == c]
        assert (members - members[0]).abs().max() < 1e-4, f"cluster {c} did not agree"
    reps = torch.stack([final[choice == c][0] for c in range(3)])
    assert torch.cdist(reps, reps).masked_fill(torch.eye(3, dtype=torch.bool), 9).min() > 1e-2
    # a different start converges to the same cluster states (global attractor, contraction)
    other = integrate_fixed_choice(cell, choice, S, phi, steps=300, seed=1)[-1]
    assert (other - final).abs().max() < 1e-4


# ----------------------------------------------------------------------------- export


@pytest.mark.parametrize("consensus", [True, False, "momappo"])
def test_exported_per_drone_step_equals_batched_training_forward(consensus, tmp_path):
    model = momappo() if consensus == "momappo" else small(consensus)
    pt, _ = export(model, PAPER, tmp_path / "m.pt")
    step, _ = load(pt, PAPER)
    world = World(PAPER, n_envs=2, seed=4, solve_assignment=False)
    state = model.initial_state(2, 10)
    drone_x = torch.zeros(2, 10, 8)
    drone_msgs = None  # (pos, psi, x) per agent from the previous tick
    for t in range(12):
        obs = world.observe()
        od = {"pos": obs.pos, "supply": obs.supply, "consumer_pos": obs.consumer_pos, "demand": obs.demand,
              "kinds": obs.kinds}
        nb = obs.neighbours & state["valid"][:, None, :].bool()
        with torch.no_grad():
            mean, _, _, new_state, _ = model.step(od, state, row_normalized(nb))
        batched_vel = (mean.clamp(-1, 1) * PAPER.v_max)
        new_x, new_psi = torch.zeros(2, 10, 8), torch.zeros(2, 10, 16)
        for e in range(2):
            for i in range(10):
                js = torch.nonzero(nb[e, i]).flatten()
                if drone_msgs is None:
                    nb_pos, nb_psi, nb_x = torch.zeros(0, 2), torch.zeros(0, 16), torch.zeros(0, 8)
                else:
                    nb_pos, nb_psi, nb_x = (m[e, js] for m in drone_msgs)
                vel, x, psi, _ = step(obs.pos[e, i], obs.supply[e, i], obs.consumer_pos[e], obs.demand[e],
                                      obs.kinds, drone_x[e, i], nb_pos, nb_psi, nb_x)
                ref = batched_vel[e, i] * torch.clamp(PAPER.v_max / batched_vel[e, i].norm().clamp_min(1e-12), max=1)
                assert torch.allclose(vel, ref, atol=1e-5), (t, e, i)
                new_x[e, i], new_psi[e, i] = x, psi
        assert torch.allclose(new_x, new_state["x_pi"], atol=1e-5)
        assert torch.allclose(new_psi, new_state["psi_pi"], atol=1e-5)
        drone_msgs = (obs.pos.clone(), new_psi, new_x)
        drone_x, state = new_x, new_state
        world.step(batched_vel)


def test_momappo_value_is_the_attention_weighted_per_consumer_value():
    model = momappo()
    world = World(PAPER, n_envs=2, seed=1, solve_assignment=False)
    obs = world.observe()
    od = {"pos": obs.pos, "supply": obs.supply, "consumer_pos": obs.consumer_pos, "demand": obs.demand,
          "kinds": obs.kinds}
    state = model.initial_state(2, 10)
    S = row_normalized(obs.neighbours)
    with torch.no_grad():
        value, _, _, aux = model.critic_step(od, state, S, model.crowd(obs.pos, state, S))
        keys, attn = aux["keys"], aux["attention"]
        rest = torch.cat([aux["delta"], obs.pos, model.crowd(obs.pos, state, S)], -1)
        for m in range(4):  # each consumer's value from its own key
            v_m = model.critic_head(torch.cat([keys[..., m, :], rest], -1)).squeeze(-1)
            value = value - attn[..., m] * v_m
    assert value.abs().max() < 1e-5
    y, _, _, a = model.actor.core(obs.pos, obs.supply, obs.consumer_pos[:, None], obs.demand[:, None],
                                  obs.kinds, state["x_pi"], state["psi_pi"], state["x_pi"], torch.zeros(2, 10, 3))
    weighted = (a["attention"].unsqueeze(-1) * a["keys"]).sum(-2)   # MOMAPPO pools all consumers
    assert torch.allclose(y[..., :16], weighted, atol=1e-6)
    with pytest.raises(ValueError, match="pooling"):
        LGTC(LGTCConfig(n_resources=4, pooling="weighted"))           # consensus nets select one consumer
    with pytest.raises(ValueError, match="vector"):
        small(True, value="vector")


@pytest.mark.parametrize("model", ["models/lgtc_paper_10x4.pt", "models/ippo_paper_10x4.pt", "models/vdn_paper_10x4.pt",
                                   "models/momappo_paper_10x4.pt"])
def test_static_runtime_step_is_the_interpreters_step(model):
    module, meta = load(model)
    fast = static_forward(module)
    assert fast is not module  # available in the pinned torch: the drones really run it
    sh = meta["shapes"]
    g = torch.Generator().manual_seed(3)
    rnd = lambda *s: torch.rand(*s, generator=g) * 2 - 1  # noqa: E731
    for k in (0, 1, 12):
        args = (rnd(2), rnd(sh["r"]).abs(), rnd(sh["M"], 2), rnd(sh["M"], sh["r"]).abs(),
                torch.tensor([0.0, 0.0, 1.0, 1.0]), rnd(sh["F"]), rnd(k, 2), rnd(k, sh["G"]), rnd(k, sh["F"]))
        got, want = fast(*args), module(*args)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
        kept = [t.clone() for t in got]
        fast(*(a * 0.5 for a in args))  # the next call must not write into returned tensors
        assert all(torch.equal(a, b) for a, b in zip(got, kept))


def test_learned_policy_runs_in_rollouts(tmp_path):
    from lgtc_ros.evaluate import rollout

    pt, _ = export(small(), PAPER, tmp_path / "m.pt")
    stats, _ = rollout(PAPER, LearnedPolicy.load(pt, PAPER), episodes=2, seed=0)
    assert stats.returns.shape == (2,)


def test_metadata_mismatch_is_a_clear_error(tmp_path):
    pt, meta_path = export(small(), PAPER, tmp_path / "m.pt")
    meta = json.loads(meta_path.read_text())
    assert meta["shapes"] == {"M": 4, "r": 4, "F": 8, "G": 16} and len(meta["git_commit"]) > 0
    discharge = load_scenario(resolve_scenario("discharge_5x3"))
    with pytest.raises(ModelMismatch, match=r"trained for 4 consumers \(M\).*has 3.*--any-consumers"):
        load(pt, discharge)
    load(pt, discharge, allow_consumer_change=True)  # the network itself is consumer-count agnostic
    three_types = dataclasses.replace(PAPER, resources=PAPER.resources[:3])
    with pytest.raises(ModelMismatch, match=r"4 resource types \(r\).*has 3"):
        load(pt, three_types)
    flipped = dataclasses.replace(PAPER, resources=tuple(reversed(PAPER.resources)))
    with pytest.raises(ModelMismatch, match="resource kinds"):
        load(pt, flipped)
    meta_path.unlink()
    with pytest.raises(ModelMismatch, match="metadata .* is missing"):
        load(pt, PAPER)


def test_violating_assumption_3_leaves_bounded_disagreement():
    """Remark 2: without constant block row sums clusters still form, with bounded differences."""
    torch.manual_seed(3)
    cell = LGTC(LGTCConfig(n_resources=4, feature_dim=16, state_dim=8, hidden_dim=16))
    with torch.no_grad():
        cell.A_raw.mul_(5.0)
        cell.W.weight.mul_(5.0)
    phi = torch.randn(3, 16)
    choice = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    adj = (choice[:, None] == choice[None, :]) & ~torch.eye(8, dtype=torch.bool)
    adj[3, 5] = adj[5, 3] = True  # one extra link: agent 3 hears cluster 2, agent 4 does not
    final = integrate_fixed_choice(cell, choice, row_normalized(adj[None])[0], phi, steps=300, seed=0)[-1]
    gap = (final[3] - final[4]).abs().max()
    spread = (final[0] - final[5]).abs().max()
    assert 1e-4 < gap < 0.5 * spread


# ----------------------------------------------------------------------------- training speed-ups


def _paper_batch(model, n_envs=4, seed=0):
    world = World(PAPER, n_envs=n_envs, seed=seed, solve_assignment=False)
    obs = world.observe()
    od = {"pos": obs.pos, "supply": obs.supply, "consumer_pos": obs.consumer_pos, "demand": obs.demand,
          "kinds": obs.kinds}
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.rand(v.shape, generator=g) * 2 - 1 for k, v in model.initial_state(n_envs, 10).items()}
    state["valid"] = torch.ones(n_envs, 10)
    return od, state, row_normalized(obs.neighbours)


def _reference_core(cell: LGTC, pos, supply, consumer_pos, demand, kinds, x, agg_psi, agg_x, crowd):
    """`LGTC.core` as first written (batched matmul logits, gather from Phi expanded per agent)."""
    psi, phi, rel = cell.features(pos, supply, consumer_pos, demand, kinds)
    delta = cell.B0(psi) + cell.B1(agg_psi) + phi.mean(-2)
    keys = phi + rel
    query = torch.tanh(delta + cell.A0(x) + cell.A1(agg_x))
    attn = torch.softmax(torch.matmul(keys, query.unsqueeze(-1)).squeeze(-1) * cell.scale, -1)
    choice = attn.argmax(-1)
    index = choice.unsqueeze(-1).unsqueeze(-1).expand(list(choice.shape) + [1, keys.shape[-1]])
    chosen = torch.gather(phi.expand(list(rel.shape)), -2, index).squeeze(-2)
    f = torch.relu(cell.W(chosen))
    x_new = cell.integrate(x, f, agg_x)
    return torch.cat([x_new, (attn.unsqueeze(-1) * keys).sum(-2), delta, pos, crowd], -1)


def test_core_equals_its_first_formulation_with_gradients():
    """The one-hot selection and the elementwise attention logits (training speed) change no
    number beyond float rounding, forward or backward."""
    model = ActorCritic(LGTCConfig(n_resources=4), HeadConfig())
    od, state, S = _paper_batch(model)
    cell = model.actor
    args = (*model._local_inputs(od), state["x_pi"], S @ state["psi_pi"], S @ state["x_pi"],
            model.crowd(od["pos"], state, S))
    w = torch.randn(4, 10, cell.cfg.output_dim)
    y_new = cell.core(*args)[0]
    (y_new * w).sum().backward()
    grads_new = [p.grad.clone() for p in cell.parameters()]
    cell.zero_grad()
    y_ref = _reference_core(cell, *args)
    (y_ref * w).sum().backward()
    assert torch.allclose(y_new, y_ref, atol=1e-6)
    for p, g_new in zip(cell.parameters(), grads_new):
        assert torch.allclose(g_new, p.grad, atol=1e-5, rtol=1e-4)


def test_bf16_training_mode_is_close_to_fp32_and_never_scripted(tmp_path):
    model = ActorCritic(LGTCConfig(n_resources=4), HeadConfig())
    od, state, S = _paper_batch(model)
    with torch.no_grad():
        ref = model.step(od, state, S)
        fast = model.use_bf16().step(od, state, S)
    for a, b in zip(ref[:3], fast[:3]):  # mean, log_std, value: fp32 out, bf16 rounding inside
        assert b.dtype == torch.float32 and torch.allclose(a, b, atol=3e-2), (a - b).abs().max()
    assert not torch.equal(ref[2], fast[2])  # (the flag does reach the products)
    for k in ("x_pi", "psi_pi", "x_v", "psi_v"):
        assert fast[3][k].dtype == torch.float32
    # export scripts the fp32 path whatever the training flag
    scripted = torch.jit.script(DroneStep(model, v_max=0.5))
    model.use_bf16(False)
    plain = torch.jit.script(DroneStep(model, v_max=0.5))
    inputs = (od["pos"][0, 0], od["supply"][0, 0], od["consumer_pos"][0], od["demand"][0], od["kinds"],
              state["x_pi"][0, 0], torch.zeros(0, 2), torch.zeros(0, 64), torch.zeros(0, 64))
    for a, b in zip(scripted(*inputs), plain(*inputs)):
        assert torch.equal(a, b)
