"""`docs/walkthrough.sh`'s `wait_for` waits on its `api` calls: `api` fails when curl
does (an HTTP 4xx/5xx), so a step the stack has not reached yet is tried again instead
of being taken as done. (The whole script runs in tests/e2e/test_walkthrough.py.)"""

import os
import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "docs" / "walkthrough.sh"


def functions() -> str:
    text = SCRIPT.read_text()
    return "\n".join(re.findall(r"^(?:api|wait_for)\(\) \{.*?^\}$", text, re.S | re.M))


def run(tmp_path: Path, curl: str, steps: str) -> subprocess.CompletedProcess[str]:
    """`steps` after the script's `api` and `wait_for`, with `curl` as the curl on PATH."""
    fake = tmp_path / "curl"
    fake.write_text(f"#!/usr/bin/env bash\n{curl}")
    fake.chmod(0o755)
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail\nTOKEN=t\n{functions()}\n{steps}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
    )


def test_wait_for_retries_an_api_call_until_curl_succeeds(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    # 404 twice (curl --fail-with-body exits 22), then 200
    curl = (
        f'echo x >> "{calls}"\n'
        f'if [ "$(wc -l < "{calls}")" -le 2 ]; then echo \'{{"status":404}}\'; exit 22; fi\n'
        'echo \'{"id":"so-1"}\'\n'
    )
    steps = (
        'wait_for "the sales order" api GET 8101 /sales-orders/so-1\n'
        "api GET 8101 /sales-orders/so-1\n"
    )
    done = run(tmp_path, curl, steps)
    assert done.returncode == 0, done.stderr
    assert calls.read_text().count("x") == 4  # three tries, then the step's own call
    assert done.stdout.strip() == '{"id":"so-1"}'


def test_api_fails_when_curl_fails(tmp_path: Path) -> None:
    done = run(tmp_path, "echo '{\"status\":422}'\nexit 22\n", "api GET 8101 /x\necho after\n")
    assert done.returncode == 22 and "after" not in done.stdout
