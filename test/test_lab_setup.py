"""The lab path of the README ("Flying Crazyflies: the lab checklist") against the files it relies on:
the venv's interpreter for colcon-installed nodes (setup.cfg), rosdep keys that exist for what
apt can give and pip for the rest (package.xml, setup.py, the README's commands), the CrazySim
robot file for Gazebo runs, and the nodes' parameter table, generated from the nodes themselves.

    python test/test_lab_setup.py     # prints the parameter table the README must hold
"""
from __future__ import annotations

import ast
import configparser
import itertools
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from lgtc_ros.comm import default_names
from lgtc_ros.frames import FRAME_ID, ArenaFrame
from lgtc_ros.launch_plan import crazyswarm_graph
from lgtc_ros.scenario import load_scenario, resolve_scenario

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Flying Crazyflies: the lab checklist"
TABLE_BEGIN, TABLE_END = "<!-- parameters: begin (generated: python test/test_lab_setup.py) -->", "<!-- parameters: end -->"
BRIDGE_BEGIN, BRIDGE_END = ("<!-- bridge parameters: begin (generated: python test/test_lab_setup.py) -->",
                            "<!-- bridge parameters: end -->")

ROSDEP = {  # keys present in ros/rosdistro rosdep/python.yaml (Debian/Ubuntu packages from apt)
    "numpy": "python3-numpy", "scipy": "python3-scipy", "PyYAML": "python3-yaml",
    "matplotlib": "python3-matplotlib", "tqdm": "python3-tqdm", "pytest": "python3-pytest",
    "hypothesis": "python3-hypothesis",
}
PIP_ONLY = {  # no rosdep key: python3-pytorch-pip and python3-cvxpy-pip are end-of-life, python3-numba has
    # Ubuntu entries for bionic and focal only (none for Jazzy's noble), the rest never had one
    "torch", "cvxpy", "PySCIPOpt", "osqp", "gymnasium", "pettingzoo", "rosbags", "cflib", "numba",
}


def checklist() -> str:
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, f"README has no section {SECTION!r}"
    body = text.split(SECTION, 1)[1]
    return body.split("\n## ", 1)[0]


def requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~\[; ]", spec.strip().strip("'\""), maxsplit=1)[0]


