"""User-facing errors. The CLI prints their message on one line and exits non-zero.

Every message says what is wrong *and* what to do about it.
"""


class ObliviateError(Exception):
    """Base class of every error that is the user's to fix (bad input, missing files...)."""


class DataError(ObliviateError):
    """A data file is missing, empty, undecodable or malformed."""


class ConfigError(ObliviateError):
    """A config file or option is malformed, unknown or inconsistent."""


class ModelError(ObliviateError):
    """A model cannot be found or loaded, or two models do not fit together."""


class RunFolderError(ObliviateError):
    """A run folder holds a different run, or is missing a stage's outputs."""


class TrainingError(ObliviateError):
    """Training went wrong in a way the user must look at (e.g. a non-finite loss)."""


class ProvenanceError(ObliviateError):
    """C2PA signing or verifying cannot proceed: a missing extra, a refused certificate or key."""


class SkippedMetric(ObliviateError):
    """A metric could not be computed (e.g. an unreachable judge); the rest still runs."""


class ExportError(ObliviateError):
    """A model cannot be written in the asked format (unsupported architecture, tokenizer or setting)."""
