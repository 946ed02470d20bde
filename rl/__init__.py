"""neuralese: RL fine-tuning of language models that feed their hidden state back as a continuous thought."""
