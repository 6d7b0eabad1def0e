"""`lgtc doctor`: is this installation able to simulate, to run the ROS graph, to fly Crazyflies?

One line per item, each with what to do when it is not fine:

    [ok]   torch 2.13.0+cpu: 2 threads by default (nodes and per-drone benches pin 1)
    [warn] ros2 / launch_ros: not found -> source /opt/ros/jazzy/setup.bash for `ros2 launch` ...
    [FAIL] OSQP: No module named 'osqp' -> pip install osqp (the CBF safety filter's solver)

Levels: an item *needed for simulation* (`lgtc sim/train/eval`, the simulated ROS graph: torch,
the simulator's numba kernels, the solvers, the shipped models, rclpy) fails; an item only a full
ROS 2 install or the hardware needs (`ros2 launch`, `crazyflie_interfaces`, cflib, a Crazyradio)
warns. `main` returns 0 when
nothing failed, 1 otherwise. Nothing here opens a radio or writes to a device: the Crazyradio
check only reads USB descriptors (/sys, or libusb enumeration, or `lsusb`).

Every probe goes through `_import`, `_which`, `_run` and `USB_SYSFS`, so tests replace them to
simulate a broken installation.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "FAIL"
CRAZYRADIO = ("1915", "7777")
"""USB vendor and product id of a Bitcraze Crazyradio (PA and 2.0)."""
USB_SYSFS = Path("/sys/bus/usb/devices")
MIN_TORCH = (2, 1)
PINNED_TORCH = "2.13.0"
"""The Makefile's pin; the shipped models were exported with it."""

_import: Callable = importlib.import_module
_which: Callable = shutil.which


def _run(cmd: list[str]) -> str:
    """stdout of a short command ('' when it is missing or fails)."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


@dataclass(frozen=True)
class Check:
    """One item: `status` ok / warn / FAIL, what was found, and what to do (empty when ok)."""

    item: str
    status: str
    found: str
    todo: str = ""

    def line(self) -> str:
        text = f"[{self.status}]{' ' * (5 - len(self.status))}{self.item}: {self.found}"
        return f"{text} -> {self.todo}" if self.todo else text


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:160]


def _version(module, dist: str = "") -> str:
    found = getattr(module, "__version__", "")
    if not isinstance(found, str) or not found:
        try:
            found = importlib.metadata.version(dist or module.__name__)
        except Exception:  # noqa: BLE001 - a version is nice to have, never a failure
            found = "version unknown"
    return found


# ----------------------------------------------------------------------------- simulation


def check_torch() -> Check:
    try:
        torch = _import("torch")
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything (OSError: missing .so)
        return Check("torch", FAIL, _error(exc), f"pip install torch=={PINNED_TORCH} --index-url "
                     "https://download.pytorch.org/whl/cpu (or `make setup`)")
    version = str(torch.__version__)
    threads = torch.get_num_threads()
    found = f"{version}: {threads} thread{'s' * (threads != 1)} by default (nodes and per-drone benches pin 1)"
    try:
        major, minor = (int(v) for v in version.split("+")[0].split(".")[:2])
    except ValueError:
        major, minor = MIN_TORCH
    if (major, minor) < MIN_TORCH:
        return Check("torch", FAIL, found, f"torch >= {'.'.join(map(str, MIN_TORCH))} needed: "
                     f"pip install torch=={PINNED_TORCH} (CPU build)")
    if not version.startswith(PINNED_TORCH):
        return Check("torch", WARN, found, f"the shipped models were exported with torch {PINNED_TORCH}; "
                     "if one fails to load, pip install torch==" + PINNED_TORCH)
    return Check("torch", OK, found)


def check_scip() -> Check:
    try:
        scip = _import("pyscipopt")
        model = scip.Model()
        model.hideOutput()
        x = model.addVar(vtype="I", lb=0, ub=3)
        model.setObjective(x, "maximize")
        model.optimize()
        solved = round(model.getObjVal()) == 3
    except Exception as exc:  # noqa: BLE001
        return Check("SCIP (pyscipopt)", FAIL, _error(exc),
                     "pip install PySCIPOpt (the assignment MIQP of eq. 3 and the expert need it)")
    if not solved:
        return Check("SCIP (pyscipopt)", FAIL, "a 1-variable MIP came back wrong", "reinstall PySCIPOpt")
    return Check("SCIP (pyscipopt)", OK, f"{_version(scip)}, solves")


def check_osqp() -> Check:
    try:
        osqp = _import("osqp")
        np = _import("numpy")
        sparse = _import("scipy.sparse")
        solver = osqp.OSQP()
        solver.setup(sparse.csc_matrix(np.eye(1)), np.array([-1.0]), sparse.csc_matrix(np.eye(1)),
                     np.array([0.0]), np.array([0.5]), verbose=False)
        x = float(solver.solve().x[0])
    except Exception as exc:  # noqa: BLE001
        return Check("OSQP", FAIL, _error(exc), "pip install osqp (the CBF safety filter's QP solver)")
    if abs(x - 0.5) > 1e-3:
        return Check("OSQP", FAIL, f"a 1-variable QP came back {x}, not 0.5", "reinstall osqp")
    return Check("OSQP", OK, f"{_version(osqp)}, solves")


def check_numba() -> Check:
    """The simulator's fused kernels (`world/kernels.py`): numba imports, and they run."""
    try:
        numba = _import("numba")
        torch = _import("torch")
        kernels = _import("lgtc_ros.world.kernels")
        dist, nb, _ = kernels.pairwise(torch.tensor([[[0.0, 0.0], [0.3, 0.4]]]), torch.ones(1, 2, dtype=torch.bool),
                                       1.0, 0.6)
        right = abs(float(dist[0, 0, 1]) - 0.5) < 1e-6 and bool(nb[0, 0, 1])
    except Exception as exc:  # noqa: BLE001
        return Check("numba", FAIL, _error(exc), "pip install 'numba>=0.59' (the simulator's fused distance kernels)")
    if not right:
        return Check("numba", FAIL, "two drones 0.5 apart came back otherwise", "reinstall numba and llvmlite")
    return Check("numba", OK, f"{_version(numba)}, the simulator's kernels run")


