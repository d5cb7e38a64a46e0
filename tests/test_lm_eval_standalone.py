"""The shipped lm-eval task folder runs in the stock `lm_eval` CLI with obliviate not importable."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from obliviate.evaluation.general_ability import LM_EVAL_TASKS_DIR

DATA_DIR = Path(os.environ.get("OBLIVIATE_DATA_DIR") or Path(__file__).parents[1].parent / "shared" / "data")

# Run first in every child process: any import of obliviate fails loudly.
BLOCK_OBLIVIATE = """
import sys
class _NoObliviate:
    def find_spec(self, name, path=None, target=None):
        if name == "obliviate" or name.startswith("obliviate."):
            raise ImportError(f"the task folder imported {name}")
sys.meta_path.insert(0, _NoObliviate())
"""


def _environment() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OBLIVIATE_DATA_DIR")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    return env


@pytest.fixture
def task_folder(tmp_path) -> Path:
    """A copy of the shipped folder, away from the package."""
    folder = tmp_path / "tasks"
    shutil.copytree(LM_EVAL_TASKS_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _run_python(code: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_OBLIVIATE + code], cwd=cwd, env=_environment(),
                          capture_output=True, text=True, timeout=timeout)


def test_task_folder_imports_nothing_of_obliviate(task_folder):
    imports = re.compile(r"^\s*(from|import)\s+obliviate\b", re.MULTILINE)
    assert [p.name for p in task_folder.rglob("*.py") if imports.search(p.read_text())] == []


def test_missing_data_folder_names_lm_evals_options(task_folder):
    code = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("task_utils", {str(task_folder / "utils.py")!r})
utils = importlib.util.module_from_spec(spec)
spec.loader.exec_module(utils)
for data_dir in (None, {str(task_folder / "nowhere")!r}):
    try:
        utils.load_piqa(data_dir=data_dir, version=1.0)
    except utils.BenchmarkDataError as exc:
        assert isinstance(exc, ValueError)
        print(str(exc).splitlines()[0])
"""
    result = _run_python(code, task_folder)
    assert result.returncode == 0, result.stderr
    missing, nowhere = result.stdout.strip().splitlines()
    for line in (missing, nowhere):
        assert """lm_eval --metadata '{"data_dir": "/path/to/data"}'""" in line and "OBLIVIATE_DATA_DIR" in line
        assert "--data-dir" not in line
    assert missing.startswith("No benchmark data folder given") and "nowhere does not exist" in nowhere


@pytest.mark.skipif(not (DATA_DIR / "benchmarks").is_dir(), reason=f"benchmark data not found at {DATA_DIR}")
def test_stock_lm_eval_cli_runs_a_task(task_folder, tiny_model_dir, tmp_path):
    out = tmp_path / "results"
    argv = ["lm_eval", "--model", "hf", "--model_args", f"pretrained={tiny_model_dir},dtype=float32",
            "--tasks", "obliviate_piqa", "--include_path", str(task_folder), "--limit", "4", "--device", "cpu",
            "--batch_size", "4", "--metadata", json.dumps({"data_dir": str(DATA_DIR)}), "--output_path", str(out)]
    code = f"""
import runpy
sys.argv = {argv!r}
runpy.run_module("lm_eval", run_name="__main__", alter_sys=True)
"""
    result = _run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (results_file,) = out.rglob("results_*.json")
    results = json.loads(results_file.read_text())
    assert results["n-samples"]["obliviate_piqa"]["effective"] == 4
    assert 0.0 <= results["results"]["obliviate_piqa"]["acc,none"] <= 1.0
    assert "obliviate_piqa" in result.stdout  # lm-eval's own results table
