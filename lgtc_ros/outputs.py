"""Safe outputs: no command writes over what exists, a killed run leaves nothing half-written,
two runs never write into one place.

Rules (every `lgtc` command that writes follows them):

* An existing file or non-empty folder is replaced only with `force=True` (`--force`); the
  shipped models folder (`lgtc_ros.policy.shipped.models_dir()`) is never written over, even then.
* A folder output is built in a staging folder beside it (`.NAME.lgtc-tmp-PID/NAME`) and renamed
  into place when complete (`staged_dir`); files are written to a temporary name and renamed
  (`staged_files`, `atomic_write_text`). A killed run leaves at most a hidden staging entry,
  which the next run into the same place removes; the target is either untouched or complete.
* A lock file beside the target (`.NAME.lock`: pid, host, command, start time) refuses a second
  writer while the first runs (`OutputLocked`). A lock left by a process that no longer runs is
  taken over, with a note on stderr.

    with staged_dir("runs/x", force=args.force) as tmp:   # tmp: an empty folder
        (tmp / "summary.json").write_text(...)
    # here runs/x holds exactly what was written into tmp
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

STAGING = ".lgtc-tmp-"


class OutputError(ValueError):
    """An output cannot be written where it was asked to; the message says why and what to do."""


class OutputExists(OutputError):
    """The target exists (a file, or a folder that is not empty) and `--force` was not given."""


class ProtectedOutput(OutputError):
    """The target is the shipped models folder or inside it, or holds it: never written over."""


class OutputLocked(OutputError):
    """Another running process writes the same target."""


# ----------------------------------------------------------------------------- checks


def protected_dir() -> Path:
    from lgtc_ros.policy.shipped import models_dir

    return models_dir().resolve()


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def is_protected(path: str | Path) -> bool:
    """`path` is the shipped models folder, inside it, or holds it."""
    real, models = Path(path).resolve(), protected_dir()
    return _inside(real, models) or _inside(models, real)


def _nonempty(path: Path) -> bool:
    return path.is_file() or path.is_symlink() or (path.is_dir() and any(path.iterdir()))


def check_target(path: str | Path, force: bool = False, option: str = "--out") -> None:
    """Refuse to write `path` if it exists (a file, or a non-empty folder) unless `force`; refuse
    always for anything existing in the shipped models folder, and for a folder that holds it,
    the working folder or the home folder."""
    path = Path(path)
    if not _nonempty(path):
        return
    real, models = path.resolve(), protected_dir()
    if is_protected(path):
        what = "a shipped model file" if path.is_file() else "the shipped models folder (or holds it)"
        raise ProtectedOutput(f"{path} is {what} ({models}): lgtc never writes over it, even with --force; "
                              f"choose another {option}")
    if not force:
        kind = "a file" if path.is_file() else "a folder that is not empty"
        raise OutputExists(f"{path} exists ({kind}): pass --force to replace it, or choose another {option}")
    if path.is_dir() and (_inside(Path.cwd().resolve(), real) or real == Path.home().resolve()
                          or (real / ".git").exists()):
        raise ProtectedOutput(f"{path} holds the working folder, the home folder or a git checkout: "
                              f"--force will not replace it; choose another {option}")


# ----------------------------------------------------------------------------- locks


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(info: dict) -> bool:
    if info.get("host") != socket.gethostname():
        return True  # cannot tell: assume it runs
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = _proc_start(pid)
    return not (started and info.get("proc_start") and started != info["proc_start"])


def _note(msg: str) -> None:
    print(f"lgtc: note: {msg}", file=sys.stderr)


class Lock:
    """`.NAME.lock` beside `target`, created atomically with its content (pid, host, command).

    `acquire` raises `OutputLocked` while the holder runs; a lock of a dead process is taken over
    (`note` says so). Use as a context manager."""

    def __init__(self, target: str | Path, note: Callable[[str], None] = _note):
        target = Path(target)
        self.target = target
        self.path = target.parent / f".{target.name}.lock"
        self.note = note
        self.held = False

    def _info(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": _proc_start(os.getpid()),
                "command": " ".join(["lgtc", *sys.argv[1:]]) if sys.argv else "lgtc",
                "started": _dt.datetime.now().isoformat(timespec="seconds")}

    def _read(self) -> dict | None:
        try:
            info = json.loads(self.path.read_text())
            return info if isinstance(info, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "Lock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(self._info()) + "\n")
        try:
            for _ in range(5):
                try:
                    os.link(tmp, self.path)  # atomic: fails if the lock exists; never a lock without content
                    self.held = True
                    return self
                except FileExistsError:
                    pass
                info = self._read()
                if info is None:
                    continue  # released meanwhile: try again
                if _alive(info):
                    elsewhere = info.get("host") != socket.gethostname()
                    who = f"process {info.get('pid', '?')}" + (f" on {info.get('host')}" if elsewhere else "")
                    raise OutputLocked(
                        f"{self.target} is being written by {who} (`{info.get('command', '?')}`, started "
                        f"{info.get('started', '?')}): wait for it to finish or choose another target "
                        f"(lock file {self.path})")
                try:  # stale: move it aside (atomic, so only one of several takers wins) and retry
                    stale = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
                    os.rename(self.path, stale)
                    stale.unlink()
                    self.note(f"took over the lock {self.path} of process {info.get('pid', '?')}, which no longer runs")
                except FileNotFoundError:
                    pass
            raise OutputLocked(f"{self.target}: could not take the lock {self.path}; try again")
        finally:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            info = self._read()
            if info is not None and info.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------- staged writes


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _clean_staging(target: Path) -> None:
    """Staging entries of `target` left by killed runs (the caller holds the lock)."""
    if target.parent.is_dir():
        for old in target.parent.glob(f".{target.name}{STAGING}*"):
            _remove(old)


def _commit_dir(staged: Path, target: Path) -> None:
    """Put the complete folder `staged` at `target`, replacing what is there (checked before)."""
    old = None
    if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
        target.rmdir()
    elif target.exists() or target.is_symlink():
        old = target.parent / f".{target.name}{STAGING}old-{os.getpid()}"
        os.rename(target, old)
    os.rename(staged, target)
    if old is not None:
        _remove(old)


@contextlib.contextmanager
def staged_dir(target: str | Path, force: bool = False, option: str = "--out",
               lock: bool = True) -> Iterator[Path]:
    """An empty folder to write the output into; on a clean exit it becomes `target` (the old
    content, if any, is replaced as a whole); on an exception nothing changes at `target`."""
    target = Path(target)
    with (Lock(target) if lock else contextlib.nullcontext()):
        check_target(target, force, option)
        _clean_staging(target)
        root = target.parent / f".{target.name}{STAGING}{os.getpid()}"
        staged = root / target.name  # the folder keeps its name (a rosbag2 names its file after it)
        staged.mkdir(parents=True)
        try:
            yield staged
            _commit_dir(staged, target)
        finally:
            _remove(root)


def temp_name(target: Path) -> Path:
    """`dir/.NAME.lgtc-tmp-PID.SUFFIX`: hidden, unique, the same suffix (savefig, torch.save)."""
    return target.parent / f".{target.name}{STAGING}{os.getpid()}{target.suffix}"


@contextlib.contextmanager
def staged_files(targets: Sequence[str | Path], force: bool = False, option: str = "--out",
                 lock: bool = True) -> Iterator[list[Path]]:
    """Temporary paths for `targets` (one lock: the first's); on a clean exit each is renamed onto
    its target, on an exception they are removed and the targets stay untouched."""
    targets = [Path(t) for t in targets]
    with (Lock(targets[0]) if lock else contextlib.nullcontext()):
        for t in targets:
            check_target(t, force, option)
            if t.is_dir():
                raise OutputExists(f"{t} is a folder; {option} wants a file name")
            _clean_staging(t)
        targets[0].parent.mkdir(parents=True, exist_ok=True)
        temps = [temp_name(t) for t in targets]
        try:
            yield temps
            for tmp, t in zip(temps, targets):
                if tmp.exists():
                    os.replace(tmp, t)
        finally:
            for tmp in temps:
                tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file and a rename (no lock, no checks)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replace_protected(path: str | Path) -> None:
    """Raise `ProtectedOutput` if `path` exists inside the shipped models folder (library writers
    call this before writing: models/ is never written over, whoever asks)."""
    path = Path(path)
    if path.exists() and _inside(path.resolve(), protected_dir()):
        raise ProtectedOutput(f"{path} is a shipped model file ({protected_dir()}): never written over; "
                              f"write to another name")
