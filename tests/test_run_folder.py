"""The run folder tells the truth: hash-checked reuse, the lock, resume, inputs checked first.

Each test runs `obliviate unlearn` (GA, the cheapest method) or `obliviate whp` on the tiny model
through the real CLI entry point, in-process.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from conftest import TINY_TEXT
from obliviate.cli import main
from obliviate.runs import RunFolder, read_log

os.environ["OBLIVIATE_PROGRESS"] = "0"


@pytest.fixture
def texts(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    harry_potter, farmer = TINY_TEXT.split("\n")[:2]
    (folder / "forget.txt").write_text((harry_potter + "\n") * 6)
    (folder / "retain.txt").write_text((farmer + "\n") * 3)
    (folder / "probe.jsonl").write_text(json.dumps({"prompt": "Harry Potter went to", "references": ["Hogwarts"]})
                                        + "\n")
    return folder


def _unlearn(model, texts, out, *extra) -> list[str]:
    return ["unlearn", "--model", str(model), "--method", "gradient_ascent", "--forget", str(texts / "forget.txt"),
            "--out", str(out), "--context-length", "16", "--set", "train.max_steps=4", "--set", "train.batch_size=2",
            "--set", "train.learning_rate=1e-3", "--probe-prompts", str(texts / "probe.jsonl"), *extra]


def _stderr_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_state_records_kind_and_hashes(tiny_model_dir, texts, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_unlearn(tiny_model_dir, texts, out)) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["kind"] == "unlearn"
    unlearn = state["stages"]["unlearn"]
    assert len(unlearn["inputs"]["forget_sha256"]) == 64
    assert "model.safetensors" in unlearn["outputs"] and len(unlearn["outputs"]["model.safetensors"]) == 64
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["inputs"]["forget_sha256"] == unlearn["inputs"]["forget_sha256"]
    # files keep ordinary permissions (not mkstemp's 0600)
    mode = stat.S_IMODE((out / "state.json").stat().st_mode)
    assert mode == 0o666 & ~_umask()
    assert stat.S_IMODE((out / "config.yaml").stat().st_mode) == mode


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_truncated_weights_are_redone_not_reused(tiny_model_dir, texts, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_unlearn(tiny_model_dir, texts, out)) == 0
    weights = out / "model" / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    capsys.readouterr()
    assert main(_unlearn(tiny_model_dir, texts, out)) == 0
    err = capsys.readouterr().err
    assert "[unlearn] its output 'model/model.safetensors' changed since it was written: running it again" in err
    assert weights.read_bytes() == good  # deterministic training: the same weights again


def test_changed_corpus_at_the_same_path_redoes_every_stage(tiny_model_dir, texts, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_unlearn(tiny_model_dir, texts, out)) == 0
    before = json.loads((out / "state.json").read_text())["stages"]["unlearn"]["inputs"]["forget_sha256"]
    (texts / "forget.txt").write_text(TINY_TEXT.split("\n")[0] * 5 + " Hedwig.\n")
    capsys.readouterr()
    assert main(_unlearn(tiny_model_dir, texts, out)) == 0
    err = capsys.readouterr().err
    assert "[unlearn] its input 'forget_sha256' changed since it ran: running it again" in err
    assert "[eval] its input 'upstream' changed since it ran: running it again" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"]["forget_sha256"] != before
    assert manifest["complete"]


def test_changed_prompts_redo_only_the_evaluation(tiny_model_dir, texts, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_unlearn(tiny_model_dir, texts, out)) == 0
    (texts / "probe.jsonl").write_text(json.dumps({"prompt": "Ron Weasley laughed at", "references": ["Harry"]})
                                       + "\n")
    capsys.readouterr()
    assert main(_unlearn(tiny_model_dir, texts, out)) == 0
    err = capsys.readouterr().err
    assert "[unlearn] already complete" in err
    assert "[eval] its input 'eval_files_sha256' changed since it ran: running it again" in err
    metrics = json.loads((out / "metrics.json").read_text())
    items = metrics["evaluations"]["unlearned"]["metrics"]["reference_probability"]
    assert items["n"] == 1


def test_deleted_labels_file_is_regenerated(tiny_model_dir, tmp_path, capsys):
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "target.txt").write_text(TINY_TEXT.split("\n")[0] * 4)
    (kit / "anchors.yaml").write_text("Harry: Jon\nHogwarts: the academy\nHermione: Sarah\n")
    out = tmp_path / "run"
    argv = ["whp", "--model", str(tiny_model_dir), "--target", str(kit / "target.txt"), "--anchors",
            str(kit / "anchors.yaml"), "--out", str(out), "--context-length", "32",
            "--set", "reinforce.train.max_steps=2", "--set", "finetune.max_steps=2"]
    assert main(argv) == 0
    (out / "labels" / "train.safetensors").unlink()
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[reinforce] already complete" in err
    assert "[labels] its output 'labels/train.safetensors' is missing: running it again" in err
    assert (out / "labels" / "train.safetensors").exists()
    # a single stage whose earlier stage is out of date is refused, naming it
    (kit / "anchors.yaml").write_text("Harry: Jon\nHogwarts: the school\n")
    capsys.readouterr()
    assert main(["finetune", "--out", str(out)]) == 2
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and "stage 'labels' is not done" in lines[0] and "'anchors_sha256' changed" in lines[0]


def test_stage_commands_need_only_the_run_folder(tiny_model_dir, texts, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_unlearn(tiny_model_dir, texts, out)) == 0
    capsys.readouterr()
    assert main(["unlearn", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "[unlearn] already complete" in err and "[eval] already complete" in err
    assert main(["whp", "--out", str(out)]) == 2
    assert "holds a 'unlearn' run, not a 'whp' run" in _stderr_lines(capsys)[-1]


def test_bad_input_leaves_no_folder_and_no_overwrite_needed(tiny_model_dir, texts, tmp_path, capsys):
    out = tmp_path / "run"
    argv = _unlearn(tiny_model_dir, texts, out)
    typo = [a.replace("forget.txt", "forgot.txt") for a in argv]
    assert main(typo) == 2
    assert "forgot.txt" in _stderr_lines(capsys)[-1]
    assert not out.exists()
    assert main(argv) == 0  # the corrected command needs no --overwrite


def test_relative_and_absolute_paths_are_the_same_run(tiny_model_dir, texts, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(_unlearn(tiny_model_dir, texts, out)) == 0
    monkeypatch.chdir(texts)
    relative = [a if a != str(texts / "forget.txt") else "forget.txt" for a in _unlearn(tiny_model_dir, texts, out)]
    capsys.readouterr()
    assert main(relative) == 0
    assert "[unlearn] already complete" in capsys.readouterr().err


def test_out_that_is_a_file_or_read_only(tiny_model_dir, texts, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, message in ((afile, "is a file, not a folder"), (afile / "run", "is a file, not a folder")):
        assert main(_unlearn(tiny_model_dir, texts, out)) == 2
        lines = _stderr_lines(capsys)
        assert message in lines[-1] and not any("Traceback" in line for line in lines)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        assert main(_unlearn(tiny_model_dir, texts, locked / "run")) == 2
        assert "cannot write to" in _stderr_lines(capsys)[-1]


def test_disk_full_is_one_line(tiny_model_dir, texts, tmp_path, capsys, monkeypatch):
    import errno

    import obliviate.runs

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "state.json"))

    monkeypatch.setattr(obliviate.runs, "atomic_write_json", full)
    assert main(_unlearn(tiny_model_dir, texts, tmp_path / "run")) == 2
    lines = _stderr_lines(capsys)
    assert lines[-1].startswith("error: No space left on device") and "free some disk space" in lines[-1]


def test_second_process_on_the_same_folder_is_refused(tiny_model_dir, texts, tmp_path):
    out = tmp_path / "run"
    folder = RunFolder(out)
    with folder.lock():
        code = textwrap.dedent(f"""
            import sys
            from obliviate.cli import main
            sys.exit(main({_unlearn(tiny_model_dir, texts, out)!r}))
        """)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"is in use by process {os.getpid()}" in lines[0]
    assert not (out / "model").exists() and not (out / "config.yaml").exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tiny_model_dir, texts, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / ".lock").write_text(f"process {dead.stdout.strip()} on somewhere since 2026-01-01 00:00:00\n")
    assert main(_unlearn(tiny_model_dir, texts, out)) == 0
    assert "took over the stale lock" in capsys.readouterr().out


def test_resume_keeps_one_log_record_per_step_and_counts_the_whole_stage(tiny_model_dir, texts, tmp_path, capsys,
                                                                          monkeypatch):
    out = tmp_path / "run"
    argv = _unlearn(tiny_model_dir, texts, out, "--set", "train.max_steps=6", "--set", "train.checkpoint_every=2")
    assert main(argv) == 0
    full_state = json.loads((out / "state.json").read_text())["stages"]["unlearn"]

    interrupted = tmp_path / "interrupted"

    def stop_at_six(self, step):  # a kill at step 6: step 5 was logged after the checkpoint at step 4
        if step == 6:
            raise KeyboardInterrupt

    from obliviate.methods.gradient_ascent import GradientAscent

    monkeypatch.setattr(GradientAscent, "on_step", stop_at_six, raising=False)
    assert main(_unlearn(tiny_model_dir, texts, interrupted, "--set", "train.max_steps=6",
                         "--set", "train.checkpoint_every=2")) == 130
    steps = [r["step"] for r in read_log(interrupted) if r.get("stage") == "unlearn" and "loss" in r]
    assert steps == [1, 2, 3, 4, 5]
    monkeypatch.undo()
    assert main(_unlearn(tiny_model_dir, texts, interrupted, "--set", "train.max_steps=6",
                         "--set", "train.checkpoint_every=2")) == 0
    records = read_log(interrupted)
    steps = [r["step"] for r in records if r.get("stage") == "unlearn" and "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert any(r.get("event") == "resumed" and r["step"] == 4 for r in records)
    resumed_state = json.loads((interrupted / "state.json").read_text())["stages"]["unlearn"]
    assert resumed_state["tokens"] == full_state["tokens"]
    assert resumed_state["steps"] == 6
    assert resumed_state["outputs"]["model.safetensors"] == full_state["outputs"]["model.safetensors"]


def test_run_and_unlearn_config_accept_the_same_keys(tiny_model_dir, texts, tmp_path, capsys):
    config = tmp_path / "npo.yaml"
    config.write_text(f"method: npo\nmodel: {tiny_model_dir}\nforget: {{sources: [{texts / 'forget.txt'}], "
                      f"context_length: 16}}\nretain: {{sources: [{texts / 'retain.txt'}], context_length: 16}}\n"
                      "train: {max_steps: 2, batch_size: 2}\n")
    assert main(["run", str(config), "--out", str(tmp_path / "a"), "--set", "method.beta=0.3"]) == 0
    assert main(["unlearn", "--config", str(config), "--out", str(tmp_path / "b"), "--set", "method.beta=0.3"]) == 0
    a = (tmp_path / "a" / "config.yaml").read_text()
    assert a == (tmp_path / "b" / "config.yaml").read_text() and "beta: 0.3" in a


def test_trust_remote_code_only_from_the_command_line(tiny_model_dir, texts, tmp_path, capsys):
    import yaml

    config = tmp_path / "shared.yaml"
    config.write_text(f"method: gradient_ascent\nmodel: {tiny_model_dir}\nforget: {texts / 'forget.txt'}\n"
                      "trust_remote_code: true\n")
    assert main(["run", str(config), "--out", str(tmp_path / "a")]) == 2
    line = _stderr_lines(capsys)[-1]
    assert "sets trust_remote_code" in line and "--trust-remote-code" in line
    assert not (tmp_path / "a").exists()
    # a folder whose config.yaml says true (written by someone else) does not turn it on
    out = tmp_path / "run"
    assert main(_unlearn(tiny_model_dir, texts, out)) == 0
    data = yaml.safe_load((out / "config.yaml").read_text())
    data["trust_remote_code"] = True
    (out / "config.yaml").write_text(yaml.safe_dump(data))
    from obliviate.settings import resolve

    assert resolve("unlearn", out=out).trust_remote_code is False
    assert resolve("unlearn", out=out, trust_remote_code=True).trust_remote_code is True


def test_stale_later_stage_is_removed_not_left_claiming(tiny_model_dir, texts, tmp_path, capsys):
    from obliviate.settings import resolve
    from obliviate.unlearn import UnlearnRun

    out = tmp_path / "run"
    assert main(_unlearn(tiny_model_dir, texts, out)) == 0
    assert (out / "metrics.json").exists()
    (texts / "forget.txt").write_text(TINY_TEXT.split("\n")[0] * 5 + " Hedwig.\n")
    UnlearnRun(resolve("unlearn", out=out), out).run(("unlearn",))  # the training stage only
    assert "[eval] out of date: its output was removed" in capsys.readouterr().err
    assert not (out / "metrics.json").exists()
    state = json.loads((out / "state.json").read_text())
    assert state["stages"]["unlearn"]["complete"] and not state["stages"]["eval"]["complete"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and manifest["metrics"] is None
