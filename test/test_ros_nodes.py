"""The rclpy nodes in one process (real rclpy; only the markers test sends DDS traffic, between two
nodes of this process): declared parameters with descriptions and ranges, topic names that follow
the namespace, QoS chosen per topic, frame ids, the world's RViz markers. The graph itself runs as
separate processes in test_ros_graph.py."""
from __future__ import annotations

import dataclasses
import itertools
import os
import time

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray
from visualization_msgs.msg import Marker, MarkerArray

from lgtc_ros import comm, markers
from lgtc_ros.markers import consumer_color
from lgtc_ros.nodes.agent_node import AgentNode
from lgtc_ros.nodes.cbf_node import CbfNode
from lgtc_ros.nodes.common import StartupError, now_s, to_msg, twist
from lgtc_ros.nodes.radio_node import RadioNode
from lgtc_ros.nodes.swarm_node import SwarmNode
from lgtc_ros.nodes.world_node import MarkerMessages, WorldNode

SCENARIO, MODEL = "discharge_5x3", "models/lgtc_discharge_5x3.pt"
_domains = itertools.count()


def domain_id() -> int:
    """A ROS_DOMAIN_ID of this test alone (other tests and concurrent runs use others)."""
    return 1 + (os.getpid() * 7 + next(_domains)) % 100


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id())
    yield ctx
    rclpy.try_shutdown(context=ctx)


def params(**values) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in {"scenario": SCENARIO, **values}.items()]


def make_all(context, namespace: str = "/"):
    agent_ns = namespace.rstrip("/") + "/cf2"
    return [WorldNode(context=context, namespace=namespace, parameter_overrides=params()),
            RadioNode(context=context, namespace=namespace, parameter_overrides=params()),
            CbfNode(context=context, namespace=namespace, parameter_overrides=params()),
            AgentNode(context=context, namespace=agent_ns, parameter_overrides=params(model=MODEL)),
            SwarmNode(context=context, namespace=namespace, parameter_overrides=params(model=MODEL))]


def test_every_parameter_is_described_and_restart_only_ones_are_read_only(context):
    for node in make_all(context):
        for name in node._parameters:
            if name == "use_sim_time":
                continue
            (d,) = node.describe_parameters([name])
            assert d.description, f"{node.get_name()}: {name} has no description"
            if name in ("scenario", "names", "model", "mode", "seed", "form"):
                assert d.read_only, f"{node.get_name()}: {name} needs a restart, should be read-only"
        node.destroy_node()


def test_ranges_and_choices_are_declared(context):
    radio, cbf = make_all(context)[1:3]
    (drop,) = radio.describe_parameters(["drop_prob"])
    assert (drop.floating_point_range[0].from_value, drop.floating_point_range[0].to_value) == (0.0, 1.0)
    (form,) = cbf.describe_parameters(["form"])
    assert "decentralized" in form.additional_constraints and "centralized" in form.additional_constraints
    (latency,) = radio.describe_parameters(["latency_ticks"])
    assert latency.integer_range[0].from_value == 0


def topics(node) -> tuple[dict, dict]:
    """{topic: qos} of the node's publishers and subscriptions."""
    return ({p.topic_name: p.qos_profile for p in node.publishers},
            {s.topic_name: s.qos_profile for s in node.subscriptions})


def test_topics_follow_the_namespace_so_two_swarms_never_cross(context):
    world, radio, cbf, agent, swarm = make_all(context, namespace="/lab_a")
    pubs, subs = topics(agent)
    assert agent.get_fully_qualified_name() == "/lab_a/cf2/lgtc_agent"
    assert {"/lab_a/cf2/lgtc/message", "/lab_a/cf2/lgtc/state", "/lab_a/cf2/cmd_vel_nominal"} <= set(pubs)
    assert {"/lab_a/cf2/pose", "/lab_a/cf2/lgtc/inbox", "/lab_a/cf2/lgtc/supply", "/lab_a/lgtc/demands",
            "/lab_a/lgtc/meta"} <= set(subs)
    pubs, subs = topics(world)
    assert {"/lab_a/cf1/pose", "/lab_a/cf5/lgtc/supply", "/lab_a/lgtc/demands", "/lab_a/lgtc/meta"} <= set(pubs)
    assert "/lab_a/cf3/cmd_vel_safe" in subs
    assert "/lab_a/cf4/lgtc/inbox" in topics(radio)[0] and "/lab_a/lgtc/cbf" in topics(cbf)[0]
    assert "/lab_a/cf5/cmd_vel_nominal" in topics(swarm)[0]
    names = {n.get_fully_qualified_name() for n in (world, radio, cbf, agent, swarm)}
    assert len(names) == 5                                              # no two nodes share a name


