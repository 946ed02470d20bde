"""User-facing errors.

Everything a user can cause (a bad recipe, a missing folder, a broken plug-in) raises a
subclass of `NeuraleseError`. The CLI prints its message as one paragraph and exits with
status 2, with no traceback: the message itself must name the file, key, function or row
and say what was expected.
"""


class NeuraleseError(Exception):
    """Base class: an error caused by the user's input, reported without a traceback."""


class UsageError(NeuraleseError):
    """A command line argparse refuses: a missing argument, an unknown flag, a value out of range."""

    def __init__(self, message: str, prog: str = "neuralese"):
        super().__init__(message)
        self.prog = prog


class ConfigError(NeuraleseError):
    """A recipe or `--set` override is malformed, has an unknown key or a wrong type."""


class EnvError(NeuraleseError):
    """An environment factory, its dataset or its columns are not what the contract asks."""


class RewardError(NeuraleseError):
    """A reward function raised, hung, or returned something other than floats or None."""


class CheckpointError(NeuraleseError):
    """A model, run or checkpoint folder is missing, incomplete or corrupted."""


class TrainingError(NeuraleseError):
    """Training cannot go on (for example, too many non-finite steps in a row)."""


class CodecError(NeuraleseError):
    """Text or codes a codec cannot take: a length that does not divide into its chunks, a piece outside
    its vocabulary, a code outside its range."""


class AlignmentError(NeuraleseError):
    """Two models' states cannot be paired (no shared token boundaries), or a translator does not
    fit the states it is given (another width)."""


class PeerLost(TrainingError):
    """A collective failed: another process of a multi-process run stopped or cannot be reached."""
