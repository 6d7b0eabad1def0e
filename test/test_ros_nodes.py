"""The rclpy nodes in one process (real rclpy, no DDS traffic needed): declared parameters with
descriptions and ranges, topic names that follow the namespace, QoS chosen per topic, frame ids.
The graph itself runs as separate processes in test_ros_graph.py."""
from __future__ import annotations

import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from lgtc_ros.nodes.agent_node import AgentNode
from lgtc_ros.nodes.cbf_node import CbfNode
from lgtc_ros.nodes.common import StartupError, twist
from lgtc_ros.nodes.radio_node import RadioNode
from lgtc_ros.nodes.swarm_node import SwarmNode
from lgtc_ros.nodes.world_node import WorldNode

SCENARIO, MODEL = "discharge_5x3", "models/lgtc_discharge_5x3.pt"


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=0)
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
