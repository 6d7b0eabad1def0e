"""The console scripts of the nodes (`ros2 run lgtc_ros agent_node`, setup.py entry points).

Each arms `exit_on_signals` before importing its node: importing rclpy, numpy and (agents) torch
takes a second or more, and a SIGINT then would otherwise print a KeyboardInterrupt traceback
(or, if only remembered, wait for the imports and the model to load before the node could stop).
"""
import importlib

from lgtc_ros.nodes.signals import exit_on_signals


# what a drone's node imports only while it is built (`drone_topics.load_controllers`): loaded here,
# while a stop still ends the process at once, so that building the node is only reading its model
_POLICY = ("torch", "lgtc_ros.runtime.onboard", "lgtc_ros.runtime.drone", "lgtc_ros.policy.export",
           "lgtc_ros.policy.shipped")


def _run(module: str, preload: tuple[str, ...] = ()) -> None:
    exit_on_signals()
    for name in preload:
        importlib.import_module(name)
    importlib.import_module(f"lgtc_ros.nodes.{module}").main()


def agent_node() -> None:
    _run("agent_node", _POLICY)


def swarm_node() -> None:
    _run("swarm_node", _POLICY)


def radio_node() -> None:
    _run("radio_node")


def cbf_node() -> None:
    _run("cbf_node")


def world_node() -> None:
    _run("world_node")


def bridge_node() -> None:
    _run("bridge_node")
