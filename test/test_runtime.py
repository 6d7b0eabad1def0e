"""The per-drone runtime: radio model, equivalence with the batched evaluator, failure handling,
recording to a rosbag2 and replaying it (report and open-loop regression)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from lgtc_ros.bags import BagRecorder, read_bag
from lgtc_ros.evaluate import rollout
from lgtc_ros.policy.export import export
from lgtc_ros.policy.heads import ActorCritic, HeadConfig
from lgtc_ros.policy.learned import LearnedPolicy
from lgtc_ros.policy.lgtc import LGTCConfig
from lgtc_ros.replay import formations, open_loop, report
from lgtc_ros.runtime.drone import load_drone_modules
from lgtc_ros.runtime.radio import Radio, RadioConfig
from lgtc_ros.runtime.swarm import RuntimeConfig, SwarmRuntime
from lgtc_ros.scenario import load_scenario, resolve_scenario

PAPER = load_scenario(resolve_scenario("paper_10x4"))
SHORT = dataclasses.replace(PAPER, episode_steps=60)




# ----------------------------------------------------------------------------- radio


def test_radio_delivers_next_tick_within_range_only():
    radio = Radio(3, RadioConfig(radius=0.5))
    pos = np.array([[0.0, 0.0], [0.3, 0.0], [0.9, 0.0]])
    active = np.ones(3, bool)
    radio.send(0, 0, "hello")
    assert radio.deliver(0, pos, active) == [[], [], []]           # not the same tick
    inbox = radio.deliver(1, pos, active)
    assert inbox == [[], [(0, "hello")], []]                        # agent 2 is out of range
    assert radio.deliver(2, pos, active) == [[], [], []]            # delivered once


def test_radio_latency_and_range_at_delivery_time():
    radio = Radio(2, RadioConfig(radius=0.5, latency_ticks=2))
    radio.send(0, 0, "m")
    near, far = np.array([[0, 0], [0.2, 0]]), np.array([[0, 0], [0.8, 0]])
    assert radio.deliver(1, near, np.ones(2, bool)) == [[], []]
    assert radio.deliver(2, near, np.ones(2, bool)) == [[], []]
    assert radio.deliver(3, near, np.ones(2, bool)) == [[], [(0, "m")]]
    radio.send(3, 0, "m2")
    assert radio.deliver(6, far, np.ones(2, bool)) == [[], []]      # moved away before arrival


def test_radio_drop_and_burst_rates():
    n, ticks = 6, 4000
    pos = np.zeros((n, 2))
    active = np.ones(n, bool)

    def rate(cfg):
        radio = Radio(n, cfg)
        got = 0
        for k in range(ticks):
            radio.send(k, 0, k)
            got += sum(len(box) for box in radio.deliver(k, pos, active))
        return got / ((ticks - 1) * (n - 1))

    assert rate(RadioConfig(radius=1.0)) == pytest.approx(1.0)
    assert rate(RadioConfig(radius=1.0, drop_prob=0.3, seed=1)) == pytest.approx(0.7, abs=0.02)
    # Gilbert-Elliott: stationary burst probability enter / (enter + exit) = 0.1 / 0.4 = 0.25
    assert rate(RadioConfig(radius=1.0, burst_enter=0.1, burst_exit=0.3, seed=2)) == pytest.approx(0.75, abs=0.03)
    with pytest.raises(ValueError, match="probability"):
        Radio(2, RadioConfig(drop_prob=1.5))


# ----------------------------------------------------------------------------- runtime


def test_runtime_equals_batched_evaluation(model_path):
    torch.set_num_threads(1)
    drones, _ = load_drone_modules(model_path, SHORT, SHORT.n_agents)
    assert drones[0] is not drones[1]  # every drone holds its own copy of the policy
    res = SwarmRuntime(SHORT, drones=drones, config=RuntimeConfig(cbf="off"), seed=5).run()
    stats, trace = rollout(SHORT, LearnedPolicy.load(model_path, SHORT), 1, seed=5, trace=True)
    np.testing.assert_allclose(np.stack(res.trace.pos), np.stack(trace.pos), atol=1e-5)
    assert res.stats.returns[0] == pytest.approx(stats.returns[0], abs=1e-4)
    assert res.radio["delivered"] > 0 and res.decode == {"ok": res.decode["ok"]}
    assert (res.overhead_s >= 0).all()


def test_runtime_with_cbf_has_no_collisions_and_counts_nothing_bad(model_path):
    drones, _ = load_drone_modules(model_path, SHORT, SHORT.n_agents, separate=False)
    for seed in range(3):
        res = SwarmRuntime(SHORT, drones=drones, config=RuntimeConfig(cbf="decentralized"), seed=seed).run()
        assert res.stats.collisions.sum() == 0 and res.stats.min_distance[0] >= SHORT.safety_radius - 1e-3
        assert res.cbf["calls"] > 0 and res.cbf.get("fallback", 0) == 0


def test_stale_messages_are_rejected_and_counted_not_raised(model_path):
    drones, _ = load_drone_modules(model_path, SHORT, SHORT.n_agents, separate=False)
    cfg = RuntimeConfig(cbf="off", radio=RadioConfig(latency_ticks=5), max_message_age_s=0.1)
    res = SwarmRuntime(SHORT, drones=drones, config=cfg, seed=0).run()
    assert res.decode["stale"] > 0 and res.decode.get("ok", 0) > 0  # demands still fresh
    lossy = RuntimeConfig(cbf="off", radio=RadioConfig(drop_prob=0.5, burst_enter=0.05, seed=3))
    res = SwarmRuntime(SHORT, drones=drones, config=lossy, seed=0).run()
    assert res.radio["dropped_random"] > 0 and res.radio["dropped_burst"] > 0


def test_centralized_controller_in_the_runtime():
    from lgtc_ros.expert import CentralizedExpert

    res = SwarmRuntime(SHORT, centralized=CentralizedExpert(), config=RuntimeConfig(cbf="centralized"), seed=0).run()
    assert res.stats.collisions.sum() == 0 and res.choices.max() == -1  # no per-drone decisions


def test_a_mission_runs_with_the_startup_objects_out_of_the_collector():
    """During the ticks every object alive before the mission is frozen (a full collection would
    otherwise walk them all: 117 ms at N = 50); afterwards they are collectable again."""
    import gc

    from lgtc_ros.expert import CentralizedExpert

    frozen = []
    SwarmRuntime(dataclasses.replace(SHORT, episode_steps=3), centralized=CentralizedExpert(), seed=0).run(
        progress=lambda _: frozen.append(gc.get_freeze_count()))
    assert len(frozen) == 3 and min(frozen) > 1000
    assert gc.get_freeze_count() == 0


def test_a_mission_leaves_a_process_s_own_frozen_objects_frozen():
    """A process that froze its start-up objects (a node) keeps them frozen after a mission."""
    import gc

    from lgtc_ros.expert import CentralizedExpert

    gc.freeze()
    try:
        SwarmRuntime(dataclasses.replace(SHORT, episode_steps=2), centralized=CentralizedExpert(), seed=0).run()
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()


# ----------------------------------------------------------------------------- record and replay


def test_record_replay_and_open_loop(model_path, tmp_path):
    drones, _ = load_drone_modules(model_path, SHORT, SHORT.n_agents, separate=False)
    meta = {"scenario": "paper_10x4", "policy": str(model_path), "seed": 1, "cbf": "off",
            "comm_radius": SHORT.comm_radius, "consumer_radius": SHORT.consumer_radius, "events": []}
    with BagRecorder(tmp_path / "bag", SHORT.n_agents, metadata=meta) as rec:
        res = SwarmRuntime(SHORT, drones=drones, config=RuntimeConfig(cbf="off"), seed=1, recorder=rec).run()
    bag = read_bag(tmp_path / "bag")
    assert bag.pos.shape == (60, 10, 2) and bag.supply.shape == (60, 10, 4)
    np.testing.assert_allclose(bag.pos, np.stack(res.trace.pos), atol=1e-9)
    np.testing.assert_array_equal(bag.choice, res.choices)
    assert set(bag.reward_terms) >= {"collision", "assignment"}

    out = report(tmp_path / "bag", tmp_path / "report", model=model_path)
    assert (tmp_path / "report" / "report.png").stat().st_size > 20_000
    assert "Allocations formed" in (tmp_path / "report" / "report.md").read_text()
    assert out["open_loop"]["choice_mismatch"] == 0 and out["open_loop"]["max_velocity_diff"] < 1e-4
    json.loads((tmp_path / "report" / "report.json").read_text())

    torch.manual_seed(9)
    other = ActorCritic(LGTCConfig(n_resources=4, feature_dim=16, state_dim=8, hidden_dim=16), HeadConfig((32, 32)))
    other_pt, _ = export(other, PAPER, tmp_path / "other.pt")
    diverged = open_loop(bag, other_pt)
    assert diverged["choice_mismatch"] > 0 and diverged["first_divergence_s"] != "none"


def test_formations_need_to_hold():
    t = np.arange(10) * 0.5
    alloc = np.array([[0, 1]] * 4 + [[1, 1]] + [[0, 0]] * 5)
    assert formations(alloc, t, hold_s=2.0) == [(0.0, (0, 1)), (2.5, (0, 0))]


def test_discharge_mission_reallocates_with_the_shipped_policy(tmp_path):
    """Fig. 5/6 end to end: shipped discharge policy, per-drone runtime, CBF, bag, replay."""
    from lgtc_ros.cli import main

    bag = tmp_path / "bag"
    assert main(["sim", "--scenario", "discharge_5x3", "--policy", "models/lgtc_discharge_5x3.pt",
                 "--episodes", "1", "--record", str(bag), "--quiet", "--json"]) == 0
    result = report(bag, tmp_path / "report")
    (event,) = result["events"]
    assert event["orphaned"] == [0]                        # the landed drone served c0 alone
    assert 0 < event["decision_s"] < 20 and 0 < event["reallocation_s"] < 30  # another drone took over
    assert read_bag(bag).active[-1].tolist() == [False, True, True, True, True]


def test_runtime_bench_rows_report_time_split_and_memory(model_path):
    from lgtc_ros.bench import bench_runtime

    (row,) = bench_runtime(model_path, scenarios=("scale_5x2",), ticks=25)
    assert (row["agents"], row["ticks"]) == (5, 25)
    assert row["tick_p50_ms"] >= row["policy_p50_ms"] > 0 and row["overhead_p50_ms"] >= 0
    assert 0 < row["rss_mb_tick20"] <= row["rss_mb_end"] * 1.5 and 0 <= row["ticks_over_period"] <= 25


# ----------------------------------------------------------------------------- the ROS graph's timing


def test_graph_timing_breaks_a_filter_that_ignores_pose_ages_not_one_that_counts_them():
    """The sim graph's timing inside the runtime: poses reach the CBF 0-2 ticks late and out of
    order, nominal and safe commands a tick late, the world flies a command until it is 3 (old
    world node) or 2 ticks old. A filter that trusts every pose as current lets pairs inside the
    safety radius (what the 10-drone graph showed); counting each pose's age, none does, also
    with the CBF at 10 Hz. Seeds 8 and 9 are two of the 4 in 0..11 where the old filter collides."""
    from lgtc_ros.runtime.asynchrony import Asynchrony

    drones, _ = load_drone_modules("models/lgtc_paper_10x4.pt", PAPER, PAPER.n_agents, separate=False)
    for seed in (8, 9):
        old = RuntimeConfig(asynchrony=Asynchrony(account_for_age=False, hold_ticks=3, seed=seed))
        res = SwarmRuntime(PAPER, drones=drones, config=old, seed=seed).run()
        assert res.stats.collisions.sum() > 0 and res.stats.min_distance[0] < PAPER.safety_radius
        for period in (1, 2):
            new = RuntimeConfig(asynchrony=Asynchrony(cbf_period_ticks=period, seed=seed))
            res = SwarmRuntime(PAPER, drones=drones, config=new, seed=seed).run()
            assert res.stats.collisions.sum() == 0 and res.stats.min_distance[0] >= PAPER.safety_radius
            assert res.stats.returns.mean() > 3.0  # still flies the mission


def test_delayed_link_keeps_the_newest_sample_whatever_the_arrival_order():
    from lgtc_ros.runtime.asynchrony import Asynchrony, DelayedLink

    link = DelayedLink(2, 1, max_delay=3, drop_prob=0.0, rng=np.random.default_rng(0))
    seen = []
    for k in range(40):
        link.send(k, np.array([[k], [100 + k]], dtype=float), np.ones(2, bool))
        link.receive(k)
        seen.append(link.stamp.copy())
        if k >= 3:  # by then every drone has a sample, at most 3 ticks old, and it is its own
            assert (link.value[:, 0] == [link.stamp[0], 100 + link.stamp[1]]).all()
            assert (k - link.stamp <= 3).all()
    assert (np.diff(np.array(seen), axis=0) >= 0).all()  # never goes back in time
    with pytest.raises(ValueError, match="cbf_period_ticks"):
        RuntimeConfig(asynchrony=Asynchrony(cbf_period_ticks=0)).validate()
    with pytest.raises(ValueError, match="max_pose_age_ticks"):
        RuntimeConfig(asynchrony=Asynchrony(max_pose_age_ticks=0)).validate()


def test_the_timing_model_holds_drones_whose_poses_stopped():
    """As the CBF node: a drone whose newest pose is older than `max_pose_age_ticks` is held."""
    from lgtc_ros.runtime.asynchrony import Asynchrony, GraphTiming

    timing = GraphTiming(Asynchrony(pose_delay_ticks=0, max_pose_age_ticks=3), 2)
    pos, v, active = np.zeros((2, 2)), np.zeros((2, 2)), np.ones(2, dtype=bool)
    holds = []
    for k in range(10):
        timing.poses.drop_prob = 1.0 if k >= 2 else 0.0  # drone poses stop after tick 1
        seen = timing.cbf_inputs(k, pos, v, active, 0.5, 0.05)
        assert seen.known.all()
        holds.append(seen.hold.tolist())
    assert holds[:5] == [[False, False]] * 5 and holds[5:] == [[True, True]] * 5  # age 4 ticks from tick 5
