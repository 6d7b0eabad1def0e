"""A mission on Crazyflies: Crazyswarm2 (its own launch, `backend:=sim|cpp|cflib`) or this
package's direct cflib link (`link:=cflib uris:=radio://...,radio://...`), plus world (virtual
resources on measured poses), radio, CBF, one agent per drone and the bridge.

    ros2 launch lgtc_ros crazyswarm.launch.py backend:=sim scenario:=discharge_5x3 \\
        model:=$(ros2 pkg prefix lgtc_ros)/share/lgtc_ros/models/lgtc_discharge_5x3.pt
    ros2 service call /lgtc/start std_srvs/srv/Trigger     # take off; /lgtc/land to end

Gazebo (CrazySim, firmware in the loop; README "Flying Crazyflies: the lab checklist"):
    ros2 launch lgtc_ros crazyswarm.launch.py backend:=cflib \
        crazyflies_yaml:=$(ros2 pkg prefix lgtc_ros)/share/lgtc_ros/config/crazyflies_crazysim.yaml
`rviz:=true` starts RViz on this package's view (config/lgtc.rviz; the world publishes lgtc/markers).

Arguments, with descriptions and choices: `ros2 launch lgtc_ros crazyswarm.launch.py -s`
(`lgtc_ros.launch_plan.CRAZYSWARM_ARGS`). With backend sim the bridge republishes Crazyswarm2's TF
as /{name}/pose (its simulator publishes no pose topic) and every node follows /clock (use_sim_time).
Which nodes start with which parameters is decided by `lgtc_ros.launch_plan.crazyswarm_graph`.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from lgtc_ros.launch_plan import CRAZYSWARM_ARGS, PACKAGE, crazyswarm_graph, declare_arguments, to_actions


def _graph(context):
    a = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in CRAZYSWARM_ARGS}
    sim = a["link"] == "crazyswarm2" and a["backend"] == "sim"
    specs = crazyswarm_graph(a["scenario"], a["model"], a["cbf"], a["link"],
                             [u for u in a["uris"].split(",") if u], int(a["seed"]), pose_from_tf=sim,
                             autostart=a["autostart"] == "true", any_consumers=a["any_consumers"] == "true",
                             rviz=a["rviz"] == "true")
    actions = []
    if a["link"] == "crazyswarm2":
        robots = a["crazyflies_yaml"] or os.path.join(get_package_share_directory(PACKAGE), "config",
                                                      "crazyflies.yaml")
        actions.append(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(get_package_share_directory("crazyflie"), "launch",
                                                       "launch.py")),
            launch_arguments={"backend": a["backend"], "crazyflies_yaml_file": robots,
                              "mocap": a["mocap"], "gui": "False", "teleop": "False", "rviz": "False"}.items()))
    return actions + to_actions(specs, a["record"], {"use_sim_time": sim})


def generate_launch_description():
    return LaunchDescription([*declare_arguments(CRAZYSWARM_ARGS), OpaqueFunction(function=_graph)])
