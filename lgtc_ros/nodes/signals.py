"""How a node takes Ctrl-C and SIGTERM: as a request to stop, never as a traceback.

Two phases:

- importing (`exit_on_signals`, armed by the console script before rclpy, numpy, torch and the
  policy code load: seconds of CPU on a busy machine): the process ends at once, exit 0; nothing
  is open yet that needs releasing;
- from `rclpy.init` on (`remember_signals`): the request is only remembered (`stop_requested()`);
  the node finishes building (reading its model: well under a second, the imports are done), and
  the spin loop stops at its next turn and releases the DDS participant. Never an exception
  raised from the handler: a KeyboardInterrupt that lands while C++ (torch, pybind11) calls back
  into Python aborts the process.

The handler is installed once, before `rclpy.init`, and stays the only one: `nodes.common.run`
asks rclpy for none (rclpy's own shut the context down from a thread of theirs, concurrently
with the main thread's teardown). A phase change only changes what it does. Nothing else is imported here, so the console scripts can call it before any heavy import.
"""
import os
import signal

_requested = False
_mode = "remember"
_installed = False


def _on_signal(*_) -> None:
    global _requested
    _requested = True
    if _mode == "exit":
        os._exit(0)


def _enter(mode: str) -> None:
    global _mode, _installed
    _mode = mode
    if not _installed:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _on_signal)
        _installed = True


def exit_on_signals() -> None:
    _enter("exit")


def remember_signals() -> None:
    _enter("remember")


def stop_requested() -> bool:
    return _requested