def test_qos_newest_wins_for_per_tick_data_latched_mission(context):
    world, radio, cbf, agent, _ = make_all(context)
    pubs, subs = topics(agent)
    assert subs["/cf2/pose"].reliability == ReliabilityPolicy.BEST_EFFORT and subs["/cf2/pose"].depth == 1
    for topic in ("/cf2/lgtc/inbox", "/lgtc/demands", "/cf2/lgtc/supply"):   # newest wins, matches any publisher
        assert subs[topic].depth == 1 and subs[topic].reliability == ReliabilityPolicy.BEST_EFFORT
    for topic in ("/cf2/cmd_vel_nominal", "/cf2/lgtc/message"):                # any subscriber matches
        assert pubs[topic].depth == 1 and pubs[topic].reliability == ReliabilityPolicy.RELIABLE
    assert subs["/lgtc/meta"].durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert pubs["/cf2/cmd_vel_nominal"].depth == 1 and pubs["/cf2/lgtc/message"].depth == 1
    assert topics(world)[0]["/lgtc/meta"].durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert topics(cbf)[0]["/cf1/cmd_vel_safe"].depth == 1


def test_frame_id_is_world_without_a_slash(context):
    (world, *_) = make_all(context)
    assert twist(world, [0.1, 0.2]).header.frame_id == "world"


def test_an_agent_outside_a_drone_namespace_cannot_start(context):
    with pytest.raises(StartupError, match="parameter 'names'"):
        AgentNode(context=context, parameter_overrides=params(model=MODEL))


def test_world_markers_are_opt_in(context):
    world = WorldNode(context=context, parameter_overrides=params())
    pubs, subs = topics(world)
    assert "/lgtc/markers" not in pubs and not any(t.endswith("/lgtc/state") for t in subs)  # no N extra callbacks
    world.destroy_node()
    world = WorldNode(context=context, parameter_overrides=params(markers=True))
    pubs, subs = topics(world)
    assert pubs["/lgtc/markers"].reliability == ReliabilityPolicy.RELIABLE  # RViz's default QoS matches
    assert {f"/cf{i}/lgtc/state" for i in range(1, 6)} <= set(subs)
    (period,) = world.describe_parameters(["markers_period_ticks"])
    assert period.integer_range[0].from_value == 1 and world.get_parameter("markers_period_ticks").value == 2


