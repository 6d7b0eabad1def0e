"""ROS-free swarm runtime: per-drone agents at 20 Hz, emulated radio, CBF, recording.

The ROS nodes are thin adapters over exactly these classes.
"""
from lgtc_ros.runtime.drone import DroneAgent, DroneDecision, load_drone_modules
from lgtc_ros.runtime.radio import Radio, RadioConfig
from lgtc_ros.runtime.swarm import MissionResult, RuntimeConfig, SwarmRuntime

__all__ = ["DroneAgent", "DroneDecision", "load_drone_modules", "Radio", "RadioConfig", "MissionResult",
           "RuntimeConfig", "SwarmRuntime"]
