"""Embedded simulation of a mission as a ROS graph: world (sim), radio, CBF, one agent per drone.

    ros2 launch lgtc_ros sim.launch.py scenario:=paper_10x4 record:=runs/sim_bag
    ros2 launch lgtc_ros sim.launch.py rviz:=true   # + RViz: consumers, choices, safety discs, links
    ros2 launch lgtc_ros sim.launch.py -s     # every argument, its description and choices

Which nodes start with which names, namespaces and parameters, and the arguments themselves, are
decided by `lgtc_ros.launch_plan` (`sim_graph`, `SIM_ARGS`; tested without ROS).
"""
from launch import LaunchDescription
from launch.actions import OpaqueFunction
from launch.substitutions import LaunchConfiguration

from lgtc_ros.launch_plan import SIM_ARGS, declare_arguments, sim_graph, to_actions


def _graph(context):
    a = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in SIM_ARGS}
    specs = sim_graph(a["scenario"], a["model"], a["cbf"], int(a["latency_ticks"]), float(a["drop_prob"]),
                      int(a["seed"]), a["any_consumers"] == "true", a["agents"], rviz=a["rviz"] == "true")
    return to_actions(specs, a["record"])


def generate_launch_description():
    return LaunchDescription([*declare_arguments(SIM_ARGS), OpaqueFunction(function=_graph)])
