"""The project's exception types.

Every expected failure (bad input, missing file, unsupported model, ...) is
raised as an :class:`IOIError` whose message is one plain sentence naming the
problem, and whose ``hint`` says what to do. The CLI prints ``str(error)`` on
one line; the GUI shows ``message`` and ``hint``. Anything else reaching a user
is a bug.
"""

from __future__ import annotations


class IOIError(Exception):
    """Base class: an expected failure with a message for the user."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class ModelLoadError(IOIError):
    """The model could not be found, read, or handled by TransformerLens."""


class DeviceError(IOIError):
    """The requested device or dtype is not available, or it ran out of memory."""


class PromptError(IOIError):
    """A prompt, prompt pair or prompt set is not valid for the model."""


class FileFormatError(IOIError):
    """A file is missing, malformed, of the wrong format/version, or too large."""


class AnalysisError(IOIError):
    """An analysis cannot run with the given inputs or options."""


class Cancelled(IOIError):
    """The user cancelled a running job."""

    def __init__(self, message: str = "Cancelled by the user.", hint: str = "") -> None:
        super().__init__(message, hint)
