"""Run folders: the interface between stages.

``runs/<name>/{config.yaml, log.jsonl, state.json, reinforced/, labels/, model/, manifest.json,
metrics.json}``. A stage's output is written under a temporary name and renamed when complete,
so a folder never holds a half-written output that looks complete. ``state.json`` records the run
kind and, per stage, the content hashes of what it read (``inputs``) and wrote (``outputs``): a
stage counts as done only while both still match (:meth:`RunFolder.stage_status`). One process
at a time holds a run folder (:meth:`RunFolder.lock`).

This module imports nothing of obliviate's but :mod:`obliviate.errors`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import yaml

from obliviate.errors import RunFolderError
from obliviate.hashing import file_sha256, tree_hashes

LOCK_FILE = ".lock"
_HELD: set[str] = set()  # run folders whose lock this process holds
STATE_VERSION = 2


# Minutes a process waits at a collective (barrier, gather) before the job is stopped. Stages that
# run on the main process alone (evaluation) hold the others at a barrier: on a large model that
# takes longer than NCCL's default of 10 minutes. ``OBLIVIATE_TIMEOUT_MINUTES`` overrides it.
DEFAULT_TIMEOUT_MINUTES = 180.0


def is_distributed() -> bool:
    """True inside a multi-process (``accelerate launch`` / torchrun) run."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def timeout_minutes() -> float:
    """The process-group timeout: ``OBLIVIATE_TIMEOUT_MINUTES``, default :data:`DEFAULT_TIMEOUT_MINUTES`.

    Raises:
        RunFolderError: the variable is not a positive number.
    """
    text = os.environ.get("OBLIVIATE_TIMEOUT_MINUTES", "")
    if not text:
        return DEFAULT_TIMEOUT_MINUTES
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if not 0 < minutes < float("inf"):
        raise RunFolderError(f"OBLIVIATE_TIMEOUT_MINUTES must be a number of minutes > 0, not {text!r}")
    return minutes


def use_cpu() -> bool:
    """Whether training runs on CPU (no CUDA device): the one answer both ``PartialState`` and the
    ``Accelerator`` are built with, so a CPU launch has one main process (gloo), not N."""
    import torch

    return not torch.cuda.is_available()


def distributed_state():
    """Accelerate's process state, created once with the CPU flag and the process-group timeout.

    The first call in a multi-process run initialises the process group (later ``Accelerator``
    objects reuse it), so it is made here, with the settings, and nowhere else.
    """
    from datetime import timedelta

    from accelerate import PartialState

    return PartialState(cpu=use_cpu(), timeout=timedelta(minutes=timeout_minutes()))


def is_main_process() -> bool:
    """True unless this is a non-main process of a multi-process (``accelerate launch``) run."""
    if not is_distributed():
        return True
    return distributed_state().is_main_process


def wait_for_everyone() -> None:
    """Barrier across the processes of an ``accelerate launch`` run (no-op in a single process)."""
    if is_distributed():
        distributed_state().wait_for_everyone()


def say_main(message: str) -> None:
    """Print a line on stdout from the main process only (one line per launch, not per process)."""
    if is_main_process():
        print(message, flush=True)


def process_index() -> tuple[int, int]:
    """``(rank, number of processes)``; ``(0, 1)`` in a single process."""
    if not is_distributed():
        return 0, 1
    state = distributed_state()
    return state.process_index, state.num_processes


def local_device() -> str:
    """Where this process keeps its models: its own GPU (``cuda:LOCAL_RANK``), or the CPU."""
    if use_cpu():
        return "cpu"
    return str(distributed_state().device) if is_distributed() else "cuda"


def sharded_launch() -> bool:
    """Whether the launch shards the model (accelerate's FSDP or DeepSpeed plugin)."""
    return any(os.environ.get(f"ACCELERATE_USE_{name}", "false").lower() == "true" for name in ("FSDP", "DEEPSPEED"))


def training_device() -> str:
    """Where a model to be trained is loaded: the CPU under FSDP/DeepSpeed (``prepare`` shards it
    onto the GPUs; a full copy per GPU would not fit), otherwise this process's own device."""
    return "cpu" if sharded_launch() else local_device()


