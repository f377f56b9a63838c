"""Logging, set up once at a command's entry point: structlog, one JSON object per line,
or readable lines on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}  # fmt: skip


LOG_FORMATS = ("auto", "json", "console")


def configure_logging(
    level: str = "info", stream: TextIO | None = None, log_format: str = "json"
) -> None:
    """Log lines on ``stream`` (stderr: what a command prints on stdout stays clean),
    with level and UTC timestamp; events below ``level`` cost one comparison.
    ``log_format``: ``json`` (one object per line), ``console`` (structlog's readable
    renderer), or ``auto`` (console when the stream is a terminal, else JSON)."""
    out = stream or sys.stderr
    console = log_format == "console" or (log_format == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *([] if console else [structlog.processors.format_exc_info]),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