def test_world_with_markers_publishes_a_marker_array_coloured_by_the_agents_choices(context):
    """In one process, over DDS: the world's lgtc/markers, with cf1 coloured like the consumer its
    lgtc/state says it chose."""
    world = WorldNode(context=context, parameter_overrides=params(markers=True, markers_period_ticks=1))
    probe = rclpy.create_node("marker_probe", context=context)
    got: list[MarkerArray] = []
    probe.create_subscription(MarkerArray, "/lgtc/markers", got.append, 10)
    state = probe.create_publisher(Float64MultiArray, "/cf1/lgtc/state", 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(world)
    executor.add_node(probe)

    def cf1_colour(array: MarkerArray):
        m = next(m for m in array.markers if (m.ns, m.id) == ("drone", 0))
        return round(m.color.r, 3), round(m.color.g, 3), round(m.color.b, 3)

    choice = consumer_color(2)
    want = tuple(round(c, 3) for c in (choice.r, choice.g, choice.b))
    deadline = time.monotonic() + 20.0
    try:
        while time.monotonic() < deadline and not (got and cf1_colour(got[-1]) == want):
            # the agent of cf1 decides for consumer 2 (lgtc_state/v1, as agent_node publishes it)
            state.publish(to_msg(comm.encode_agent_state(0, now_s(world), np.zeros(8), np.full(3, 1 / 3), 2)))
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        probe.destroy_node()
        world.destroy_node()
    assert got, "no MarkerArray on /lgtc/markers"
    last = got[-1]
    assert cf1_colour(last) == want
    assert {m.header.frame_id for m in last.markers} == {"world"}
    kinds = {(m.ns, m.type) for m in last.markers if m.action == Marker.ADD}
    assert {("consumer_area", Marker.CYLINDER), ("consumer_demand", Marker.CYLINDER), ("drone", Marker.SPHERE),
            ("safety", Marker.CYLINDER), ("links", Marker.LINE_LIST)} <= kinds
    drones = {m.id: m for m in last.markers if m.ns == "drone"}
    assert sorted(drones) == list(range(5))
    assert drones[1].color.r == drones[2].color.r == pytest.approx(0.55)  # the others chose nothing: grey
    p = drones[0].pose.position                                             # metres: cf1's start, 1 m up
    assert (p.x, p.y, p.z) == pytest.approx((-1.6, -1.6, 1.0))


def test_marker_messages_are_updated_in_place_and_follow_what_was_decided():
    red = markers.Rgba(1.0, 0.0, 0.0, 0.5)
    link = lambda n: markers.Marker("links", 0, "line_list", (0.0, 0.0, 0.0), (0.01, 0.0, 0.0), red,  # noqa: E731
                                    tuple((float(k), 0.0, 1.0) for k in range(2 * n)))
    drone = markers.Marker("drone", 3, "sphere", (1.0, 2.0, 1.0), (0.1, 0.1, 0.1), red)
    conv = MarkerMessages()
    first = list(conv.convert([drone, link(3)], Time(sec=1)).markers)
    d, ln = first
    assert (d.type, d.action, d.ns, d.id, d.header.frame_id) == (Marker.SPHERE, Marker.ADD, "drone", 3, "world")
    assert (d.pose.position.x, d.pose.position.y, d.scale.x, d.color.a) == pytest.approx((1.0, 2.0, 0.1, 0.5))
    assert ln.type == Marker.LINE_LIST and len(ln.points) == 6 and ln.points[5].x == 5.0
    hidden = dataclasses.replace(drone, visible=False)
    again = conv.convert([hidden, link(1)], Time(sec=2)).markers
    assert again[0] is d and again[1] is ln                                 # the same message objects
    assert d.action == Marker.DELETE and d.header.stamp.sec == 2            # hidden: deleted in RViz
    assert len(ln.points) == 2                                              # fewer links: fewer points
    assert conv.convert([drone, link(0)], Time(sec=3)).markers[1].points == []


def test_hardware_world_takes_drones_without_a_pose_or_on_the_ground_out_of_the_mission(context):
    """With real drones, one whose takeoff failed (no pose before the start, or measured on the
    floor) is out of the mission: inactive in the world, so its supply status tells the bridge to
    keep it down, and it delivers nothing."""
    from geometry_msgs.msg import PoseStamped
    from std_msgs.msg import Bool

    world = WorldNode(context=context, parameter_overrides=params(mode="hardware"))
    try:
        def pose(i: int, z: float) -> None:
            msg = PoseStamped()
            msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = 0.1 * i, 0.0, z
            world._on_pose(i, msg)

        for i in range(4):  # cf5 never reports a pose
            pose(i, 1.0)
        world._on_airborne(Bool(data=True))
        world._step()
        assert world.plant.world.active[0].tolist() == [True, True, True, True, False]
        pose(0, 0.03)  # cf1 lands
        world._step()
        assert world.plant.world.active[0].tolist() == [False, True, True, True, False]
    finally:
        world.destroy_node()
