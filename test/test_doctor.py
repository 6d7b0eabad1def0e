"""`lgtc doctor`: one line per item with what to do; exit 1 only when simulation would not work.
Failures are simulated by replacing the doctor's probes (`_import`, `_which`, `_run`, `USB_SYSFS`)."""
from __future__ import annotations

import importlib
import json
import shutil

import pytest

from lgtc_ros import doctor
from lgtc_ros.cli import main


def broken(monkeypatch, *modules: str, error: type[Exception] = ImportError):
    """`modules` (and their sub-modules) fail to import inside the doctor."""
    def fake(name, *args):
        if any(name == m or name.startswith(m + ".") for m in modules):
            raise error(f"No module named '{name}'")
        return importlib.import_module(name, *args)
    monkeypatch.setattr(doctor, "_import", fake)


def lines(capsys) -> dict[str, str]:
    out = capsys.readouterr().out.splitlines()
    return {line.split("]", 1)[1].split(":", 1)[0].strip(): line for line in out if line.startswith("[")}


@pytest.fixture
def no_models_loaded(monkeypatch):
    """Model loading is covered by its own test; skip the ~1 s of TorchScript loads elsewhere."""
    monkeypatch.setattr(doctor, "check_models", lambda: [doctor.Check("shipped models", doctor.OK, "skipped")])


def test_this_installation_is_ready_to_simulate(capsys):
    assert main(["doctor"]) == 0
    got = lines(capsys)
    assert {"torch", "numba", "SCIP (pyscipopt)", "OSQP", "cvxpy", "shipped models", "rclpy", "ros2 / launch_ros",
            "crazyflie_interfaces", "cflib", "Crazyradio"} <= set(got)
    for item in ("torch", "numba", "SCIP (pyscipopt)", "OSQP", "shipped models", "rclpy"):
        assert got[item].startswith("[ok]"), got[item]
    assert "threads" in got["torch"] or "thread " in got["torch"]
    assert "load from" in got["shipped models"]
    for line in got.values():  # every line that is not fine says what to do
        assert line.startswith("[ok]") or " -> " in line, line


@pytest.mark.parametrize("module, item", [("torch", "torch"), ("numba", "numba"), ("pyscipopt", "SCIP (pyscipopt)"),
                                          ("osqp", "OSQP"), ("cvxpy", "cvxpy"), ("rclpy", "rclpy")])
def test_a_missing_simulation_dependency_fails_with_what_to_do(monkeypatch, capsys, no_models_loaded, module, item):
    broken(monkeypatch, module)
    assert main(["doctor"]) == 1
    line = lines(capsys)[item]
    assert line.startswith("[FAIL]") and " -> " in line and ("install" in line or "source" in line), line


@pytest.mark.parametrize("module, item", [("crazyflie_interfaces", "crazyflie_interfaces"), ("cflib", "cflib"),
                                          ("launch_ros", "ros2 / launch_ros")])
def test_hardware_and_ros_tool_items_only_warn(monkeypatch, capsys, no_models_loaded, module, item):
    broken(monkeypatch, module)
    assert main(["doctor"]) == 0
    line = lines(capsys)[item]
    assert line.startswith("[warn]") and " -> " in line, line


def test_a_broken_native_library_is_a_failure_not_a_crash(monkeypatch, capsys, no_models_loaded):
    broken(monkeypatch, "osqp", error=OSError)  # e.g. a missing shared object
    assert main(["doctor"]) == 1
    assert "OSError" in lines(capsys)["OSQP"]


def test_old_torch_fails_and_another_version_warns(monkeypatch):
    class Torch:
        __version__ = "1.13.1"

        @staticmethod
        def get_num_threads():
            return 2

    monkeypatch.setattr(doctor, "_import", lambda name: Torch)
    assert doctor.check_torch().status == doctor.FAIL
    Torch.__version__ = "2.5.0+cpu"
    check = doctor.check_torch()
    assert check.status == doctor.WARN and doctor.PINNED_TORCH in check.todo and "2 threads" in check.found


def test_a_corrupt_shipped_model_is_named(monkeypatch, tmp_path):
    import lgtc_ros.policy.shipped as shipped

    for name in ("lgtc_discharge_5x3.pt", "lgtc_discharge_5x3.json"):
        shutil.copy(shipped.models_dir() / name, tmp_path / name)
    (tmp_path / "broken.pt").write_bytes(b"not a zip file")
    meta = json.loads((tmp_path / "lgtc_discharge_5x3.json").read_text())
    (tmp_path / "broken.json").write_text(json.dumps(meta))
    monkeypatch.setattr(shipped, "models_dir", lambda: tmp_path)
    (check,) = doctor.check_models()
    assert check.status == doctor.FAIL and "broken.pt" in check.found and "lgtc_discharge" not in check.found
    assert "1 of 2" in check.found and check.todo
    (tmp_path / "broken.pt").unlink()
    assert doctor.check_models()[0].status == doctor.OK


def test_where_rclpy_comes_from(monkeypatch):
    class Rclpy:
        __file__ = "/opt/ros/jazzy/lib/python3.12/site-packages/rclpy/__init__.py"

    monkeypatch.setattr(doctor, "_import", lambda name: Rclpy)
    monkeypatch.setenv("ROS_DISTRO", "jazzy")
    check = doctor.check_rclpy()
    assert check.status == doctor.OK and "sourced" in check.found and "jazzy" in check.found
    monkeypatch.delenv("ROS_DISTRO")
    assert doctor.check_rclpy().status == doctor.OK       # a ROS 2 on the path without the variable
    Rclpy.__file__ = f"{doctor.sys.prefix}/lib/python3.11/site-packages/rclpy/__init__.py"
    assert "pip wheels" in doctor.check_rclpy().found
    monkeypatch.setenv("ROS_DISTRO", "jazzy")              # sourced, but the venv's wheels shadow it
    check = doctor.check_rclpy()
    assert check.status == doctor.WARN and "shadow" in check.todo


def test_crazyradio_seen_in_sysfs_without_touching_it(monkeypatch, tmp_path):
    for k, (vendor, product) in enumerate([("1915", "7777"), ("046d", "c52b"), ("1915", "7777")]):
        dev = tmp_path / f"1-{k}"
        dev.mkdir()
        (dev / "idVendor").write_text(vendor + "\n")
        (dev / "idProduct").write_text(product + "\n")
    (tmp_path / "usb1").mkdir()                               # a hub without ids
    monkeypatch.setattr(doctor, "USB_SYSFS", tmp_path)
    checks = {c.item: c for c in doctor.check_cflib()}
    assert checks["Crazyradio"].status == doctor.OK and checks["Crazyradio"].found.startswith("2 visible")


def test_crazyradio_falls_back_to_lsusb_then_says_it_cannot_tell(monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "USB_SYSFS", tmp_path / "absent")
    broken(monkeypatch, "cflib.drivers")
    monkeypatch.setattr(doctor, "_which", lambda name: "/usr/bin/lsusb" if name == "lsusb" else None)
    monkeypatch.setattr(doctor, "_run", lambda cmd: "Bus 001 Device 004: ID 1915:7777 Nordic Crazyradio PA\n")
    assert doctor.crazyradios() == (1, "lsusb")
    monkeypatch.setattr(doctor, "_which", lambda name: None)
    count, how = doctor.crazyradios()
    assert count is None and "lsusb" in how
    checks = {c.item: c for c in doctor.check_cflib()}
    assert checks["Crazyradio"].status == doctor.WARN and "cannot tell" in checks["Crazyradio"].found
