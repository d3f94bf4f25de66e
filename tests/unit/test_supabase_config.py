"""supabase/config.toml: a plain `supabase functions deploy launch-batch` keeps JWT verification off."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUPABASE = REPO / "supabase"


def test_launch_batch_is_deployed_without_jwt_verification():
    config = tomllib.loads((SUPABASE / "config.toml").read_text())
    assert config["project_id"]
    function = config["functions"]["launch-batch"]
    # The database calls it with LAUNCH_SHARED_SECRET, not a user JWT: with verification on,
    # Supabase's gateway would answer pg_net's calls with 401 before the function runs.
    assert function["verify_jwt"] is False
    assert function.get("enabled", True) is True
    assert (SUPABASE / function["entrypoint"]).resolve() == SUPABASE / "functions" / "launch-batch" / "index.ts"
    # Every function directory has its entry, so none silently gets the CLI's default (verify_jwt = true).
    assert {p.name for p in (SUPABASE / "functions").iterdir() if p.is_dir()} == set(config["functions"])


def test_docs_deploy_the_function_with_the_plain_command():
    for doc in (REPO / "README.md", REPO / "docs" / "deploy.md"):
        text = doc.read_text()
        assert "supabase functions deploy launch-batch" in text
        assert "--no-verify-jwt" not in text, f"{doc.name}: the flag is in supabase/config.toml now"
        assert not re.search(r"@db\.<[^>]+>\.supabase\.co", text), (
            f"{doc.name}: hand Modal and Prefect the pooler URL (port 6543), not the IPv6-only direct host")
