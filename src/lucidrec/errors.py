"""One exception family: every error a user can cause names the field and the fix."""

from __future__ import annotations


class LucidrecError(Exception):
    """Base class of every error lucidrec raises on purpose."""


class DataError(LucidrecError):
    """Input data is missing, malformed or inconsistent."""


class ConfigError(LucidrecError):
    """An option or argument has a value lucidrec cannot use."""


class ModelError(LucidrecError):
    """A model folder is missing, incomplete or incompatible, or a model is used before fitting."""


class UnknownIdError(LucidrecError):
    """A user or item id is not known to the dataset or model."""


class DependencyError(LucidrecError):
    """An optional dependency needed for this feature is not installed."""
