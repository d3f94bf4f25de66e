"""Prefect flows. Importing any of them makes Prefect's temporary API server die with its parent."""

from orchestrator.ephemeral import install as _install_ephemeral_watchdog

_install_ephemeral_watchdog()
