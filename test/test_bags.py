"""rosbag2 recording: a real bag folder (metadata.yaml + .mcap) with the documented topics and
types, read back to the same arrays, regardless of message order and bag (receive) times: ticks are
the world's /lgtc/demands stamps, as in a `ros2 bag record` of the live graph; clear errors otherwise."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from lgtc_ros import comm
from lgtc_ros.bags import (START_EPOCH_NS, BagError, BagRecorder, meta_json, mission_meta, read_bag, topics,
                           typestore)
from lgtc_ros.comm import DemandBroadcast, NeighbourMessage, default_names
from lgtc_ros.replay import report

N, M, R, F, G, T = 3, 2, 2, 5, 4, 40
DT = 0.05
TERMS = ["assignment", "instantaneous_release", "collision"]
MISSION = {"scenario": "tiny", "seed": 7, "model": "models/lgtc.pt", "dt": DT}


def synthetic(seed: int = 0) -> dict[str, np.ndarray]:
    """T ticks of N drones and M consumers; drone 2 (cf3) lands at tick 20."""
    rng = np.random.default_rng(seed)
    active = np.ones((T, N), dtype=bool)
    active[20:, 2] = False
    demand = np.clip(1.0 - 0.02 * np.arange(T)[:, None, None] + rng.uniform(0, 0.1, (T, M, R)), 0, None)
    return {
        "t": np.arange(T) * DT, "pos": rng.uniform(-1, 1, (T, N, 2)), "active": active,
        "v_nominal": rng.normal(size=(T, N, 2)), "v_safe": rng.normal(size=(T, N, 2)),
        "x": rng.normal(size=(T, N, F)), "attention": rng.dirichlet(np.ones(M), size=(T, N)),
        "choice": rng.integers(-1, M, (T, N)), "psi": rng.normal(size=(T, N, G)),
        "consumer_pos": np.broadcast_to(rng.uniform(-1, 1, (M, 2)), (T, M, 2)).copy(),
        "demand": demand, "kinds": np.array([0, 1]), "terms": rng.normal(size=(T, N, len(TERMS))),
    }


def record(path: Path, d: dict[str, np.ndarray]) -> None:
    with BagRecorder(path, default_names(N), arena_size_m=4.0, altitude_m=1.0, metadata=MISSION) as rec:
        for k in range(T):
            t = float(d["t"][k])
            live = np.flatnonzero(d["active"][k])  # landed drones stop broadcasting
            messages = [NeighbourMessage(int(i), t, d["pos"][k, i], d["psi"][k, i], d["x"][k, i])
                        for i in live]
            states = [(d["x"][k, i], d["attention"][k, i], int(d["choice"][k, i])) for i in range(N)]
            rec.write_tick(t, d["pos"][k], d["active"][k], d["v_nominal"][k], d["v_safe"][k], messages,
                           DemandBroadcast(t, d["consumer_pos"][k], d["demand"][k], d["kinds"]), states,
                           (TERMS, d["terms"][k]))


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    d = synthetic()
    path = tmp_path_factory.mktemp("bags") / "mission"
    record(path, d)
    return path, d


def expected_counts() -> dict[str, int]:
    counts = {"/lgtc/meta": 1, "/lgtc/demands": T, "/lgtc/reward_terms": T}
    for name in default_names(N):
        for suffix in ("pose", "cmd_vel_nominal", "cmd_vel_safe", "lgtc/state"):
            counts[f"/{name}/{suffix}"] = T
        counts[f"/{name}/lgtc/message"] = T if name != "cf3" else 20
    return counts


def test_folder_is_a_real_rosbag2_with_exact_topics_types_counts(bag):
    path, _ = bag
    files = sorted(p.name for p in path.iterdir())
    assert "metadata.yaml" in files and any(f.endswith(".mcap") for f in files)
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["storage_identifier"] == "mcap" and info["version"] == 8
    listed = {e["topic_metadata"]["name"]: (e["topic_metadata"]["type"], e["message_count"])
              for e in info["topics_with_message_count"]}
    want_types = {
        "pose": "geometry_msgs/msg/PoseStamped", "cmd_vel_nominal": "geometry_msgs/msg/TwistStamped",
        "cmd_vel_safe": "geometry_msgs/msg/TwistStamped", "message": "std_msgs/msg/Float64MultiArray",
        "state": "std_msgs/msg/Float64MultiArray", "demands": "std_msgs/msg/Float64MultiArray",
        "reward_terms": "std_msgs/msg/Float64MultiArray", "meta": "std_msgs/msg/String"}
    counts = expected_counts()
    assert set(listed) == set(counts) == set(topics(default_names(N)))
    for topic, spec in topics(default_names(N)).items():
        assert listed[topic] == (want_types[spec.kind], counts[topic]), topic
    assert info["message_count"] == sum(counts.values())
    assert info["starting_time"]["nanoseconds_since_epoch"] == START_EPOCH_NS
    assert info["duration"]["nanoseconds"] == round((T - 1) * DT * 1e9)
    assert "lgtc_meta" in info["custom_data"]


def test_plain_rosbags_reader_sees_types_frames_and_metres(bag):
    path, d = bag
    with Reader(path) as reader:
        msgtypes = {c.topic: c.msgtype for c in reader.connections}
        assert msgtypes["/cf1/pose"] == "geometry_msgs/msg/PoseStamped"
        assert msgtypes["/cf2/cmd_vel_safe"] == "geometry_msgs/msg/TwistStamped"
        assert msgtypes["/cf3/lgtc/message"] == "std_msgs/msg/Float64MultiArray"
        assert msgtypes["/lgtc/meta"] == "std_msgs/msg/String"
        assert all(c.ext.serialization_format == "cdr" for c in reader.connections)
        poses = [c for c in reader.connections if c.topic == "/cf3/pose"]
        msgs = [(ns, typestore().deserialize_cdr(raw, c.msgtype)) for c, ns, raw in reader.messages(poses)]
    ns, first = msgs[0]
    assert first.header.frame_id == "world" and ns == START_EPOCH_NS
    assert first.header.stamp.sec * 10**9 + first.header.stamp.nanosec == ns
    assert first.pose.position.x == pytest.approx(d["pos"][0, 2, 0] * 2.0)  # 4 m arena: 2 m per unit
    assert first.pose.position.z == 1.0 and msgs[-1][1].pose.position.z == 0.0  # landed


def check_same(rec, d) -> None:
    assert rec.names == ("cf1", "cf2", "cf3") and rec.meta == MISSION
    np.testing.assert_allclose(rec.t, d["t"], atol=1e-9)
    for key in ("pos", "v_nominal", "v_safe", "x", "attention", "consumer_pos", "demand"):
        np.testing.assert_allclose(getattr(rec, key), d[key], rtol=1e-12, atol=1e-12, err_msg=key)
    np.testing.assert_array_equal(rec.active, d["active"])
    np.testing.assert_array_equal(rec.choice, d["choice"])
    np.testing.assert_array_equal(rec.kinds, d["kinds"])
    live = d["active"][:, :, None].repeat(G, 2)
    np.testing.assert_array_equal(rec.psi[live], d["psi"][live])
    assert np.isnan(rec.psi[~live]).all()  # cf3 stopped broadcasting after landing
    assert list(rec.reward_terms) == TERMS
    for j, name in enumerate(TERMS):
        np.testing.assert_array_equal(rec.reward_terms[name], d["terms"][:, :, j])
    assert rec.rejected == {} and rec.arena_size_m == 4.0 and rec.start_epoch_ns == START_EPOCH_NS


def test_read_bag_returns_the_recorded_arrays(bag):
    path, d = bag
    rec = read_bag(path)
    assert rec.pos.shape == (T, N, 2) and rec.x.shape == (T, N, F) and rec.psi.shape == (T, N, G)
    assert rec.attention.shape == (T, N, M) and rec.demand.shape == (T, M, R)
    check_same(rec, d)


def test_read_bag_accepts_any_message_order(bag, tmp_path):
    path, d = bag
    with Reader(path) as reader:
        conns = list(reader.connections)
        raw = [(c.id, ns, bytes(data)) for c, ns, data in reader.messages()]
    random.Random(0).shuffle(conns)
    random.Random(1).shuffle(raw)
    shuffled = tmp_path / "shuffled"
    with Writer(shuffled, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        new = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=typestore()) for c in conns}
        for cid, ns, data in raw:
            writer.write(new[cid], ns, data)
    check_same(read_bag(shuffled), d)


def test_clear_errors(bag, tmp_path):
    with pytest.raises(BagError, match="no metadata.yaml"):
        read_bag(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metadata.yaml").write_text("not: a bag\n")
    with pytest.raises(ValueError, match=str(bad)):
        read_bag(bad)

    path, _ = bag
    partial = tmp_path / "partial"
    with Reader(path) as reader, Writer(partial, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        keep = [c for c in reader.connections if c.topic != "/cf2/pose"]
        new = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=typestore()) for c in keep}
        for c, ns, data in reader.messages(keep):
            writer.write(new[c.id], ns, data)
    with pytest.raises(BagError, match=r"partial.*/cf2/pose"):
        read_bag(partial)

    foreign = tmp_path / "foreign"
    with Writer(foreign, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection("/chatter", "std_msgs/msg/String", typestore=typestore())
    with pytest.raises(BagError, match=r"foreign.*/lgtc/meta"):
        read_bag(foreign)


def test_recorder_validates_and_keeps_partial_bag_on_error(tmp_path):
    with pytest.raises(ValueError):
        BagRecorder(tmp_path / "x", ["cf1"], altitude_m=0.0)
    path = tmp_path / "crash"
    dem = DemandBroadcast(0.0, np.zeros((1, 2)), np.ones((1, 1)), np.array([0]))
    with pytest.raises(ValueError, match="agent_id"), BagRecorder(path, ["a", "b"]) as rec:
        rec.write_tick(0.0, np.zeros((2, 2)), [True, True], np.zeros((2, 2)), np.zeros((2, 2)), [],
                       dem, [(np.zeros(3), np.ones(1), 0), None])
        rec.write_tick(0.05, np.zeros((2, 2)), [True, False], np.zeros((2, 2)), np.zeros((2, 2)),
                       [NeighbourMessage(5, 0.05, np.zeros(2), np.zeros(1), np.zeros(1))], dem,
                       [None, None])
    rec = read_bag(path)  # the tick before the crash survived whole, the bad tick left no trace
    assert rec.names == ("a", "b") and rec.t.tolist() == [0.0]
    assert rec.choice.tolist() == [[0, -1]] and rec.reward_terms == {} and rec.active.tolist() == [[True, True]]
    assert rec.psi.shape == (1, 2, 0) and np.isnan(rec.x[0, 1]).all()


def test_names_default_from_index_and_are_validated(tmp_path):
    assert list(topics(2))[:3] == ["/lgtc/meta", "/lgtc/demands", "/lgtc/reward_terms"]
    assert topics(2) == topics(["cf1", "cf2"]) and "/cf2/lgtc/state" in topics(2)
    for bad in (["cf1", "cf1"], ["cf/1"], ["1cf"], [""]):
        with pytest.raises(ValueError):
            topics(bad)
    with BagRecorder(tmp_path / "two", 2) as rec:
        assert rec.names == ("cf1", "cf2")


def test_same_inputs_give_identical_bags(bag, tmp_path):
    path, d = bag
    again = tmp_path / path.name
    record(again, d)
    mcap = f"{path.name}.mcap"
    assert (again / mcap).read_bytes() == (path / mcap).read_bytes()


# ----------------------------------------------------------------------------- ticks from the world's stamps

FIELDS = ("t", "pos", "active", "v_nominal", "v_safe", "x", "attention", "choice", "supply", "psi",
          "consumer_pos", "demand", "kinds")


def rewrite(src: Path, dst: Path, edit, seed: int = 0) -> None:
    """Copy bag `src` to `dst` in shuffled order; `edit(topic, log_ns, raw)` -> (log_ns, raw) or None (drop)."""
    with Reader(src) as reader:
        conns = list(reader.connections)
        raw = [(c.id, c.topic, ns, bytes(data)) for c, ns, data in reader.messages()]
    random.Random(seed).shuffle(raw)
    with Writer(dst, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        new = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=typestore()) for c in conns}
        for cid, topic, ns, data in raw:
            if (kept := edit(topic, ns, data)) is not None:
                writer.write(new[cid], *kept)


def test_receive_jitter_and_order_do_not_change_the_replay(bag, tmp_path):
    """`ros2 bag record` logs receive times: 0-3 ms late, out of order. The ticks must not move."""
    path, d = bag
    rng = np.random.default_rng(5)
    jittered = tmp_path / "jittered"
    rewrite(path, jittered, lambda topic, ns, raw: (ns + int(rng.integers(0, 3_000_001)), raw))
    with Reader(jittered) as reader:
        assert len({ns for _, ns, _ in reader.messages()}) > 10 * T  # the bag times really are scattered
    clean, rec = read_bag(path), read_bag(jittered)
    for key in FIELDS:
        np.testing.assert_array_equal(getattr(rec, key), getattr(clean, key), err_msg=key)
    assert rec.reward_terms.keys() == clean.reward_terms.keys()
    for name in TERMS:
        np.testing.assert_array_equal(rec.reward_terms[name], clean.reward_terms[name])
    assert rec.rejected == clean.rejected == {}
    check_same(rec, d)


def _msg(msgtype: str, **fields):
    return typestore().types[msgtype](**fields)


def _header(ns: int):
    stamp = _msg("builtin_interfaces/msg/Time", sec=ns // 10**9, nanosec=ns % 10**9)
    return _msg("std_msgs/msg/Header", stamp=stamp, frame_id="world")


def _pose(ns: int, x: float, y: float, z: float):
    pose = _msg("geometry_msgs/msg/Pose", position=_msg("geometry_msgs/msg/Point", x=x, y=y, z=z),
                orientation=_msg("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0))
    return _msg("geometry_msgs/msg/PoseStamped", header=_header(ns), pose=pose)


def _twist(ns: int, v):
    def vec(x, y):
        return _msg("geometry_msgs/msg/Vector3", x=float(x), y=float(y), z=0.0)
    return _msg("geometry_msgs/msg/TwistStamped", header=_header(ns),
                twist=_msg("geometry_msgs/msg/Twist", linear=vec(*v), angular=vec(0, 0)))


def _floats(arr: comm.FloatArray):
    return arr.to_msg(*(typestore().types[f"std_msgs/msg/{c}"]
                        for c in ("Float64MultiArray", "MultiArrayLayout", "MultiArrayDimension")))


LIVE_T, MISSING, DUPLICATE = 100, (10, 11, 90), 20  # cf2 has no state at MISSING ticks, cf1 two at DUPLICATE
MS = 1_000_000


def write_bag(path: Path, names, start: int, out, receive) -> None:
    """A bag of every topic of `names`; `out` [(topic, stamp ns, message)] written in shuffled
    order at bag time receive(stamp ns)."""
    meta = mission_meta(names, 4.0, 1.0, start, {"scenario": "live", "dt": DT, "events": []})
    out = list(out)
    random.Random(0).shuffle(out)
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {s.topic: writer.add_connection(s.topic, s.msgtype, typestore=typestore())
                 for s in topics(names).values()}
        writer.write(conns["/lgtc/meta"], start, typestore().serialize_cdr(
            _msg("std_msgs/msg/String", data=meta_json(meta)), "std_msgs/msg/String"))
        for topic, ns, msg in out:
            writer.write(conns[topic], receive(ns), typestore().serialize_cdr(msg, conns[topic].msgtype))


def demands_at(ns: int, k: int, d: dict) -> tuple:
    broadcast = DemandBroadcast(ns / 1e9, d["consumer_pos"][k], d["demand"][k], d["kinds"])
    return "/lgtc/demands", ns, _floats(comm.encode_demands(broadcast))


def live_graph_bag(path: Path, seed: int = 0) -> dict:
    """What `ros2 bag record` of sim.launch.py writes: every node stamps with its own clock reading
    (world ticks every 50 +- 5 ms; agents 2-8 ms after the tick, the CBF 5-15 ms after), the bag
    time is the receive time (stamp + 0-3 ms) and nothing is in order. Returns the expected arrays."""
    rng = np.random.default_rng(seed)
    names = default_names(N)
    start = START_EPOCH_NS + 123_456_789  # the world's mission start, not on any grid
    ticks = start + np.cumsum(rng.integers(45 * MS, 55 * MS + 1, LIVE_T))
    t = np.arange(LIVE_T)[:, None, None] * DT
    d = {"t": (ticks - start) / 1e9,
         "pos": 0.5 * np.stack([np.cos(t[..., 0] + np.arange(N)), np.sin(t[..., 0] + np.arange(N))], -1),
         "v_nominal": rng.normal(size=(LIVE_T, N, 2)), "v_safe": rng.normal(size=(LIVE_T, N, 2)),
         "x": rng.normal(size=(LIVE_T, N, F)), "attention": rng.dirichlet(np.ones(M), size=(LIVE_T, N)),
         "choice": np.broadcast_to(np.arange(N) % M, (LIVE_T, N)).copy(), "supply": rng.uniform(size=(LIVE_T, N, R)),
         "psi": rng.normal(size=(LIVE_T, N, G)),
         "consumer_pos": np.broadcast_to([[0.5, 0.5], [-0.5, 0.0]], (LIVE_T, M, 2)),
         "demand": np.clip(1 - 0.01 * t + np.zeros((LIVE_T, M, R)), 0, None), "kinds": np.array([0, 1]),
         "terms": rng.normal(size=(LIVE_T, N, len(TERMS)))}
    out = []  # (topic, stamp ns, message)

    def state(i, ns, k, wrong=False):  # wrong: another decision than the expected one
        x, choice = d["x"][k, i] + wrong, (d["choice"][k, i] + wrong) % M
        return (f"/{names[i]}/lgtc/state", ns, _floats(comm.encode_agent_state(
            i, ns / 1e9, x, d["attention"][k, i], choice, d["supply"][k, i])))

    older = int(ticks[DUPLICATE]) + 1_500_000  # cf1's other state at DUPLICATE: stamped earlier, received later
    for k, tick in enumerate(ticks.tolist()):
        out.append(demands_at(tick, k, d))
        out.append(("/lgtc/reward_terms", tick, _floats(comm.encode_reward_terms(tick / 1e9, TERMS, d["terms"][k]))))
        for i, name in enumerate(names):
            world = tick + (0 if i == 0 else int(rng.integers(0, 300_000)))  # poses: after the world's step
            out.append((f"/{name}/pose", world, _pose(world, *(2.0 * d["pos"][k, i]), 1.0)))
            agent = tick + int(rng.integers(2 * MS, 8 * MS))
            msg = NeighbourMessage(i, agent / 1e9, d["pos"][k, i], d["psi"][k, i], d["x"][k, i])
            out.append((f"/{name}/lgtc/message", agent, _floats(comm.encode_neighbour(msg))))
            cmd = agent + 150_000
            out.append((f"/{name}/cmd_vel_nominal", cmd, _twist(cmd, 2.0 * d["v_nominal"][k, i])))
            if not (i == 1 and k in MISSING):
                out.append(state(i, agent, k))
            if i == 0 and k == DUPLICATE:  # must lose to the later-stamped state
                out.append(state(i, older, k, wrong=True))
            safe = tick + int(rng.integers(5 * MS, 15 * MS))
            out.append((f"/{name}/cmd_vel_safe", safe, _twist(safe, 2.0 * d["v_safe"][k, i])))
    # before the world's first tick: agents already deciding; after its last: the drones land,
    # the nodes run on until the recording is stopped
    early = int(ticks[0]) - 20 * MS
    out += [state(2, early, 0), ("/cf1/pose", early, _pose(early, 0.0, 0.0, 0.0))]
    for late in (int(ticks[-1]) + 60 * MS, int(ticks[-1]) + 2000 * MS):
        out += [(f"/{name}/pose", late, _pose(late, 0.0, 0.0, 0.0)) for name in names]
    out.append(state(0, int(ticks[-1]) + 70 * MS, LIVE_T - 1))
    for k in MISSING:
        d["x"][k, 1], d["attention"][k, 1], d["supply"][k, 1], d["choice"][k, 1] = np.nan, np.nan, np.nan, -1

    write_bag(path, names, start, out,
              lambda ns: ns + int(rng.integers(0, 3 * MS + 1)) + (20 * MS if ns == older else 0))
    return d


def test_live_graph_bag_groups_by_the_world_ticks(tmp_path):
    path = tmp_path / "live"
    d = live_graph_bag(path)
    rec = read_bag(path)
    assert rec.pos.shape == (LIVE_T, N, 2) and rec.supply.shape == (LIVE_T, N, R)
    np.testing.assert_allclose(rec.t, d["t"], atol=1e-6)  # stamps travel as float seconds: us resolution
    assert rec.active.all()  # no flicker: a pose in every tick, the late "landed" poses left out
    for key in ("pos", "v_nominal", "v_safe", "x", "attention", "choice", "supply", "psi", "consumer_pos",
                "demand", "kinds"):
        np.testing.assert_array_equal(getattr(rec, key), d[key], err_msg=key)
    for j, name in enumerate(TERMS):
        np.testing.assert_array_equal(rec.reward_terms[name], d["terms"][:, :, j])
    assert rec.rejected == {"before_first_tick": 2, "after_last_tick": 2 * N + 1}

    summary = report(path, tmp_path / "report")
    assert summary["landed"] == [] and summary["duration_s"] == pytest.approx(LIVE_T * DT, abs=0.3)
    assert [f["allocation"] for f in summary["allocations_formed"]] == [[0, 1, 0]]
    assert np.isfinite(rec.pos).all() and (tmp_path / "report" / "report.png").stat().st_size > 10_000


def test_motion_capture_poses_the_latest_before_the_next_tick_wins(tmp_path):
    """Hardware: poses come from motion capture at 100 Hz on its own phase, and go on after the
    world stops; each tick gets the last pose stamped before the next tick (less the tolerance)."""
    rng = np.random.default_rng(3)
    start, period = START_EPOCH_NS, 50 * MS
    ticks = start + np.arange(1, 21) * period + rng.integers(-5 * MS, 5 * MS, 20)
    mocap = np.arange(start + 3_300_000, int(ticks[-1]) + 300 * MS, 10 * MS)
    d = {"consumer_pos": np.zeros((20, 1, 2)), "demand": np.ones((20, 1, 1)), "kinds": np.array([0])}
    out = [demands_at(int(ns), k, d) for k, ns in enumerate(ticks)]
    out += [("/cf1/pose", int(ns), _pose(int(ns), (ns - start) / 1e9, 0.0, 1.0)) for ns in mocap]  # x = its time
    write_bag(tmp_path / "mocap", ["cf1"], start, out, lambda ns: ns + int(rng.integers(0, 3 * MS + 1)))
    rec = read_bag(tmp_path / "mocap")
    median = int(np.median(np.diff(ticks)))
    nxt = np.append(ticks[1:], ticks[-1] + median) - MS  # the next tick claims what is stamped from here on
    want = [mocap[mocap < end].max() for end in nxt]
    np.testing.assert_array_equal(rec.pos[:, 0, 0] * 2.0, (np.array(want) - start) / 1e9)
    assert rec.active.all() and rec.rejected == {"before_first_tick": int((mocap < ticks[0] - MS).sum()),
                                                 "after_last_tick": int((mocap >= nxt[-1]).sum())}


def test_clear_errors_about_the_world_ticks(bag, tmp_path):
    path, _ = bag
    silent = tmp_path / "silent"  # the topic exists, the world never ticked
    rewrite(path, silent, lambda topic, ns, raw: (ns, raw) if topic != "/lgtc/demands" else None)
    with pytest.raises(BagError, match=r"silent.*no valid /lgtc/demands"):
        read_bag(silent)

    def mission_clock(topic, ns, raw):  # demands stamped in s since the start: not the bag's clock
        if topic != "/lgtc/demands":
            return ns, raw
        dem = comm.decode_demands(typestore().deserialize_cdr(raw, "std_msgs/msg/Float64MultiArray"), None, np.inf,
                                  None, None)
        moved = DemandBroadcast(dem.stamp - START_EPOCH_NS / 1e9, dem.consumer_pos, dem.demand, dem.kinds)
        return ns, typestore().serialize_cdr(_floats(comm.encode_demands(moved)), "std_msgs/msg/Float64MultiArray")

    rewrite(path, tmp_path / "clocks", mission_clock)
    with pytest.raises(BagError, match=r"clocks.*another clock"):
        read_bag(tmp_path / "clocks")


def test_a_recording_cut_mid_tick_loses_that_tick_not_its_drones(bag, tmp_path):
    """`ros2 bag record` stopped while the world published: the last tick lacks some poses. It is
    dropped (counted), rather than read as drones that landed."""
    path, d = bag
    with Reader(path) as reader:
        last = max(ns for _, ns, _ in reader.messages())
    cut = tmp_path / "cut"
    rewrite(path, cut, lambda topic, ns, raw: None if ns == last and topic in ("/cf2/pose", "/cf3/pose") else (ns, raw))
    clean, rec = read_bag(path), read_bag(cut)
    assert len(rec.t) == len(clean.t) - 1 and rec.rejected == {"cut_last_tick": 1}
    np.testing.assert_array_equal(rec.pos, clean.pos[:-1])
    assert rec.active.all() == clean.active[:-1].all()