def check_cvxpy() -> Check:
    try:
        cvxpy = _import("cvxpy")
        solvers = list(cvxpy.installed_solvers())
    except Exception as exc:  # noqa: BLE001
        return Check("cvxpy", FAIL, _error(exc), "pip install cvxpy (the reference assignment and CBF in "
                     "tests and `lgtc bench`)")
    missing = [s for s in ("SCIP", "CLARABEL") if s not in solvers]
    found = f"{_version(cvxpy)}, solvers {', '.join(solvers)}"
    if missing:
        return Check("cvxpy", WARN, found, f"{', '.join(missing)} missing from cvxpy: the plain cvxpy "
                     "references of `lgtc bench` and the tests need them (pip install PySCIPOpt clarabel)")
    return Check("cvxpy", OK, found)


def check_models() -> list[Check]:
    """Every shipped model (`policy.shipped.shipped_models`) loads through `policy.export.load`."""
    try:
        shipped = _import("lgtc_ros.policy.shipped")
        models = shipped.shipped_models()
        folder = shipped.models_dir()
    except Exception as exc:  # noqa: BLE001
        return [Check("shipped models", FAIL, _error(exc), "reinstall lgtc_ros (pip install -e . or colcon build)")]
    if not models:
        return [Check("shipped models", FAIL, f"none in {folder}",
                      "reinstall lgtc_ros: the models/ folder is installed with the package")]
    try:
        export = _import("lgtc_ros.policy.export")
    except Exception as exc:  # noqa: BLE001
        return [Check("shipped models", FAIL, _error(exc), "reinstall lgtc_ros and torch")]
    bad = []
    for m in models:
        if m.meta is None:
            bad.append(f"{m.name} ({m.problem})")
            continue
        try:
            export.load(m.path)
        except Exception as exc:  # noqa: BLE001 - the point is to say which one and why
            bad.append(f"{m.name} ({_error(exc)})")
    if bad:
        return [Check("shipped models", FAIL, f"{len(bad)} of {len(models)} do not load: {'; '.join(bad)}",
                      f"restore {folder} from the repository (git checkout models/) or re-export them "
                      "(lgtc export)")]
    return [Check("shipped models", OK, f"{len(models)} load from {folder}")]


# ----------------------------------------------------------------------------- ROS 2


def check_rclpy() -> Check:
    """rclpy importable, and from where: a sourced ROS 2 (/opt/ros/$ROS_DISTRO) or the venv's wheels."""
    distro = os.environ.get("ROS_DISTRO", "")
    try:
        rclpy = _import("rclpy")
    except Exception as exc:  # noqa: BLE001
        if distro:
            todo = (f"ROS_DISTRO={distro} is set but this Python ({sys.version.split()[0]}) cannot import its "
                    "rclpy: run lgtc with the interpreter ROS 2 was built for, or re-source its setup.bash")
        else:
            todo = ("source /opt/ros/jazzy/setup.bash, or install the pip wheels: `make setup` "
                    "(ros-jazzy-rclpy[fastrtps] and the message packages)")
        return Check("rclpy", FAIL, _error(exc), todo)
    where = str(Path(getattr(rclpy, "__file__", "") or "?").parent)
    in_venv = where.startswith(sys.prefix)
    if distro and where.startswith("/opt/ros/"):
        return Check("rclpy", OK, f"ROS 2 {distro}, sourced ({where})")
    if distro:
        return Check("rclpy", WARN, f"from {where}, yet ROS_DISTRO={distro} is sourced",
                     "two ROS 2 installations: the venv's pip wheels shadow the sourced one; uninstall the "
                     "wheels (pip uninstall ros-jazzy-rclpy) or do not source ROS 2")
    if in_venv:
        return Check("rclpy", OK, f"pip wheels in this environment ({where}); no ROS 2 sourced")
    return Check("rclpy", OK, f"from {where}")


