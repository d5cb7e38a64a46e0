"""benchmarks/settings_audit.py: the merge before the override fix (53e2723) against the current one."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def audit_module():
    try:
        subprocess.run(["git", "cat-file", "-e", "53e2723:src/obliviate/config.py"], cwd=REPO, check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("the git history (commit 53e2723) is not available")
    spec = importlib.util.spec_from_file_location("settings_audit", REPO / "benchmarks" / "settings_audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_config_is_the_same_under_both_merges(audit_module):
    rows = audit_module.audit(audit_module.demo_cases())
    assert rows == [("demo_timing", "obliviate demo --out runs/bench_demo", [])]


def test_readme_examples_keep_their_section_defaults_now(audit_module, tmp_path):
    from obliviate.config import from_dict

    found = {label: resolve for _, label, resolve in audit_module.readme_cases(tmp_path)}
    diffs = dict((label, d) for _, label, d in audit_module.audit(
        [("README", label, resolve) for label, resolve in found.items()]))

    whp = found[audit_module.README_WHP](from_dict)
    assert whp["finetune.learning_rate"] == 2e-5
    assert whp["finetune.epochs"] == 2  # WHPConfig's fine-tune default, not TrainConfig's 1
    assert diffs[audit_module.README_WHP] == ["finetune.epochs: 1.0 -> 2"]  # the bug, and nothing else

    unlearn = found[audit_module.README_UNLEARN](from_dict)
    assert unlearn["forget.context_length"] == unlearn["retain.context_length"] == 256
    assert diffs[audit_module.README_UNLEARN] == ["forget.context_length: 512 -> 256",
                                                  "retain.context_length: 512 -> 256"]
    assert diffs["obliviate run examples/whp_harry_potter.yaml"] == []
