"""What every node shares: QoS profiles, declared parameters, topic names, message conversions,
the start-up error, and `run` (spin, clean stop).

Topic names (see the package README's topic table): per-drone topics are relative names. A node
that serves one drone runs in that drone's namespace (`/cf1/lgtc_agent` publishes `pose` ->
`/cf1/pose`); a node that serves the swarm runs in the swarm's namespace (`/` by default) and
prefixes the drone (`cf1/pose`). Swarm-wide topics (`lgtc/demands`, `lgtc/meta`, ...) live in the
swarm's namespace: `swarm_topic` resolves them from a per-drone node. Pushing a whole launch into
a namespace (`/lab_a`) therefore moves every topic with it, and two swarms never cross.
"""
from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable

import numpy as np
import rclpy
from geometry_msgs.msg import TwistStamped
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Float64MultiArray, MultiArrayDimension, MultiArrayLayout

from lgtc_ros.comm import FloatArray, default_names
from lgtc_ros.frames import FRAME_ID
from lgtc_ros.nodes.signals import remember_signals, stop_requested
from lgtc_ros.runtime.heap import freeze_startup_objects
from lgtc_ros.scenario import Scenario, load_scenario, resolve_scenario

# ---------------------------------------------------------------- QoS, chosen per topic

LATEST = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
"""Publishing per-tick data (poses, commands, neighbour messages and inboxes, demands, supplies):
only the newest matters, so no subscriber ever drains a backlog of old ticks. Reliable, so
`ros2 bag record`, RViz and every subscriber match whatever they ask for."""

TAKE_LATEST = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.VOLATILE)
"""Subscribing to per-tick data: the newest wins, and best effort matches every publisher
(Crazyswarm2 and motion capture too) and spares each message its acknowledgement: at N = 50
that is ~30 % less CPU for the graph (docs/BENCHMARKS.md). On one host nothing is lost in
practice, and a lost tick is superseded by the next."""

LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""The mission description and the swarm's airborne flag: a node that starts late still gets them."""

RECORD = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
"""For the record (agent states, reward terms, CBF counters): nobody controls with them, keep a few."""


# ---------------------------------------------------------------- start-up errors and parameters

class StartupError(Exception):
    """A node cannot start; the message names the parameter and its value (one log line)."""

    def __init__(self, parameter: str, value, reason: str) -> None:
        super().__init__(f"parameter '{parameter}' = {value!r}: {reason}")


def declare(node: Node, name: str, default, description: str, *, read_only: bool = True,
            lo: float | None = None, hi: float | None = None, choices: tuple[str, ...] = ()):
    """Declare a parameter with its descriptor and return its value. `read_only`: a change needs a
    restart (the default: most of ours shape the node at start). `lo`/`hi`: an inclusive range
    (ROS rejects an override outside it at start); `choices`: the allowed strings."""
    d = ParameterDescriptor(description=description, read_only=read_only)
    if choices:
        d.additional_constraints = "one of: " + ", ".join(choices)
    if lo is not None or hi is not None:
        lo = -sys.float_info.max if lo is None else lo
        hi = sys.float_info.max if hi is None else hi
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            raise TypeError(f"range on non-numeric parameter {name}")
        if isinstance(default, int):
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(min(hi, 2**62)), step=0)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    value = node.declare_parameter(name, default, d).value
    if choices and value not in choices:
        raise StartupError(name, value, f"must be one of {', '.join(choices)}")
    return value


def mission(node: Node) -> tuple[Scenario, list[str]]:
    """Declare and read `scenario` (bundled name or YAML path) and `names` (default cf1..cfN)."""
    value = declare(node, "scenario", "paper_10x4", "bundled scenario name or path to a scenario YAML")
    try:
        scenario = load_scenario(resolve_scenario(value))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StartupError("scenario", value, str(exc).splitlines()[0]) from None
    names = list(declare(node, "names", list(default_names(scenario.n_agents)),
                         "drone names, in agent order (each drone's namespace)"))
    if len(names) != scenario.n_agents or len(set(names)) != len(names) or not all(names):
        raise StartupError("names", names, f"need {scenario.n_agents} distinct names for '{scenario.name}'")
    return scenario, names