def check_launch() -> Check:
    ros2 = _which("ros2")
    try:
        _import("launch_ros")
        launch_ros = True
    except Exception:  # noqa: BLE001
        launch_ros = False
    if ros2 and launch_ros:
        return Check("ros2 / launch_ros", OK, f"{ros2}; launch_ros importable")
    found = ", ".join(f"{name} not found" for name, ok in (("ros2", ros2), ("launch_ros", launch_ros)) if not ok)
    return Check("ros2 / launch_ros", WARN, found,
                 "`ros2 launch` and `ros2 bag` need a full ROS 2 Jazzy: source /opt/ros/jazzy/setup.bash; "
                 "without it the graph runs as processes (lgtc_ros.graph_processes) and bags are read "
                 "with rosbags")


# ----------------------------------------------------------------------------- hardware


def check_crazyflie_interfaces() -> Check:
    try:
        msg = _import("crazyflie_interfaces.msg")
        srv = _import("crazyflie_interfaces.srv")
        needed = [getattr(msg, "FullState"), *(getattr(srv, n) for n in ("Takeoff", "Land", "NotifySetpointsStop"))]
    except Exception as exc:  # noqa: BLE001
        return Check("crazyflie_interfaces", WARN, _error(exc),
                     "the bridge to Crazyswarm2 needs it: build Crazyswarm2 in a colcon workspace and source "
                     "install/setup.bash (tests: `make crazyflie-interfaces` builds a stub)")
    where = str(Path(getattr(msg, "__file__", "") or "?").parent.parent)
    if not hasattr(srv, "GoTo"):
        return Check("crazyflie_interfaces", WARN, f"{len(needed)} interfaces the bridge uses, from {where}: "
                     "the test stub (no GoTo service)",
                     "fine for tests; for flights source Crazyswarm2's workspace (install/setup.bash)")
    return Check("crazyflie_interfaces", OK, f"from {where}")


def crazyradios(sysfs: Path | None = None) -> tuple[int | None, str]:
    """(Crazyradios visible, how it was found); None when no method could tell. Reads descriptors only."""
    sysfs = USB_SYSFS if sysfs is None else sysfs
    if sysfs.is_dir():
        found = 0
        for dev in sysfs.iterdir():
            try:
                ids = ((dev / "idVendor").read_text().strip(), (dev / "idProduct").read_text().strip())
            except OSError:
                continue
            found += ids == CRAZYRADIO
        return found, str(sysfs)
    try:
        crazyradio = _import("cflib.drivers.crazyradio")
        return len(crazyradio._find_devices()), "libusb (cflib)"
    except Exception:  # noqa: BLE001 - no libusb backend, no permission, private API changed
        pass
    if _which("lsusb"):
        out = _run(["lsusb", "-d", ":".join(CRAZYRADIO)])
        return len([line for line in out.splitlines() if line.strip()]), "lsusb"
    return None, "no /sys/bus/usb, libusb or lsusb"


def check_cflib() -> list[Check]:
    try:
        cflib = _import("cflib")
        _import("cflib.crtp")
    except Exception as exc:  # noqa: BLE001
        return [Check("cflib", WARN, _error(exc), "pip install cflib (direct radio links: link:=cflib, "
                      "backend cflib)")]
    out = [Check("cflib", OK, _version(cflib))]
    count, how = crazyradios()
    if count is None:
        out.append(Check("Crazyradio", WARN, f"cannot tell ({how})", "plug the Crazyradio in and check `lsusb -d "
                         "1915:7777`; flights need it"))
    elif count == 0:
        out.append(Check("Crazyradio", WARN, f"none visible ({how})", "plug in a Crazyradio (USB 1915:7777) and "
                         "add Bitcraze's udev rule (plugdev group) to fly; not needed for simulation"))
    else:
        out.append(Check("Crazyradio", OK, f"{count} visible ({how})"))
    return out


def run_checks() -> list[Check]:
    """Every item, in the order printed."""
    return [check_torch(), check_numba(), check_scip(), check_osqp(), check_cvxpy(), *check_models(), check_rclpy(),
            check_launch(), check_crazyflie_interfaces(), *check_cflib()]


def exit_code(checks: list[Check]) -> int:
    """0 when everything simulation needs is fine (warnings allowed), 1 otherwise."""
    return 1 if any(c.status == FAIL for c in checks) else 0


def main(print_fn: Callable[[str], None] = print) -> int:
    checks = run_checks()
    for c in checks:
        print_fn(c.line())
    warns, fails = (sum(c.status == s for c in checks) for s in (WARN, FAIL))
    verdict = ("ready to simulate" if not fails else "not ready to simulate: fix the FAIL lines") + \
        (f"; {warns} warning{'s' * (warns != 1)} (ROS 2 tools or hardware)" if warns else "")
    print_fn(verdict)
    return exit_code(checks)