def main_result(run, error_type=RunFolderError):
    """Run ``run()`` on the main process only and hand every process its outcome.

    Returns what ``run()`` returned (on the main process; None on the others). An exception on
    the main process is raised there and, as ``error_type`` with the same message, on the
    others, so no process is left waiting at a barrier for one that has stopped.
    """
    if not is_distributed():
        return run()
    error, result = None, None
    if is_main_process():
        try:
            result = run()
        except Exception as exc:  # handed to every rank below, then re-raised here
            error = exc
    message = broadcast_from_main(None if error is None else str(error))
    if error is not None:
        raise error
    if message is not None:
        follower = error_type(message)
        follower.from_main = True  # the main process reports it; the CLI prints it once
        raise follower
    return result


def broadcast_from_main(value):
    """``value`` of the main process, on every process (a picklable object; no-op in one process)."""
    if not is_distributed():
        return value
    from accelerate.utils import broadcast_object_list

    distributed_state()
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes) -> None:
    """Write a file via a temporary file and ``os.replace`` (never half-written).

    The file gets the permissions of an ordinary new file (``0666 & ~umask``), not the private
    ``0600`` of :func:`tempfile.mkstemp`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    """Write a text file atomically (see :func:`atomic_write_bytes`)."""
    # a file name that is not UTF-8 (surrogate escapes) is written as \udcXX, never a crash
    atomic_write_bytes(path, text.encode("utf-8", errors="backslashreplace"))


def atomic_write_json(path, data) -> None:
    """Write JSON atomically. Non-ASCII is escaped, so file names that are not UTF-8 (kept by
    Python as surrogate escapes) are written and read back unchanged."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=True, default=str) + "\n")


def save_yaml(data: dict, path) -> None:
    """Write a dict as YAML atomically (escaped where a string holds a non-UTF-8 file name)."""
    try:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=False)
    atomic_write_text(path, text)


