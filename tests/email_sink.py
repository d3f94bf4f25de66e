"""The SMTP sink for tests is the project's own (shared.integrations.smtp_sink); re-exported under its test name."""

from __future__ import annotations

from shared.integrations.smtp_sink import Sink, free_port, smtp_sink

__all__ = ["Sink", "free_port", "smtp_sink"]
