"""Embedded simulation of a mission as a ROS graph: world (sim), radio, CBF, one agent per drone.

    ros2 launch lgtc_ros sim.launch.py scenario:=paper_10x4 record:=runs/sim_bag
    ros2 service call /lgtc/start std_srvs/srv/Trigger   # (only with a bridge; the sim flies at once)

Arguments: scenario (bundled name or YAML path), model (exported policy; default the shipped one),
cbf (decentralized | centralized), latency_ticks, drop_prob, seed, any_consumers, record (a new
folder: rosbag2 of every topic `lgtc replay` reads; empty = no recording).
Which nodes start with which parameters is decided by `lgtc_ros.launch_plan.sim_graph` (tested).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from lgtc_ros.launch_plan import sim_graph, to_actions

ARGS = {"scenario": "paper_10x4", "model": "", "cbf": "decentralized", "latency_ticks": "0",
        "drop_prob": "0.0", "seed": "0", "any_consumers": "false", "record": ""}


def _graph(context):
    a = {k: LaunchConfiguration(k).perform(context) for k in ARGS}
    specs = sim_graph(a["scenario"], a["model"], a["cbf"], int(a["latency_ticks"]), float(a["drop_prob"]),
                      int(a["seed"]), a["any_consumers"].lower() == "true")
    return to_actions(specs, a["record"])


def generate_launch_description():
    return LaunchDescription([*(DeclareLaunchArgument(k, default_value=v) for k, v in ARGS.items()),
                              OpaqueFunction(function=_graph)])
