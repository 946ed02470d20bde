"""The typed run configuration and its strict YAML loader.

A recipe is a YAML file that only sets fields of `RunConfig`. Every field has a
docstring (the string below it); `neuralese config` prints them. Every numeric field declares
its range in its type (`PositiveFloat`, `Annotated[float, Range(0, 1)]`: neuralese.ranges), and a
new numeric field without one fails tests/test_ranges.py. Unknown keys, wrong types and
numbers out of range are errors that name the file, the key and what was expected. `--set a.b=v`
overrides use the same checks. The resolved config is written to the run folder, so a
run can be reproduced from its own `config.yaml`.

    sections.py   the dataclasses: `RunConfig` and one per recipe section
    load.py       YAML -> RunConfig (coercion, ranges, cross-field rules), overrides, saving, field docs
"""

from neuralese.config.load import (
    RUN_CONFIG,
    YAML_FALSE,
    YAML_TRUE,
    apply_override,
    describe_fields,
    flat_dict,
    from_dict,
    load_config,
    load_recipe_or_run,
    run_folder_of,
    save_config,
    to_dict,
    validate,
)
from neuralese.config.planner import PlannerConfig
from neuralese.config.sections import (
    CurriculumConfig,
    EnvConfig,
    EvalConfig,
    GearConfig,
    LogConfig,
    LoraSettings,
    ModelConfig,
    NeuraleseConfig,
    PretrainConfig,
    RewardConfig,
    RewardModelConfig,
    RLConfig,
    RunConfig,
    TinyModelConfig,
    TranslateConfig,
    VLLMConfig,
)
from neuralese.config.translate import CrossConfig
from neuralese.io import describe_yaml_error

__all__ = [
    "CrossConfig",
    "PlannerConfig",
    "CurriculumConfig",
    "EnvConfig",
    "EvalConfig",
    "GearConfig",
    "LogConfig",
    "LoraSettings",
    "ModelConfig",
    "NeuraleseConfig",
    "PretrainConfig",
    "RLConfig",
    "RewardConfig",
    "RewardModelConfig",
    "RunConfig",
    "TinyModelConfig",
    "TranslateConfig",
    "VLLMConfig",
    "RUN_CONFIG",
    "YAML_FALSE",
    "YAML_TRUE",
    "apply_override",
    "describe_fields",
    "describe_yaml_error",
    "flat_dict",
    "from_dict",
    "load_config",
    "load_recipe_or_run",
    "run_folder_of",
    "save_config",
    "to_dict",
    "validate",
]
