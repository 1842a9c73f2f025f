"""How the widgets report: napari notifications (and a status line), never an exception in the viewer."""

from __future__ import annotations

from napari.utils.notifications import show_error, show_info

__all__ = ["error_message", "report_error", "report_info"]


def error_message(what: str, exc: BaseException | str) -> str:
    """``"<what>: <message>"`` for an exception or a text (the exception's class when it has no text)."""
    text = str(exc) or type(exc).__name__
    return f"{what}: {text}"


def report_error(what: str, exc: BaseException | str) -> str:
    """Show an error notification naming ``what`` failed and why; returns its text."""
    message = error_message(what, exc)
    show_error(message)
    return message


def report_info(message: str) -> str:
    """Show an information notification; returns its text."""
    show_info(message)
    return message
