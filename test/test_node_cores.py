"""The ROS-free cores of the nodes, wired the way the ROS graph wires them (world_node ->
radio_node -> agent_node -> cbf_node -> world_node, every payload through the wire format), fly
the same mission as the swarm runtime; plus each core's own rules."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lgtc_ros import comm
from lgtc_ros.frames import ArenaFrame
from lgtc_ros.runtime.drone import load_drone_modules
from lgtc_ros.runtime.radio import Radio, RadioConfig
from lgtc_ros.runtime.swarm import RuntimeConfig, SwarmRuntime
from lgtc_ros.runtime.drone import DroneAgent
from lgtc_ros.runtime.onboard import OnboardController, Skip, TickOutput
from lgtc_ros.runtime.plant import MissionPlant
from lgtc_ros.safety import SwarmFilter
from lgtc_ros.scenario import load_scenario, resolve_scenario

PAPER = load_scenario(resolve_scenario("paper_10x4"))
SHORT = dataclasses.replace(PAPER, episode_steps=40)




def controllers(model_path, scenario):
    modules, _ = load_drone_modules(model_path, scenario, scenario.n_agents)
    frame = ArenaFrame.from_scenario(scenario)
    return [OnboardController(DroneAgent(i, m, m.state_dim, m.feature_dim), frame, scenario.n_consumers,
                              scenario.n_resources) for i, m in enumerate(modules)]


def test_node_graph_flies_the_runtimes_mission(model_path):
    """Same seed, zero latency, no loss, CBF on: the decomposed graph and the runtime agree."""
    torch.set_num_threads(1)
    s = SHORT
    ref = SwarmRuntime(s, drones=load_drone_modules(model_path, s, s.n_agents)[0],
                       config=RuntimeConfig(cbf="decentralized"), seed=3).run()
    plant, drones = MissionPlant(s, seed=3), controllers(model_path, s)
    radio: Radio = Radio(s.n_agents, RadioConfig(radius=s.comm_radius))
    cbf, frame = SwarmFilter(s, "decentralized"), plant.frame
    out = plant.observe(0.0)
    poses = []
    for k in range(s.episode_steps):
        now = k * s.dt
        poses.append(frame.to_arena(out.poses_m))
        batch = radio.deliver_batch(k, frame.to_arena(out.poses_m), out.active)
        v_nom = np.zeros((s.n_agents, 2))
        for i, drone in enumerate(drones):
            drone.on_pose(out.poses_m[i])
            drone.on_demands(out.demands, now)
            drone.on_supply(out.supplies[i], now)
            drone.on_inbox(comm.encode_inbox(now, batch.to(i)), now)
            result = drone.tick(now)
            assert isinstance(result, TickOutput)
            radio.send(k, i, result.decision.message)
            v_nom[i] = frame.velocity_to_arena(result.v_nominal_m_s)
        v_safe = cbf(v_nom, frame.to_arena(out.poses_m), out.active)
        out = plant.step(now + s.dt, frame.velocity_to_metres(v_safe))
    np.testing.assert_allclose(np.stack(poses), np.stack(ref.trace.pos), atol=1e-4)
    assert out.done


def test_onboard_skips_until_ready_and_when_landed(model_path):
    (drone, *_), frame = controllers(model_path, PAPER), ArenaFrame.from_scenario(PAPER)
    plant = MissionPlant(PAPER, seed=0)
    out = plant.observe(1.0)
    assert drone.tick(1.0) == Skip("no_pose")
    drone.on_pose(out.poses_m[0])
    assert drone.tick(1.0) == Skip("no_demands")
    drone.on_demands(out.demands, 1.0)
    assert drone.tick(1.0) == Skip("no_supply")
    drone.on_supply(out.supplies[1], 1.0)                     # another drone's status is ignored
    assert drone.tick(1.0) == Skip("no_supply")
    drone.on_supply(out.supplies[0], 1.0)
    assert isinstance(drone.tick(1.0), TickOutput)
    landed = comm.encode_supply(comm.SupplyStatus(0, 1.05, np.zeros(4), False))
    drone.on_supply(landed, 1.05)
    assert drone.tick(1.05) == Skip("landed")
    assert np.allclose(frame.to_metres(drone._pos.numpy()), out.poses_m[0, :2])


def test_onboard_uses_fresh_neighbour_messages_once(model_path):
    a, b, c = controllers(model_path, PAPER)[:3]
    plant = MissionPlant(PAPER, seed=0)
    out = plant.observe(2.0)
    for i, d in enumerate((a, b, c)):
        d.on_pose(out.poses_m[i])
        d.on_demands(out.demands, 2.0)
        d.on_supply(out.supplies[i], 2.0)
    msg_a, msg_b, msg_c = (d.tick(2.0).decision.message for d in (a, b, c))
    a.on_inbox(comm.encode_inbox(2.05, [msg_b, msg_b, msg_a]), 2.05)  # duplicates count once, own echo ignored
    a.on_inbox(comm.encode_inbox(2.05, [msg_c]), 2.05)          # a second bundle before the tick adds up
    assert a.tick(2.05).neighbours == 2
    assert a.tick(2.1).neighbours == 0                          # used once: next tick needs new ones
    a.receive(msg_b)
    assert a.tick(2.05 + 1.0).neighbours == 0                   # older than max_message_age_s
    assert a.stats.counts["ok"] > 0 and a.stats.rejected == 0


def test_plant_hardware_mode_places_agents_and_keeps_resources():
    plant = MissionPlant(PAPER, seed=1, mode="hardware")
    w = plant.world
    useful = ((w.supply[0][:, None, :] > 0) & (w.demand[0][None, :, :] > 0)).any(-1)  # [N,M]
    i, m = (int(v) for v in np.argwhere(useful.numpy())[0])  # a drone carrying what consumer m needs
    measured = np.full((PAPER.n_agents, 3), np.nan)
    measured[i] = [*plant.frame.to_metres(w.consumer_pos[0, m].numpy().astype(np.float64)), 1.0]
    before = plant.observe(0.0)
    out = plant.step(0.05, measured_pos_m=measured)
    assert np.allclose(out.poses_m[i, :2], measured[i, :2], atol=1e-5)
    others = np.arange(PAPER.n_agents) != i
    assert np.allclose(out.poses_m[others], before.poses_m[others])   # no fresh pose: kept
    d0 = comm.decode_demands(before.demands, None, 1.0, None, None).demand
    d1 = comm.decode_demands(out.demands, None, 1.0, None, None).demand
    assert d1[m].sum() < d0[m].sum()                           # it released / covered at consumer m
    with pytest.raises(ValueError, match="measured positions"):
        plant.step(0.1)
    with pytest.raises(ValueError, match="mode"):
        MissionPlant(PAPER, mode="replay")


def test_plant_hardware_mode_takes_a_drone_on_the_ground_out_of_the_mission():
    """A drone whose takeoff failed (or that landed) must not deliver from the floor: measured
    below half the flight height, it is out for good, and eq. (3) is re-solved without it."""
    plant = MissionPlant(PAPER, seed=1, mode="hardware")
    w = plant.world
    useful = ((w.supply[0][:, None, :] > 0) & (w.demand[0][None, :, :] > 0)).any(-1)
    i, m = (int(v) for v in np.argwhere(useful.numpy())[0])
    measured = np.full((PAPER.n_agents, 3), np.nan)
    measured[i] = [*plant.frame.to_metres(w.consumer_pos[0, m].numpy().astype(np.float64)), 0.02]  # on the floor
    before = plant.observe(0.0)
    out = plant.step(0.05, measured_pos_m=measured)
    assert not out.active[i] and out.active[np.arange(PAPER.n_agents) != i].all()
    assert w.assign[0, i] == -1
    d0 = comm.decode_demands(before.demands, None, 1.0, None, None).demand
    d1 = comm.decode_demands(out.demands, None, 1.0, None, None).demand
    assert d1[m].sum() == pytest.approx(d0[m].sum())            # nothing delivered from the ground
    measured[i, 2] = 1.0                                        # back in the air: still out
    assert not plant.step(0.1, measured_pos_m=measured).active[i]
    plant.ground([])                                            # nothing to do
    unseen = MissionPlant(PAPER, seed=1, mode="hardware")
    unseen.ground([0, 3])                                       # no pose before the start
    assert (~unseen.observe(0.0).active).nonzero()[0].tolist() == [0, 3]
