"""How a node takes Ctrl-C and SIGTERM: as a request to stop, never as a traceback.

A node's life has three phases, and a stop request means something different in each:

- importing (`exit_on_signals`, armed by the console script before rclpy, numpy and torch load:
  seconds of CPU on a busy machine): the process ends at once, exit 0; nothing is open yet;
- starting (`interrupt_on_signals`: rclpy.init, building the node, loading its model): the start
  is interrupted with KeyboardInterrupt, which `nodes.common.run` catches and then releases what
  was built (so a Ctrl-C does not wait for a model to load only to stop);
- running and cleaning up (`remember_signals`): the request is only remembered
  (`stop_requested()`) and the spin loop stops at its next turn. rclpy's own handlers would
  otherwise call Python's default one, which raises KeyboardInterrupt wherever the main thread
  is (inside `destroy_node`, say).

The handler is installed once, before `rclpy.init` (which chains its own handler to it); a phase
change only changes what it does. Nothing else is imported here, so the console scripts can call
it before any heavy import.
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
    if _mode == "interrupt":
        raise KeyboardInterrupt


def _enter(mode: str) -> None:
    global _mode, _installed
    _mode = mode
    if not _installed:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _on_signal)
        _installed = True


def exit_on_signals() -> None:
    _enter("exit")


def interrupt_on_signals() -> None:
    _enter("interrupt")


def remember_signals() -> None:
    _enter("remember")


def stop_requested() -> bool:
    return _requested
