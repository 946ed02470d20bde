"""neuralese: RL fine-tuning of language models that feed their hidden state back as a continuous thought.

from neuralese import NeuraleseConfig, NeuralesePolicy
policy = NeuralesePolicy.from_pretrained("runs/demo/export")
policy.generate(["4321+8765="], max_new_tokens=8)
"""

from neuralese.config import NeuraleseConfig, RunConfig, load_config

__all__ = ["NeuraleseConfig", "NeuralesePolicy", "RunConfig", "load_config"]


def __getattr__(name: str):
    # Imported on first use: `neuralese.cli` checks a recipe before torch and transformers load.
    if name == "NeuralesePolicy":
        from neuralese.policy import NeuralesePolicy

        return NeuralesePolicy
    raise AttributeError(f"module 'neuralese' has no attribute {name!r}")