def setup_requirements() -> tuple[list[str], list[str]]:
    """(install_requires, extras_require["test"]) of setup.py, read without running it."""
    call = next(n for n in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
                if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kw = {k.arg: k.value for k in call.keywords}
    install = [requirement_name(ast.literal_eval(e)) for e in kw["install_requires"].elts]
    test = [requirement_name(s) for s in ast.literal_eval(kw["extras_require"])["test"]]
    return install, test


def package_depends() -> dict[str, set[str]]:
    root = ET.parse(ROOT / "package.xml").getroot()
    out: dict[str, set[str]] = {}
    for e in root:
        out.setdefault(e.tag, set()).add((e.text or "").strip())
    return out


def readme_pip_packages() -> set[str]:
    """Every package a `pip install` line of the checklist installs (index options skipped)."""
    names: set[str] = set()
    for line in checklist().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("pip install"):
            continue
        words = line.split()[2:]
        skip = False
        for w in words:
            if skip:
                skip = False
            elif w in ("--index-url", "--extra-index-url", "-r", "-c"):
                skip = True
            elif not w.startswith("-"):
                names.add(requirement_name(w))
    return names


# ---------------------------------------------------------------- python next to a system ROS 2

def test_setup_cfg_makes_colcon_installed_nodes_run_the_venv_interpreter():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["build_scripts"]["executable"] == "/usr/bin/env python3"
    # the other sections are as `ros2 run` and `pip install -e .` need them
    assert cfg["develop"]["script_dir"] == cfg["install"]["install_scripts"] == "$base/lib/lgtc_ros"
    assert cfg["tool:pytest"]["testpaths"] == "test"
    # and setuptools reads the file as it did (no section breaks the editable install's parse)
    from setuptools.dist import Distribution

    dist = Distribution()
    dist.parse_config_files([str(ROOT / "setup.cfg")])
    assert dist.get_option_dict("build_scripts")["executable"][1] == "/usr/bin/env python3"
    assert dist.get_option_dict("install")["install_scripts"][1] == "$base/lib/lgtc_ros"


def test_package_xml_has_a_rosdep_key_for_what_apt_gives_and_the_readme_pips_the_rest():
    install, test = setup_requirements()
    deps = package_depends()
    assert set(install) | set(test) <= set(ROSDEP) | PIP_ONLY, "a new requirement: rosdep key or pip?"
    pipped = readme_pip_packages()
    for name in install:
        if name in ROSDEP:
            assert ROSDEP[name] in deps["exec_depend"], f"{name}: <exec_depend>{ROSDEP[name]}</exec_depend>"
        else:
            assert name in pipped, f"{name} has no rosdep key: the checklist's venv must pip install it"
    for name in test:
        assert ROSDEP[name] in deps["test_depend"], name
    python_keys = {d for tag in ("exec_depend", "test_depend", "depend") for d in deps.get(tag, ()) if d.startswith("python3-")}
    assert python_keys <= set(ROSDEP.values()), f"not rosdep keys: {python_keys - set(ROSDEP.values())}"
    assert not pipped & set(ROSDEP) - {"matplotlib"}, "apt (rosdep) gives these: pip would shadow ROS's numpy"


def test_the_checklist_gives_the_venv_commands():
    text = checklist()
    torch = re.search(r"^TORCH\s*:=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert f"pip install {torch} --index-url https://download.pytorch.org/whl/cpu" in text  # the Makefile's pin
    for words in ("--system-site-packages", "COLCON_IGNORE", "PEP 668", "rosdep install", "colcon build",
                  "ros2 service call /lgtc/start std_srvs/srv/Trigger", "ros2 service call /lgtc/land std_srvs/srv/Trigger",
                  "backend:=sim", "crazyflies_crazysim.yaml", "sitl_multiagent_text.sh"):
        assert words in text, words


# ---------------------------------------------------------------- Gazebo through CrazySim

def test_crazysim_robot_file_matches_the_scenario_and_crazysim_ports():
    robots_file = yaml.safe_load((ROOT / "config" / "crazyflies_crazysim.yaml").read_text())
    assert robots_file["fileversion"] == 3
    s = load_scenario(resolve_scenario("discharge_5x3"))
    frame = ArenaFrame.from_scenario(s)
    robots = robots_file["robots"]
    assert list(robots) == list(default_names(s.n_agents))                  # cf1..cf5, agent order
    uris = [r["uri"] for r in robots.values()]
    assert len(set(uris)) == len(uris)
    for k, (name, r) in enumerate(robots.items()):
        # CrazySim: the k-th spawned drone's cflib port is 19850 + k
        assert re.fullmatch(r"udp://0\.0\.0\.0:(\d+)", r["uri"]) and r["uri"].endswith(f":{19850 + k}"), name
        assert r["enabled"] is True and r["type"] in robots_file["robot_types"]
        assert all(isinstance(v, float) for v in r["initial_position"]), "Crazyswarm2 needs floats"
        assert r["initial_position"][:2] == pytest.approx(frame.to_metres(s.initial.agent_pos[k]).tolist())
        assert r["initial_position"][2] == 0.0                                  # on the ground
    for t in robots_file["robot_types"].values():
        assert t["motion_capture"]["tracking"] == "vendor"                      # no mocap in Gazebo
    everyone = robots_file["all"]
    assert everyone["firmware_logging"]["enabled"] is True
    assert everyone["firmware_logging"]["default_topics"]["pose"]["frequency"] >= round(1 / s.dt)  # /cfN/pose
    assert everyone["reference_frame"] == FRAME_ID


def test_crazysim_launch_plan_flies_the_hardware_graph():
    """`crazyswarm.launch.py backend:=cflib crazyflies_yaml:=...crazysim.yaml`: link crazyswarm2 (its
    cflib server talks to CrazySim's UDP ports), no TF poses and no /clock (only backend sim)."""
    specs = crazyswarm_graph("discharge_5x3", link="crazyswarm2", pose_from_tf=False)
    world = next(s for s in specs if s.executable == "world_node")
    bridge = next(s for s in specs if s.executable == "bridge_node")
    assert world.parameters["mode"] == "hardware"
    assert bridge.parameters["backend"] == "crazyswarm2" and bridge.parameters["pose_from_tf"] is False
    agents = [s for s in specs if s.executable == "agent_node"]
    assert [a.namespace for a in agents] == list(yaml.safe_load(
        (ROOT / "config" / "crazyflies_crazysim.yaml").read_text())["robots"])  # one agent per robot, same names
    launch = (ROOT / "launch" / "crazyswarm.launch.py").read_text()
    assert 'sim = a["link"] == "crazyswarm2" and a["backend"] == "sim"' in launch  # cflib: wall clock, /cfN/pose
    assert '"crazyflies_yaml_file": robots' in launch


# ---------------------------------------------------------------- the parameter table

RCLPY_OWN = {"use_sim_time", "start_type_description_service"}
TYPES = {1: "bool", 2: "int", 3: "double", 4: "string", 5: "byte[]", 6: "bool[]", 7: "int[]", 8: "double[]",
         9: "string[]"}
_domains = itertools.count()


def _number(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _default(v) -> str:
    if isinstance(v, bool):
        return "`true`" if v else "`false`"
    if isinstance(v, (list, tuple)):
        items = [str(x) if x != "" else '""' for x in v]
        return "`[" + (", ".join(items) if len(items) <= 3 else f"{items[0]}, ..., {items[-1]}") + "]`"
    if isinstance(v, str):
        return f"`{v}`" if v else '`""`'
    return f"`{_number(v)}`"


def _allowed(d) -> str:
    if d.additional_constraints:
        return d.additional_constraints
    for r in (*d.integer_range, *d.floating_point_range):
        lo, hi = r.from_value, r.to_value
        if hi >= 2**62:
            return f">= {_number(lo)}"
        return f"{_number(lo)} .. {_number(hi)}"
    return ""


def mission_nodes() -> list[tuple[str, object]]:
    from lgtc_ros.nodes.agent_node import AgentNode
    from lgtc_ros.nodes.cbf_node import CbfNode
    from lgtc_ros.nodes.radio_node import RadioNode
    from lgtc_ros.nodes.swarm_node import SwarmNode
    from lgtc_ros.nodes.world_node import WorldNode

    return [("world_node", WorldNode), ("radio_node", RadioNode), ("cbf_node", CbfNode),
            ("agent_node", lambda **k: AgentNode(namespace="/cf1", **k)), ("swarm_node", SwarmNode)]


def bridge_nodes() -> list[tuple[str, object]]:
    """The bridge with backend crazyswarm2 (the default): it needs crazyflie_interfaces, from
    Crazyswarm2's workspace or the test's stub of it, and no drone."""
    from lgtc_ros.nodes.bridge_node import BridgeNode

    return [("bridge_node", BridgeNode)]


def parameter_rows(nodes: list[tuple[str, object]], skip: frozenset[str] = frozenset()) -> list[tuple[str, ...]]:
    """(parameter, nodes, type, default, allowed, description) of every parameter `nodes` declare,
    in declaration order; a parameter several nodes declare alike is one row. Defaults are those of
    the default scenario (paper_10x4)."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=1 + (os.getpid() * 11 + next(_domains)) % 100)
    rows: dict[tuple[str, ...], list[str]] = {}
    try:
        for executable, make in nodes:
            node = make(context=context)
            try:
                for name in node._parameters:
                    if name in RCLPY_OWN or name in skip:
                        continue
                    (d,) = node.describe_parameters([name])
                    key = (name, TYPES[d.type], _default(node.get_parameter(name).value), _allowed(d),
                           d.description.replace("|", "\\|"))
                    rows.setdefault(key, []).append(executable.removesuffix("_node"))
            finally:
                node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    return [(k[0], ", ".join(nodes), *k[1:]) for k, nodes in rows.items()]


def parameter_table(rows: list[tuple[str, ...]]) -> str:
    lines = ["| parameter | nodes | type | default | allowed | description |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join((f"`{r[0]}`", *r[1:])) + " |" for r in rows]
    return "\n".join(lines)


def mission_table() -> str:
    return parameter_table(parameter_rows(mission_nodes()))


def bridge_table() -> str:
    return parameter_table(parameter_rows(bridge_nodes(), skip=frozenset({"scenario", "names"})))


def written_table(begin: str, end: str) -> str:
    text = checklist()
    assert begin in text and end in text, begin
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def test_readme_parameter_table_is_what_the_nodes_declare():
    written, expected = written_table(TABLE_BEGIN, TABLE_END), mission_table()
    assert written == expected, ("README parameter table is out of date; `python test/test_lab_setup.py` prints "
                                 "it:\n" + expected)
    # every node the table covers is there, with its launch-plan name
    assert {"world", "radio", "cbf", "agent", "swarm"} <= {n for line in expected.splitlines()[2:]
                                                             for n in line.split(" | ")[1].split(", ")}
    assert all(line.count(" | ") == 5 for line in expected.splitlines()[2:])  # six cells a row


def test_readme_bridge_parameter_table_is_what_the_bridge_declares():
    pytest.importorskip("crazyflie_interfaces", reason="the bridge's backend needs crazyflie_interfaces")
    written, expected = written_table(BRIDGE_BEGIN, BRIDGE_END), bridge_table()
    assert written == expected, ("README bridge parameter table is out of date; `python test/test_lab_setup.py` "
                                 "prints it:\n" + expected)


if __name__ == "__main__":
    sys.stdout.write(f"{TABLE_BEGIN}\n{mission_table()}\n{TABLE_END}\n\n")
    try:
        import crazyflie_interfaces  # noqa: F401
    except ImportError:
        sys.exit("crazyflie_interfaces is not importable: no bridge table (source Crazyswarm2's workspace)")
    sys.stdout.write(f"{BRIDGE_BEGIN}\n{bridge_table()}\n{BRIDGE_END}\n")
