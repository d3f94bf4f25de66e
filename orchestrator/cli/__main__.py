"""`python -m orchestrator.cli`: the same app as the `outbound` console script."""

from orchestrator.cli import app

app(prog_name="outbound")
