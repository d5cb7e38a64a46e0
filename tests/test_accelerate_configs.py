"""The accelerate config files in examples/ load with accelerate's own loader, and every setting
they give is one ``accelerate launch`` knows (a misspelt key would otherwise be ignored)."""

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "accelerate"
CONFIGS = {"ddp.yaml": "MULTI_GPU", "fsdp.yaml": "FSDP", "zero3.yaml": "DEEPSPEED"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_accelerate_config_loads_and_names_known_settings(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    config = load_config_from_file(str(EXAMPLES / name))
    assert config.distributed_type.value == CONFIGS[name]
    assert config.num_machines == 1 and config.num_processes >= 2 and not config.use_cpu
    known = {action.dest for action in launch_command_parser()._actions}
    for section in (config.fsdp_config, config.deepspeed_config):
        unknown = sorted(set(section) - known)
        assert not unknown, f"{name}: accelerate launch has no setting {unknown}"


def test_sharded_configs_save_full_weights():
    """Saving gathers full weights: FSDP2, and ZeRO-3 with its 16-bit gathering on."""
    from accelerate.commands.config.config_args import load_config_from_file

    fsdp = load_config_from_file(str(EXAMPLES / "fsdp.yaml")).fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_cpu_ram_efficient_loading"] is False
    zero3 = load_config_from_file(str(EXAMPLES / "zero3.yaml")).deepspeed_config
    assert zero3["zero_stage"] == 3 and zero3["zero3_save_16bit_model"] is True