def swarm_topic(node: Node, name: str) -> str:
    """`name` in the swarm's namespace from a node in a drone's namespace (`/cf1` -> `/lgtc/demands`,
    `/lab_a/cf1` -> `/lab_a/lgtc/demands`)."""
    parent = node.get_namespace().rstrip("/").rpartition("/")[0]
    return f"{parent}/{name}"


# ---------------------------------------------------------------- clock and messages

def now_s(node: Node) -> float:
    """The node's clock in seconds (simulated time when use_sim_time is set)."""
    return node.get_clock().now().nanoseconds * 1e-9


def to_msg(arr: FloatArray) -> Float64MultiArray:
    return arr.to_msg(Float64MultiArray, MultiArrayLayout, MultiArrayDimension, rclpy=True)


def twist(node: Node, v_m_s: np.ndarray, stamp=None) -> TwistStamped:
    """A world-frame planar velocity (m/s) stamped `stamp` (builtin_interfaces/Time; default now)."""
    msg = TwistStamped()
    msg.header.stamp = node.get_clock().now().to_msg() if stamp is None else stamp
    msg.header.frame_id = FRAME_ID
    msg.twist.linear.x, msg.twist.linear.y = float(v_m_s[0]), float(v_m_s[1])
    return msg


def stamp_s(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


# ---------------------------------------------------------------- running a node

def guarded(node: Node, callback: Callable[..., None]) -> Callable[..., None]:
    """`callback` for a timer or subscription that never acts on a dead context: whoever shuts it
    down from another thread (a test, an embedding program) may do so while the callback runs; its
    publish would then raise. Errors while the context is alive still raise."""
    context = node.context

    def run_guarded(*args) -> None:
        if not context.ok():
            return
        try:
            callback(*args)
        except Exception:
            if context.ok():
                raise

    return run_guarded


def run(make_node: Callable[[], Node], name: str, args=None) -> None:
    """rclpy.init, build the node, spin until Ctrl-C / SIGTERM / shutdown, clean up; exit 0.
    A node that cannot start logs one line naming the parameter and exits 2."""
    remember_signals()
    log = rclpy.logging.get_logger(name)
    try:
        # no rclpy signal handlers: theirs shut the context down from their own thread, concurrently
        # with the main thread's teardown; ours only sets a flag the spin loop reads, so the whole
        # stop runs on one thread, in one order
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # e.g. a parameter file that does not parse
        log.fatal(f"cannot start: {str(exc).splitlines()[0]}")
        sys.exit(2)
    node, executor, code = None, None, 0
    try:
        node = make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        freeze_startup_objects()  # the node's policy, imports and rclpy: out of every later collection
        # our flag is the stop (rclpy installs no handler): asked for while starting, it is honoured
        # at the first turn; while spinning, within the 0.1 s wait
        while rclpy.ok() and not stop_requested():
            executor.spin_once(timeout_sec=0.1)
    except (StartupError, ParameterException) as exc:
        log.fatal(f"cannot start: {exc}")
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():  # a real error; otherwise the executor met the context Ctrl-C had just shut down
            raise
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        # Delete the DDS participant now: os._exit below skips the finalizers that would, and a
        # participant never deleted leaves its shared-memory segments in /dev/shm (Fast DDS), which
        # later graphs on this machine then trip over.
        rclpy.get_default_context().destroy()
    # Everything is released; skip the interpreter's teardown of torch and friends (~0.4 s of CPU
    # per process: 23 processes stopping together on 2 cores would outlast a 5 s stop).
    sys.stdout.flush()
    sys.stderr.flush()
    ctypes.CDLL(None).fflush(None)  # rcutils logs through C stdio
    os._exit(code)
