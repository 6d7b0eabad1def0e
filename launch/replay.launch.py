"""Play a recorded mission back into a ROS graph (rviz, other tools, or this package's nodes).

    ros2 launch lgtc_ros replay.launch.py bag:=runs/discharge/bag rate:=1.0

Plays every recorded topic with its recorded timing and publishes /clock, so nodes started with
use_sim_time follow the recording. For the report and the open-loop regression no ROS is needed:
`lgtc replay BAG [--policy MODEL]`.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder written by `lgtc sim --record` or sim.launch.py"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed (1.0: as recorded)"),
        ExecuteProcess(cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock",
                            "--rate", LaunchConfiguration("rate")], output="screen"),
    ])
