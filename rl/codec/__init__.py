"""Text codecs: n text tokens to one dense token and back, continuous or discrete (FSQ), in stacked levels.

    config.py   `CodecConfig`, the recipe's `codec:` section
    fsq.py      finite scalar quantisation (Mentzer et al. 2023): bounded tanh, round with straight-through
    model.py    `Codec`: the encoder and decoder, stacked levels, the codec folder (save / load by path)
    data.py     the text a codec trains on (GSM8K's files, an environment's splits, a text file) as chunks
    train.py    `neuralese codec train`: the training loop and the reconstruction report
    dense.py    `DenseTokenizer`: a tokenizer whose tokens are a codec's codes, so a causal LM reads and
                writes dense tokens while every environment and reward still sees text
    lens.py     a map from a policy's thoughts to a codec's codes, fitted on paired states: what a
                thought says as text (`neuralese inspect --codec-map`)
    commands.py the `neuralese codec ...` subcommands

Nothing here is imported by `rl` itself: only the CLI, stage 0 and the model loader reach in, and
only when a codec is named.
"""
