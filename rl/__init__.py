"""neuralese: RL fine-tuning of language models that feed their hidden state back as a continuous thought.

    import neuralese
    result = neuralese.train("recipes/quickstart.yaml", ["rl.steps=20"], out="runs/nb")  # as `neuralese train`
    policy = neuralese.load_policy("runs/nb")                      # any folder: run, checkpoint, export
    policy.generate(["4321+8765="], max_new_tokens=8)              # answer texts
    policy.answers(["4321+8765="], max_new_tokens=8)               # with their thoughts and log-probs

The configs import in a moment; the policy, the loader and the trainer (which bring torch and
transformers) are imported on first use, with every feature that registers itself (neuralese.features),
so a recipe is checked before the heavy libraries load.
"""

from neuralese.config import NeuraleseConfig, RunConfig, load_config

__all__ = [
    "NeuraleseConfig",
    "NeuralesePolicy",
    "RunConfig",
    "Trainer",
    "load_config",
    "load_policy",
    "train",
]


def __getattr__(name: str):
    # The heavy names, on first use, with every feature a loaded folder or a run may need.
    if name == "NeuralesePolicy":
        from neuralese import features  # noqa: F401  (a dense-token folder's tokenizer, say)
        from neuralese.policy import NeuralesePolicy as value
    elif name == "load_policy":
        from neuralese.load import load_policy as value
    elif name == "Trainer":
        from neuralese.trainer import Trainer as value
    elif name == "train":
        from neuralese.launch import train as value
    else:
        raise AttributeError(f"module 'neuralese' has no attribute {name!r}")
    globals()[name] = value
    return value
