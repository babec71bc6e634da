"""Errors for bad files: each names the file and the problem in one line."""

from __future__ import annotations

from pathlib import Path


class LsapFileError(ValueError):
    """A file lsap was asked to read is missing, malformed or does not fit; ``str()`` is one line."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CheckpointError(LsapFileError):
    """A checkpoint is unreadable, unsafe, of an unknown layout, or does not match the config."""


def refusal_reason(error: BaseException) -> str:
    """One line saying why a weights-only load refused a file (torch's text spans many lines)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    for ln in lines:
        if "GLOBAL" in ln or "global" in ln.split(" ", 1)[0].lower() or "Unsupported" in ln:
            return ln.removeprefix("WeightsUnpickler error: ")
    return lines[0] if lines else type(error).__name__
