"""lgtc_ros: an ament_python ROS 2 package that is also pip-installable (`pip install -e .`)."""
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "lgtc_ros"


def data_tree(folder: str) -> list[tuple[str, list[str]]]:
    """Install every file under `folder` into share/lgtc_ros/<folder>/..., keeping sub-folders."""
    entries: dict[str, list[str]] = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            entries.setdefault(str(Path("share", PACKAGE, path.parent)), []).append(str(path))
    return sorted(entries.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    python_requires=">=3.10",
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *data_tree("launch"),
        *data_tree("config"),
        *data_tree("models"),
    ],
    # torch is pinned by the Makefile (`torch==2.13.0`, a CPU build) *before* this package is
    # installed; a range here would otherwise let pip pull a multi-GB CUDA build.
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "torch>=2.1",
        "cvxpy>=1.5",
        "PySCIPOpt>=5.0",
        "osqp>=1.0",
        "PyYAML>=6.0",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "gymnasium>=1.0",
        "pettingzoo>=1.24",
        "rosbags>=0.11",
        "cflib>=0.1.30",  # direct Crazyflie links (lgtc_ros/cflib_link.py), no ROS needed
        "numba>=0.59",  # the simulator's fused distance kernels (lgtc_ros/world/kernels.py)
    ],
    # peers: other simulators `lgtc bench --only sim` steps beside ours (VMAS pulls gym 0.26 and pyglet 1.5,
    # both pure Python; it reuses the torch installed here)
    extras_require={"test": ["pytest>=7", "hypothesis>=6"], "peers": ["vmas==1.5.2"]},
    zip_safe=True,
    maintainer="lgtc_ros maintainers",
    maintainer_email="lgtc-ros@example.org",
    description="LGTC-IPPO decentralized multi-drone resource allocation, from training to Crazyflies.",
    license="BSD-3-Clause",
    tests_require=["pytest"],
    entry_points={"console_scripts": [
        "lgtc = lgtc_ros.cli:main",
        # the ROS 2 nodes (`ros2 run lgtc_ros agent_node`); they need a sourced ROS 2
        *(f"{node} = lgtc_ros.nodes.console:{node}"
          for node in ("agent_node", "swarm_node", "radio_node", "cbf_node", "world_node", "bridge_node")),
    ]},
)
