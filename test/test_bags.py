"""rosbag2 recording: a real bag folder (metadata.yaml + .mcap) with the documented topics and
types, read back to the same arrays, regardless of message order; clear errors otherwise."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from lgtc_ros.bags import START_EPOCH_NS, BagError, BagRecorder, read_bag, topics, typestore
from lgtc_ros.comm import DemandBroadcast, NeighbourMessage, default_names

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
