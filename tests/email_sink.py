"""The SMTP sink for tests is the project's own (devkit.smtp_sink); re-exported under its test name."""

from __future__ import annotations

from devkit.smtp_sink import Sink, smtp_sink

__all__ = ["Sink", "smtp_sink"]
