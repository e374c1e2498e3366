"""The exceptions minihash raises: each names the file and the reason."""


class MinihashError(Exception):
    """Base class of every error minihash raises on purpose."""


class AudioError(MinihashError):
    """An audio file that cannot be used: missing, unreadable, empty, silent, too short.

    Args:
        path: the file.
        reason: what is wrong with it, in words a user can act on.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class FormatError(MinihashError):
    """A model or index file that is truncated, tampered with, foreign or of another version."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class NothingToIndex(MinihashError, ValueError):
    """No track to index: none was given, or every one was skipped."""


class TrainingError(MinihashError):
    """Training cannot go on: the loss is no longer a number, or bfloat16 computes something else
    than float32. The last checkpoint is left as it was.

    Args:
        where: the checkpoint file of the run (or what is being trained).
        reason: what went wrong, and what to do.
    """

    def __init__(self, where, reason: str):
        self.path = str(where)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
