"""Data-parallel runs: 2 processes under ``accelerate launch`` (gloo, on CPU) against 1 process.

Each 2-process run (``batch_size=1``) is compared with one in-process run at the same global batch
(``batch_size=1, grad_accum=2``): the same final weights (float tolerance), the same logged
learning-rate curve, one writer (each log record once, ``state.json`` complete), and for NPO a
resume after both processes are killed right after a checkpoint. Skipped where a 2-process gloo
group cannot start on the machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from obliviate.cli import main

pytestmark = pytest.mark.distributed

HP_TEXT = " ".join(f"Harry Potter walked into Hogwarts on day {i}. Ron and Hermione waited by the lake. "
                   f"Dumbledore told Harry about Voldemort and the {i} owls." for i in range(9))  # 14 training blocks: whole global batches of 2
RETAIN_TEXT = "The farmer walked to the market with his dog. The river ran past the old mill. " * 6

# Kills both processes (SIGKILL) as soon as the first checkpoint is complete.
KILLER = """
import os, signal, sys
import obliviate.train as train
real = train._save_checkpoint
def save_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
train._save_checkpoint = save_then_die
from obliviate.cli import main
sys.exit(main())
"""

PROBE = """
import torch.distributed as dist
dist.init_process_group("gloo")
dist.barrier()
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
            "OBLIVIATE_PROGRESS": "0", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def launch(target: list[str], processes: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    """``accelerate launch`` of ``target`` (``-m module args`` or a script and its args) on CPU."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), *target]
    return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def gloo(tmp_path_factory):
    """Skip the module unless ``accelerate launch`` can start a 2-process gloo group here."""
    script = tmp_path_factory.mktemp("probe") / "probe.py"
    script.write_text(PROBE)
    try:
        done = launch([str(script)], timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"accelerate launch cannot start 2 processes here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"accelerate launch with gloo cannot start 2 processes here: {done.stderr[-500:]}")


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    path = tmp_path_factory.mktemp("kit")
    (path / "target.txt").write_text(HP_TEXT)
    (path / "retain.txt").write_text(RETAIN_TEXT)
    (path / "anchors.yaml").write_text(yaml.safe_dump({
        "Harry Potter": ["Jon Smith"], "Harry": ["Jon", "Tom"], "Hogwarts": ["the Academy"], "Ron": ["Ben"],
        "Voldemort": ["the villain"]}))
    (path / "probe.jsonl").write_text(json.dumps({"prompt": "Harry Potter walked into", "references": ["Hogwarts"]})
                                      + "\n")
    (path / "fam.jsonl").write_text(json.dumps({"prompt": "The boy walked into", "references": ["Hogwarts"]}) + "\n")
    (path / "general.txt").write_text("The farmer walked to the market with his dog. " * 5)
    return path


def _eval_args(kit) -> list[str]:
    return ["--probe-prompts", str(kit / "probe.jsonl"), "--familiarity-prompts", str(kit / "fam.jsonl"),
            "--general-text", str(kit / "general.txt"), "--set", "eval.max_new_tokens=2"]


def _weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))


def assert_same_weights(a, b, atol=1e-5) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=atol, rtol=1e-4), \
            f"{name}: max difference {(wa[name] - wb[name]).abs().max():.2e}"


def training_records(out) -> list[dict]:
    from obliviate.runs import read_log

    return [r for r in read_log(out) if "event" not in r and "lr" in r]


def lr_curve(out, stage: str) -> list[tuple[int, float]]:
    return [(r["step"], r["lr"]) for r in training_records(out) if r["stage"] == stage]


def assert_one_writer(out, stages) -> None:
    """Every training record once, one start record per launch, every stage complete once."""
    from obliviate.runs import read_log

    records = read_log(out)
    keys = [(r["stage"], r["step"]) for r in training_records(out)]
    assert len(keys) == len(set(keys)), "a training record was written twice"
    done = [r["stage"] for r in records if r.get("event") == "stage_done"]
    assert sorted(done) == sorted(stages), done
    state = json.loads((Path(out) / "state.json").read_text())
    assert all(state["stages"][s]["complete"] for s in stages)
    assert not list(Path(out).glob(".*.tmp")) and not list(Path(out).glob(".*.ckpt"))


def _compare(one, two, stage: str) -> None:
    curve_one, curve_two = lr_curve(one, stage), lr_curve(two, stage)
    assert curve_two and [s for s, _ in curve_two] == [s for s, _ in curve_one]
    assert [lr for _, lr in curve_two] == pytest.approx([lr for _, lr in curve_one], rel=1e-9, abs=1e-12)
    loss_one = [r["loss"] for r in training_records(one) if r["stage"] == stage]
    loss_two = [r["loss"] for r in training_records(two) if r["stage"] == stage]
    assert loss_two == pytest.approx(loss_one, rel=1e-4)  # averaged over the processes as over micro-batches


def test_whp_two_processes_match_one(gloo, kit, tiny_model_dir, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")

    def args(out, batch, accum):
        return ["whp", "--model", str(tiny_model_dir), "--target", str(kit / "target.txt"),
                "--anchors", str(kit / "anchors.yaml"), "--out", str(out), "--context-length", "32",
                *_eval_args(kit), "--set", "labels.batch_size=2",
                *[x for stage in ("reinforce.train", "finetune") for x in (
                    "--set", f"{stage}.epochs=1", "--set", f"{stage}.learning_rate=1e-3",
                    "--set", f"{stage}.batch_size={batch}", "--set", f"{stage}.grad_accum={accum}",
                    "--set", f"{stage}.warmup_ratio=0.3")]]

    one, two = tmp_path / "one", tmp_path / "two"
    assert main(args(one, 1, 2)) == 0
    done = launch(["-m", "obliviate.cli", *args(two, 1, 1)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run folder:") == 1 and "error" not in done.stderr
    assert_one_writer(two, ["reinforce", "labels", "finetune", "eval"])
    for stage in ("reinforce", "finetune"):
        _compare(one, two, stage)
    # labels made in two shares and joined: the very file one process writes
    a, b = load_file(str(one / "labels" / "train.safetensors")), load_file(str(two / "labels" / "train.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((one / "labels" / "stats.json").read_text()) == json.loads(
        (two / "labels" / "stats.json").read_text())
    assert_same_weights(one / "reinforced", two / "reinforced")
    assert_same_weights(one / "model", two / "model")
    state_one, state_two = (json.loads((p / "state.json").read_text())["stages"] for p in (one, two))
    assert state_two["finetune"]["steps"] == state_one["finetune"]["steps"]
    assert state_two["finetune"]["tokens"] == state_one["finetune"]["tokens"]  # every process's tokens
    assert state_two["finetune"]["heldout_loss"] == pytest.approx(state_one["finetune"]["heldout_loss"], rel=1e-4)
    assert json.loads((two / "manifest.json").read_text())["complete"] is True


def _unlearn_args(method, tiny_model_dir, kit, out, batch, accum, *extra):
    return ["unlearn", "--method", method, "--model", str(tiny_model_dir), "--forget", str(kit / "target.txt"),
            "--retain", str(kit / "retain.txt"), "--out", str(out), "--context-length", "32", *_eval_args(kit),
            "--set", "train.max_steps=4", "--set", "train.learning_rate=1e-3", "--set", "train.warmup_ratio=0.25",
            "--set", f"train.batch_size={batch}", "--set", f"train.grad_accum={accum}", *extra]


def test_npo_two_processes_match_one_and_resume_after_a_kill(gloo, kit, tiny_model_dir, tmp_path, monkeypatch,
                                                             capsys):
    from obliviate.runs import read_log

    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    one, two = tmp_path / "one", tmp_path / "two"
    ckpt = ("--set", "train.checkpoint_every=2")
    assert main(_unlearn_args("npo", tiny_model_dir, kit, one, 1, 2, *ckpt)) == 0

    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    killed = launch([str(killer), *_unlearn_args("npo", tiny_model_dir, kit, two, 1, 1, *ckpt)])
    assert killed.returncode != 0
    assert (two / ".unlearn.ckpt" / "progress.json").is_file() and not (two / "model").exists()
    assert json.loads((two / ".unlearn.ckpt" / "progress.json").read_text())["step"] == 2
    # a checkpoint is resumed only by as many processes as wrote it (and is kept for them)
    capsys.readouterr()
    assert main(_unlearn_args("npo", tiny_model_dir, kit, two, 1, 1, *ckpt)) == 2
    assert "written by 2 process(es), this run has 1" in capsys.readouterr().err
    assert (two / ".unlearn.ckpt" / "progress.json").is_file()

    done = launch(["-m", "obliviate.cli", *_unlearn_args("npo", tiny_model_dir, kit, two, 1, 1, *ckpt)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["step"] for r in read_log(two) if r.get("event") == "resumed"] == [2]
    assert_one_writer(two, ["unlearn", "eval"])
    _compare(one, two, "unlearn")
    assert_same_weights(one / "model", two / "model")



def test_rmu_two_processes_match_one(gloo, kit, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    one, two = tmp_path / "one", tmp_path / "two"
    rmu = ("--set", "method.layer=2", "--set", "method.steering_coeff=5", "--set", "method.alpha=10")
    assert main(_unlearn_args("rmu", tiny_model_dir, kit, one, 1, 2, *rmu)) == 0
    # the folder holds another run: --overwrite clears it once (the main process), then the run writes it
    two.mkdir()
    (two / "config.yaml").write_text("model: another\n")
    (two / "stale.txt").write_text("from the other run")
    done = launch(["-m", "obliviate.cli", *_unlearn_args("rmu", tiny_model_dir, kit, two, 1, 1, *rmu), "--overwrite"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (two / "stale.txt").exists()
    assert_one_writer(two, ["unlearn", "eval"])
    _compare(one, two, "unlearn")
    assert_same_weights(one / "model", two / "model")


def test_a_second_launch_on_a_locked_folder_stops_every_process(gloo, kit, tiny_model_dir, tmp_path):
    """The lock is the main process's; when it is refused, no other process waits for it."""
    import fcntl

    out = tmp_path / "locked"
    out.mkdir()
    with open(out / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write("process 1 on elsewhere since now\n")
        fh.flush()
        done = launch(["-m", "obliviate.cli", *_unlearn_args("npo", tiny_model_dir, kit, out, 1, 1,
                                                              "--set", "train.max_steps=1")], timeout=120)
    assert done.returncode != 0
    assert done.stderr.count("error: ") == 1 and "is in use by process 1 on elsewhere" in done.stderr
