"""The Edge Function's own Deno tests (validation, auth, error passing against a fake Prefect peer), run by pytest."""

from __future__ import annotations

import subprocess

from tests.e2e.conftest import REPO_ROOT, deno_path

FUNCTION_DIR = REPO_ROOT / "supabase" / "functions" / "launch-batch"


def test_deno_tests_pass(tmp_path):
    deno = deno_path()
    result = subprocess.run(
        [str(deno), "test", "--allow-net", "--allow-env", str(FUNCTION_DIR / "index_test.ts")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DENO_DIR": str(tmp_path / "deno-cache"),
             "DENO_NO_UPDATE_CHECK": "1", "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert " 0 failed" in result.stdout


def test_edge_function_has_no_remote_imports():
    """Only web APIs and Deno built-ins: it must type-check and run with no network."""
    for path in FUNCTION_DIR.glob("*.ts"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("import ") or stripped.startswith("export ") and " from " in stripped:
                assert "http://" not in stripped and "https://" not in stripped, f"{path.name}: {stripped}"
                assert "npm:" not in stripped and "jsr:" not in stripped, f"{path.name}: {stripped}"


def test_deno_lint_and_check(tmp_path):
    deno = deno_path()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DENO_DIR": str(tmp_path / "deno-cache"),
           "DENO_NO_UPDATE_CHECK": "1", "NO_COLOR": "1"}
    for argv in (["lint", str(FUNCTION_DIR)], ["check", str(FUNCTION_DIR / "index.ts")]):
        result = subprocess.run([str(deno), *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                                env=env)
        assert result.returncode == 0, f"deno {argv[0]}:\n{result.stdout}\n{result.stderr}"
