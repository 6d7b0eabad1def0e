"""How a node takes Ctrl-C and SIGTERM: as a request to stop, never as an exception.

rclpy's own handlers (installed by `rclpy.init`) shut the context down and then call the previous
Python handler, which by default raises KeyboardInterrupt wherever the main thread is (inside
`destroy_node`, say) and prints a traceback. `quiet_signals` replaces that handler with one that
only remembers the request; a signal that arrives before rclpy's handlers exist (while the node
imports torch, or inside `rclpy.init`) is then not lost either: `stop_requested()` says so.
Nothing else is imported here, so the console scripts can call it before any heavy import.
"""
import signal

_requested = False


def _remember(*_) -> None:
    global _requested
    _requested = True


def quiet_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _remember)


def stop_requested() -> bool:
    return _requested
