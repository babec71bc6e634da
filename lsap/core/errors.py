"""Errors for bad files: each names the file and the problem in one line."""

from __future__ import annotations

from pathlib import Path


class LsapFileError(ValueError):
    """A file lsap was asked to read is missing, malformed or does not fit; ``str()`` is one line."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        # one line whatever the problem quotes (a library's message may span several)
        self.problem = " ".join(ln.strip() for ln in str(problem).splitlines() if ln.strip())
        super().__init__(f"{self.path}: {self.problem}")


class CheckpointError(LsapFileError):
    """A checkpoint is unreadable, unsafe, of an unknown layout, or does not match the config."""


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be downloaded (offline); ``str()`` is one line naming the
    setting that takes a local file instead.

    Args:
        what: the weights, e.g. "LPIPS(vgg)'s pretrained vgg backbone".
        reason: why the download failed (one line).
        setting: the setting relative to the network's config node (``lpips.backbone``); a builder
            that knows where that node sits calls :meth:`under` to name the full key.
        alternatives: text after the hint, e.g. " (or =random: a stand-in, not LPIPS)".
    """

    def __init__(self, what: str, reason: str, setting: str, alternatives: str = "") -> None:
        self.what, self.reason, self.setting, self.alternatives = (
            what,
            reason,
            setting,
            alternatives,
        )
        super().__init__(
            f"{what} could not be downloaded ({reason}); give a local file with "
            f"{setting}=/path/to/weights{alternatives}"
        )

    def under(self, prefix: str) -> WeightsUnavailableError:
        """The same error with the setting's key prefixed (``loss.options`` + ``lpips.backbone``)."""
        return WeightsUnavailableError(
            self.what, self.reason, f"{prefix}.{self.setting}", self.alternatives
        )


def one_line_reason(error: BaseException) -> str:
    """``Type: first line of the message`` (download errors can span many lines)."""
    text = next((ln.strip() for ln in str(error).splitlines() if ln.strip()), "")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def refusal_reason(error: BaseException) -> str:
    """One line saying why a weights-only load refused a file (torch's text spans many lines)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    for ln in lines:
        if "GLOBAL" in ln or "global" in ln.split(" ", 1)[0].lower() or "Unsupported" in ln:
            return ln.removeprefix("WeightsUnpickler error: ")
    return lines[0] if lines else type(error).__name__
