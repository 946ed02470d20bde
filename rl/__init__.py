"""neuralese: RL fine-tuning of language models that feed their hidden state back as a continuous thought.

    from neuralese import NeuraleseConfig, NeuralesePolicy, load_policy
    policy = NeuralesePolicy.from_pretrained("runs/demo/export")   # an exported folder
    policy.generate(["4321+8765="], max_new_tokens=8)
    policy = load_policy("runs/demo")                               # any folder: run, checkpoint, export

The configs import in a moment; the policy, the loader and the trainer (which bring torch and
transformers) are imported on first use, with every feature that registers itself (neuralese.features),
so a recipe is checked before the heavy libraries load.
"""

from neuralese.config import NeuraleseConfig, RunConfig, load_config

__all__ = ["NeuraleseConfig", "NeuralesePolicy", "RunConfig", "Trainer", "load_config", "load_policy"]


def __getattr__(name: str):
    # The heavy names, on first use, with every feature a loaded folder or a run may need.
    if name == "NeuralesePolicy":
        from neuralese import features  # noqa: F401  (a dense-token folder's tokenizer, say)
        from neuralese.policy import NeuralesePolicy as value
    elif name == "load_policy":
        from neuralese.load import load_policy as value
    elif name == "Trainer":
        from neuralese.trainer import Trainer as value
    else:
        raise AttributeError(f"module 'neuralese' has no attribute {name!r}")
    globals()[name] = value
    return value
