"""Run folders: one owner process at a time, atomic writes, one checkpoint format."""

import errno
import fcntl
import json
import os
import re
import socket
import time
from pathlib import Path

import torch

__all__ = [
    "BEST",
    "CHECKPOINT",
    "CheckpointError",
    "RunFolder",
    "RunFolderError",
    "atomic_write",
    "atomic_write_text",
    "load_checkpoint",
]

#: the checkpoint's file name in a run folder
CHECKPOINT = "checkpoint.pt"
#: the file of the best epoch's weights in a run folder trained with early stopping (``patience``)
BEST = "best.pt"
#: format tag of every training checkpoint
CHECKPOINT_FORMAT = "pyro_noisevae.checkpoint/1"
#: the lock file of a run folder (experiments may hold their own ``.lock`` in the same folder)
LOCK = ".owner.lock"
#: files a run writes; ``--overwrite`` removes them before the new run starts
RUN_FILES = (CHECKPOINT, BEST, "config.json", "metrics.jsonl", "reconstructions.png", "samples.png", "loss_curves.png")

_TEMPORARY = re.compile(r"^\..+\.tmp(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not belong to this run."""


class RunFolderError(RuntimeError):
    """A run folder cannot be used: another process owns it, or it cannot be written."""


def _temporary(path):
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write(path, writer):
    """
    Write ``path`` atomically: ``writer(f)`` fills a temporary file ``.<name>.tmp<pid>`` opened for binary
    writing beside it, which is flushed to disk and renamed over ``path``. A crash leaves ``path`` as it was.
    """
    path = Path(path)
    tmp = _temporary(path)
    try:
        with open(tmp, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path, text):
    """:func:`atomic_write` of a UTF-8 text."""
    atomic_write(path, lambda f: f.write(text.encode()))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    try:  # a killed child not yet reaped by its parent is a zombie: dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def load_checkpoint(path, map_location="cpu"):
    """
    Load a training checkpoint safely (``torch.load(..., weights_only=True)``).

    :raises CheckpointError: if the file is missing, unreadable, or not a pyro_noisevae checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; start a new run without --resume, or point --out at the run folder")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated file, garbage, or a pickle that is not weights-only
        raise CheckpointError(f"checkpoint {path} could not be read ({type(e).__name__}: {_one_line(e)}); it is "
                              "corrupt or was not written by pyro_noisevae. Delete it to start over.") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a pyro_noisevae training checkpoint (format tag {CHECKPOINT_FORMAT!r} missing)")
    return ckpt


def _one_line(e, limit=300):
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RunFolder:
    """
    A run folder owned by this process for the life of the ``with`` block.

    Entering creates the folder, takes an exclusive lock on its ``.owner.lock`` (``fcntl.flock``, held until
    exit; the kernel drops it when the process dies, so a killed run never blocks the folder) and records the
    owner there (pid, host, start time), and removes the temporaries ``.<name>.tmp<pid>`` that dead processes
    left behind. Every file is then written atomically (:func:`atomic_write`).

    :raises RunFolderError: when another process owns the folder (the message names it) or the folder cannot be
        created or written.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._fd = None

    def __enter__(self):
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunFolderError(f"cannot use {self.path} as a run folder: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise RunFolderError(f"cannot lock {self.path / LOCK}: {e.strerror}") from None
            raise RunFolderError(f"{self.path} is in use by {self._owner()}; wait for that run to end, or choose "
                                 "another --out") from None
        self._fd = fd
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
        self._remove_stale_temporaries()
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)  # releases the lock; the file stays, naming the last owner
            self._fd = None
        return False

    def check_free(self):
        """Raise :class:`RunFolderError` naming the owner if another process owns the folder now (takes nothing)."""
        try:
            fd = os.open(self.path / LOCK, os.O_RDONLY)
        except OSError:  # no lock file: never owned
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # conflicts with an owner's exclusive lock only
        except OSError:
            raise RunFolderError(f"{self.path} is in use by {self._owner()}; wait for that run to end, or choose "
                                 "another --out") from None
        finally:
            os.close(fd)

    def _owner(self):
        # the owner writes its record right after locking: give it a moment
        for _ in range(20):
            try:
                owner = json.loads((self.path / LOCK).read_text())
                return f"pid {owner['pid']} on host {owner['host']} (since {owner['started']})"
            except (OSError, ValueError, KeyError, TypeError):
                time.sleep(0.05)
        return "another process"

    def _remove_stale_temporaries(self):
        for p in self.path.iterdir():
            m = _TEMPORARY.match(p.name)
            if m and not _pid_alive(int(m.group(1))):
                p.unlink(missing_ok=True)

    def file(self, name):
        return self.path / name

    def write_text(self, name, text):
        atomic_write_text(self.path / name, text)

    def write_json(self, name, obj):
        self.write_text(name, json.dumps(obj, indent=2) + "\n")

    def clear(self):
        """Remove the files of a previous run (for ``--overwrite``)."""
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)

    def save_checkpoint(self, config, data_shape, trainer_state, history):
        """
        Write ``checkpoint.pt`` (the one checkpoint format: ``format``, ``config``, ``data_shape``, ``trainer``,
        ``history``) and ``metrics.jsonl`` (``history``, one JSON record a line), each atomically.
        """
        state = {"format": CHECKPOINT_FORMAT, "config": config, "data_shape": [int(d) for d in data_shape],
                 "trainer": trainer_state, "history": history}
        atomic_write(self.path / CHECKPOINT, lambda f: torch.save(state, f))
        self.write_text("metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))

    def save_best(self, config, data_shape, vae_state, record):
        """
        Write ``best.pt``: the weights of the best epoch so far, in the checkpoint format (its ``trainer`` holds
        only ``vae``; ``history`` is the one evaluation record of that epoch), atomically.
        """
        state = {"format": CHECKPOINT_FORMAT, "config": config, "data_shape": [int(d) for d in data_shape],
                 "trainer": {"vae": vae_state}, "history": [record]}
        atomic_write(self.path / BEST, lambda f: torch.save(state, f))