def _first_difference(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            diff = _first_difference(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
            if diff:
                return diff
        return None
    return None if a == b else (prefix or "<root>")


# Settings, at any depth of a config, that say where a run reports rather than what it computes
# (``train.report_to``): they may change between invocations of the same run and are no stage's input.
REPORTING_SETTINGS = ("report_to",)


def without_reporting_settings(data):
    """A copy of plain config data without the :data:`REPORTING_SETTINGS` keys, at any depth."""
    if isinstance(data, dict):
        return {k: without_reporting_settings(v) for k, v in data.items() if k not in REPORTING_SETTINGS}
    return data


def run_identity(config: dict) -> dict:
    """What makes a run that run: its config without ``RunFolder.VOLATILE_KEYS`` (top level) and
    :data:`REPORTING_SETTINGS` (any depth)."""
    return without_reporting_settings({k: v for k, v in config.items() if k not in RunFolder.VOLATILE_KEYS})


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunFolder:
    """A run folder: config, log, per-stage state and outputs."""

    # Settings that may change between invocations of the same run without making it a different
    # run: the evaluation is redone when its settings change (its stage inputs record them),
    # trust_remote_code is never read back from a folder (only the user's command line sets it), and
    # the model card's settings only rewrite the card.
    VOLATILE_KEYS = ("force", "overwrite", "eval", "trust_remote_code", "card")

    def __init__(self, path):
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def state_path(self) -> Path:
        return self.path / "state.json"

    def stage_path(self, stage: str) -> Path:
        return self.path / stage

    # ---- the folder itself ----
    def check_writable(self) -> None:
        """Refuse, before any work, an --out that cannot become a run folder.

        Raises:
            RunFolderError: the path is a file, lies under a file, or is not writable.
        """
        for parent in (self.path, *self.path.parents):
            if parent.exists():
                if not parent.is_dir():
                    raise RunFolderError(f"'{parent}' is a file, not a folder: choose another --out")
                if not os.access(parent, os.W_OK | os.X_OK):
                    raise RunFolderError(f"cannot write to '{parent}' (read-only or no permission): "
                                         "choose another --out")
                return

    @contextlib.contextmanager
    def lock(self):
        """Hold the folder for this process: a second process on the same folder gets one clear
        error. The lock file names the holder's PID; a lock left by a process that died is stale
        and taken over (the operating system releases ``flock`` locks of dead processes). Taking
        it again in the same process while it is held is a no-op. In a multi-process run the main
        process holds it for all, and a refusal stops every process with the same error."""
        key = os.path.abspath(self.path)
        if key in _HELD:  # already held by this process
            yield self
            return
        fh = main_result(self._acquire)  # the main process's file handle; None on the others
        _HELD.add(key)
        try:
            yield self
        finally:
            _HELD.discard(key)
            if fh is not None:
                fh.seek(0)
                fh.truncate()
                import fcntl

                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()

    def _acquire(self):
        """Take the ``flock`` of the folder's lock file; returns the open lock file."""
        import fcntl

        self.check_writable()
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / LOCK_FILE
        fh = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                fh.close()
                raise
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunFolderError(f"'{self.path}' is in use by {holder}: wait for it to finish (or stop it), "
                                 "or choose another --out") from None
        fh.seek(0)
        previous = fh.read().strip()
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()} on {socket.gethostname()} since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        if previous:
            pid = previous.split()[1] if previous.startswith("process ") else ""
            if pid.isdigit() and not _pid_alive(int(pid)):
                print(f"note: took over the stale lock of {previous} in {self.path}", flush=True)
        return fh

    def init(self, config: dict, overwrite: bool = False, kind: str | None = None) -> None:
        """Create the folder, or check that an existing one holds this same run (on the main
        process; the others wait, and get its error if it refuses).

        Raises:
            RunFolderError: the folder holds a different run (and ``overwrite`` is off), a run of
                another kind, or files that are not a run folder's.
        """
        main_result(lambda: self._init(config, overwrite, kind))
        wait_for_everyone()

    def _init(self, config: dict, overwrite: bool, kind: str | None) -> None:
        self.check_writable()
        entries = [p for p in self.path.iterdir() if p.name != LOCK_FILE] if self.path.is_dir() else []
        if entries:
            if not self.config_path.exists():
                raise RunFolderError(f"'{self.path}' exists and is not an obliviate run folder: choose another --out")
            old = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
            old_kind = self.kind
            diff = "the run kind" if kind and old_kind and old_kind != kind \
                else _first_difference(run_identity(old), run_identity(config))
            if diff and not overwrite:
                what = (f"a '{old_kind}' run, not '{kind}'" if diff == "the run kind"
                        else f"a different run (its setting '{diff}' differs)")
                raise RunFolderError(f"'{self.path}' holds {what}: choose another --out, or pass --overwrite to "
                                     "start this one afresh")
            if diff and overwrite:
                for entry in entries:
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        save_yaml(config, self.config_path)
        if kind:
            state = self.state()
            state["kind"] = kind
            self._write_state(state)

    # ---- state ----
    def state(self) -> dict:
        """``state.json``: ``{"kind", "stages": {name: {...}}}`` (empty stages for a new folder)."""
        if self.state_path.exists():
            try:
                state = json.loads(self.state_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise RunFolderError(f"'{self.state_path}' is corrupt ({exc}): pass --overwrite to start the run "
                                     "afresh") from exc
            state.setdefault("stages", {})
            return state
        return {"obliviate_state": STATE_VERSION, "stages": {}}

    @property
    def kind(self) -> str | None:
        """The run kind recorded in ``state.json`` (``whp``, ``unlearn``), if any."""
        return self.state().get("kind") if self.state_path.exists() else None

    def _write_state(self, state: dict) -> None:
        if is_main_process():
            state["obliviate_state"] = STATE_VERSION
            atomic_write_json(self.state_path, state)

    def stage_info(self, stage: str) -> dict:
        return self.state()["stages"].get(stage, {})

    def stage_status(self, stage: str, inputs: dict | None = None) -> tuple[bool, str]:
        """Whether ``stage`` is done, and if not, why.

        Done means: marked complete, read the same ``inputs`` (content hashes) as now when they
        are given, and every output file still has the hash recorded when it was written.
        """
        info = self.stage_info(stage)
        if not info.get("complete"):
            return False, "not run yet" if not info else "not complete"
        if inputs is not None:
            old = info.get("inputs") or {}
            changed = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
            if changed:
                return False, f"its input '{changed[0]}' changed since it ran"
        output = info.get("output")
        if output is None:
            return True, "done"
        target = self.path / output
        if not target.exists():
            return False, f"its output '{output}' is missing"
        recorded = info.get("outputs")
        if recorded is None:
            return False, f"its output '{output}' has no recorded hashes"
        # files added later (the model card in model/README.md) are not part of the stage's output
        for name, digest in sorted(recorded.items()):
            path = target / name if target.is_dir() else target
            if not path.is_file():
                return False, f"its output '{output}/{name}' is missing"
            if file_sha256(path) != digest:
                return False, f"its output '{output}/{name}' changed since it was written" if target.is_dir() \
                    else f"its output '{output}' changed since it was written"
        return True, "done"

    def start_stage(self, stage: str, inputs: dict, checkpoint: Path | None = None) -> None:
        """Record that ``stage`` starts with ``inputs``; a checkpoint of an attempt that read other
        inputs is discarded (it must not be resumed)."""
        if not is_main_process():
            return
        state = self.state()
        previous = state["stages"].get(stage) or {}
        if checkpoint is not None and previous.get("inputs") != inputs:
            shutil.rmtree(checkpoint, ignore_errors=True)
        state["stages"][stage] = {"complete": False, "inputs": inputs, "started": time.time()}
        self._write_state(state)

    def invalidate(self, stage: str) -> bool:
        """Remove the output of a stage that is no longer done and mark it incomplete (main process).

        Returns:
            Whether the stage had been complete.
        """
        info = self.stage_info(stage)
        if not info or not is_main_process():
            return False
        output = info.get("output")
        if output:
            target = self.path / output
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        state = self.state()
        state["stages"][stage] = {**info, "complete": False}
        self._write_state(state)
        return bool(info.get("complete"))

    def mark_done(self, stage: str, output: str | None = None, inputs: dict | None = None, **info) -> None:
        """Mark ``stage`` complete, with the hashes of its output (file or folder)."""
        if not is_main_process():
            return
        state = self.state()
        outputs = tree_hashes(self.path / output) if output and (self.path / output).exists() else None
        if inputs is None:
            inputs = (state["stages"].get(stage) or {}).get("inputs")
        state["stages"][stage] = {"complete": True, "output": output, "outputs": outputs, "inputs": inputs,
                                  "finished": time.time(), **info}
        state.pop("weights_hashes", None)  # a rewritten model folder must be hashed afresh
        self._write_state(state)

    # ---- log ----
    def log(self, record: dict) -> None:
        """Append one JSON line to ``log.jsonl`` (main process only).

        A ``{"event": "resumed", "stage": S, "step": N}`` record first drops the records of stage S
        after step N: they came from the attempt that was interrupted after its last checkpoint and
        are about to be written again.
        """
        if not is_main_process():
            return
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / "log.jsonl"
        if record.get("event") == "resumed" and path.exists():
            stage, step = record.get("stage"), record.get("step", 0)
            kept = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
                    if not _after_step(line, stage, step)]
            atomic_write_text(path, "".join(kept))
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": round(time.time(), 3), **record}, default=str) + "\n")

    # ---- outputs ----
    def save_model(self, stage: str, save) -> Path:
        """Write a stage's model folder atomically, on the main process only: ``save(tmp_dir)`` fills it."""
        if is_main_process():
            tmp = self.tmp_dir(stage)
            save(tmp)
            self.commit_dir(stage, tmp)
        wait_for_everyone()
        return self.stage_path(stage)

    def tmp_dir(self, stage: str) -> Path:
        """A fresh temporary folder for a stage's output; ``commit_dir`` renames it into place."""
        tmp = self.path / f".{stage}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        return tmp

    def commit_dir(self, stage: str, tmp: Path) -> Path:
        final = self.stage_path(stage)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        return final


def _after_step(line: str, stage, step: int) -> bool:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False
    return (record.get("stage") == stage and record.get("event") is None
            and isinstance(record.get("step"), int) and record["step"] > step)


def read_log(path) -> list[dict]:
    """Records of a run's ``log.jsonl`` (empty if there is none)."""
    path = Path(path)
    log = path / "log.jsonl" if path.is_dir() else path
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
