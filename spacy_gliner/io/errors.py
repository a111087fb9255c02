"""Errors of the checkpoint layer."""


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete, corrupt or does not match its configuration."""
