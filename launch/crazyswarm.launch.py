"""A mission on Crazyflies: Crazyswarm2 (its own launch, `backend:=sim|cpp|cflib`) or this
package's direct cflib link (`link:=cflib uris:=radio://...,radio://...`), plus world (virtual
resources on measured poses), radio, CBF, one agent per drone and the bridge.

    ros2 launch lgtc_ros crazyswarm.launch.py backend:=sim scenario:=discharge_5x3 \\
        model:=$(ros2 pkg prefix lgtc_ros)/share/lgtc_ros/models/lgtc_discharge_5x3.pt
    ros2 service call /lgtc/start std_srvs/srv/Trigger     # take off; /lgtc/land to end

Arguments: scenario, model, cbf, seed, any_consumers, record, link (crazyswarm2 | cflib), uris
(comma-separated, link cflib), backend (Crazyswarm2 server: sim | cpp | cflib), crazyflies_yaml
(default: this package's config/crazyflies.yaml, the discharge_5x3 start positions), mocap,
autostart. With backend sim the bridge republishes Crazyswarm2's TF as /{name}/pose (its simulator
publishes no pose topic) and every node follows /clock (use_sim_time).
Which nodes start with which parameters is decided by `lgtc_ros.launch_plan.crazyswarm_graph`.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from lgtc_ros.launch_plan import PACKAGE, crazyswarm_graph, to_actions

ARGS = {"scenario": "discharge_5x3", "model": "", "cbf": "decentralized", "seed": "0", "any_consumers": "false",
        "record": "", "link": "crazyswarm2", "uris": "", "backend": "sim",
        "crazyflies_yaml": os.path.join(get_package_share_directory(PACKAGE), "config", "crazyflies.yaml"),
        "mocap": "False", "autostart": "false"}


def _graph(context):
    a = {k: LaunchConfiguration(k).perform(context) for k in ARGS}
    sim = a["link"] == "crazyswarm2" and a["backend"] == "sim"
    specs = crazyswarm_graph(a["scenario"], a["model"], a["cbf"], a["link"],
                             [u for u in a["uris"].split(",") if u], int(a["seed"]), pose_from_tf=sim,
                             autostart=a["autostart"].lower() == "true",
                             any_consumers=a["any_consumers"].lower() == "true")
    actions = []
    if a["link"] == "crazyswarm2":
        actions.append(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(get_package_share_directory("crazyflie"), "launch",
                                                       "launch.py")),
            launch_arguments={"backend": a["backend"], "crazyflies_yaml_file": a["crazyflies_yaml"],
                              "mocap": a["mocap"], "gui": "False", "teleop": "False", "rviz": "False"}.items()))
    return actions + to_actions(specs, a["record"], {"use_sim_time": sim})


def generate_launch_description():
    return LaunchDescription([*(DeclareLaunchArgument(k, default_value=v) for k, v in ARGS.items()),
                              OpaqueFunction(function=_graph)])
