"""Run a launch plan's nodes as OS processes, the way `ros2 launch` runs them: each node its own
process, started from its console script with the arguments launch_ros's `Node` passes
(`--ros-args -r __node:=NAME -r __ns:=/NS --params-file FILE`), all in one process group (a
terminal's Ctrl-C reaches every one of them). A test and benchmark helper, not a replacement for
`launch`: no events, no respawn, no substitutions.

    graph = start(sim_graph("paper_10x4"), Path("runs/graph"), domain_id=42)
    ...                                 # talk to it from a probe node on ROS_DOMAIN_ID 42
    codes = graph.stop()                # SIGINT to the group; {node: exit code}
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lgtc_ros.launch_plan import NodeSpec


def executable(name: str) -> str:
    """The console script `name`: beside this interpreter (a virtualenv's bin/), else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"console script {name!r} not found beside {sys.executable} nor on PATH: "
                                "install the package (pip install -e . or colcon build)")
    return found


def ros_environment(domain_id: int, base: dict | None = None) -> dict[str, str]:
    """The environment of every node of one graph: its own ROS_DOMAIN_ID (graphs never hear each
    other), discovery on this host only, one torch thread per process, unbuffered logs, and Python's
    fault handler (a node that must be aborted writes every thread's stack to its log: `stop`)."""
    if not 0 <= domain_id <= 101:
        raise ValueError(f"domain_id {domain_id}: ROS 2 domain ids 0..101 are safe on every OS")
    env = dict(os.environ if base is None else base)
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", OMP_NUM_THREADS="1",
               PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0",
               PYTHONFAULTHANDLER="1")
    return env


@dataclass
class RunningGraph:
    specs: list[NodeSpec]
    procs: list[subprocess.Popen]
    logdir: Path
    exit_codes: dict[str, int] = field(default_factory=dict)

    @property
    def pgid(self) -> int:
        return self.procs[0].pid

    def log(self, spec: NodeSpec) -> str:
        """What the node wrote to stdout and stderr so far."""
        return _log_path(self.logdir, spec).read_text(errors="replace")

    def exited(self) -> dict[str, int]:
        """Nodes that have exited, with their exit codes."""
        return {s.full_name: p.returncode for s, p in zip(self.specs, self.procs) if p.poll() is not None}

    def usage(self) -> dict[str, tuple[float, float]]:
        """{node: (CPU seconds so far, resident memory MB now)} from /proc (Linux; NaN elsewhere)."""
        out = {}
        for s, p in zip(self.specs, self.procs):
            try:
                fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
                rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            except (OSError, ValueError, IndexError):
                cpu = rss = float("nan")
            out[s.full_name] = (cpu, rss)
        return out

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 5.0) -> dict[str, int | None]:
        """Send `sig` to the process group and wait up to `timeout_s` for every node: {node: exit
        code, None if it had to be killed}. A node still running at the deadline gets SIGABRT first,
        so its log ends with where it hung (Python's fault handler: `ros_environment`)."""
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout_s
        codes: dict[str, int | None] = {}
        for s, p in zip(self.specs, self.procs):
            try:
                codes[s.full_name] = p.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                codes[s.full_name] = None
        hung = [p for p in self.procs if p.poll() is None]
        for p in hung:
            p.send_signal(signal.SIGABRT)
        for p in hung:
            try:
                p.wait(2.0)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return codes


TEARDOWN_CALLS = ("destroy_node", "try_shutdown", "shutdown", "destroy")
"""rclpy calls of `nodes.common.run`'s teardown, after the spin loop has ended."""


def aborted_in_teardown(log: str) -> bool:
    """The node was aborted at the stop deadline while releasing ROS: its spin loop had ended and
    the stack the fault handler wrote (`RunningGraph.stop`) runs from `nodes.common.run` into one of
    rclpy's `TEARDOWN_CALLS`. That is the known hang of docs/RELIABILITY.md (Fast DDS, rare, under
    load); a node stuck anywhere else (spinning, in a callback, importing) does not match."""
    _, sep, dump = log.rpartition("Fatal Python error: Aborted")
    frames = [line.strip() for line in dump.splitlines() if line.strip().startswith("File ")]
    if not sep or not frames:
        return False
    ours = next((k for k, f in enumerate(frames) if "lgtc_ros" in f), None)  # most recent call first
    if ours is None or not (frames[ours].endswith(" in run") and "common.py" in frames[ours]):
        return False
    return ours > 0 and "rclpy" in frames[ours - 1] and frames[ours - 1].rsplit(" in ", 1)[-1] in TEARDOWN_CALLS


def unclean_exits(codes: dict[str, int | None], logs: dict[str, str]) -> dict[str, int | None]:
    """{node: code} of the nodes that did not exit 0, leaving out (with a warning, so a test run
    shows them) those `aborted_in_teardown`."""
    import warnings

    bad = {}
    for node, code in codes.items():
        if code == 0:
            continue
        if code is None and aborted_in_teardown(logs.get(node, "")):
            warnings.warn(f"{node} hung releasing ROS after it stopped (the known Fast DDS teardown hang, "
                          "docs/RELIABILITY.md); aborted", RuntimeWarning, stacklevel=2)
            continue
        bad[node] = code
    return bad


def _log_path(logdir: Path, spec: NodeSpec) -> Path:
    return logdir / (spec.full_name.strip("/").replace("/", "__") + ".log")


def start(specs: list[NodeSpec], workdir: Path, domain_id: int, env: dict | None = None,
          extra_parameters: dict | None = None) -> RunningGraph:
    """Write every node's parameter file into `workdir` and start the nodes (logs beside them)."""
    workdir = Path(workdir).resolve()  # the nodes run in it: relative paths would resolve twice
    workdir.mkdir(parents=True, exist_ok=True)
    environment = ros_environment(domain_id, env)
    procs: list[subprocess.Popen] = []
    try:
        for spec in specs:
            params = spec.parameter_file()
            params[spec.full_name]["ros__parameters"].update(extra_parameters or {})
            path = _log_path(workdir, spec).with_suffix(".params.yaml")
            path.write_text(yaml.safe_dump(params))
            log = _log_path(workdir, spec).open("w")
            procs.append(subprocess.Popen(
                [executable(spec.executable), *spec.ros_arguments(str(path))], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=environment, cwd=workdir,
                process_group=procs[0].pid if procs else 0))  # one group, led by the first node
            log.close()
    except BaseException:
        for p in procs:
            p.kill()
        raise
    return RunningGraph(list(specs), procs, workdir)
