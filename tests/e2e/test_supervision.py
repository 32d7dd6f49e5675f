"""scripts/lib/services.sh's supervisor with stand-in services that fail at once: backoff and give-up.

The real bash functions run; only the commands of the services are replaced, so a
service that cannot start is seen to be restarted with growing delays, at most
RESTART_LIMIT times a minute, in seconds rather than minutes. Restarts of the real
services are in test_faults.py and test_conversations.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from scripts.stack import REPO_ROOT, stack_environment

RUN_TIMEOUT_S = 120
# Sources the library as serve.sh does, then runs stand-ins (bash code from the environment)
# instead of the services.
DRIVER = """
set -euo pipefail
source scripts/lib/services.sh
ACTIONS_CMD=(bash -c "$ACTIONS_STAND_IN")
QA_CMD=(bash -c "$QA_STAND_IN")
RASA_CMD=(bash -c "$RASA_STAND_IN")
start_service rasa
start_service qa
start_service actions
supervise
fail_stopped
"""
FAILING_ACTIONS = 'echo "action server up"; exit 3'
FAILING_QA = "exit 4"
RUNNING = "sleep 600"


def run_driver(
    tmp_path: Path, actions: str, qa: str, rasa: str = RUNNING, **settings: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Runs DRIVER with these stand-ins; its result and the supervisor's log."""
    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"")  # services.sh only checks that the model file is there
    stand_ins = {"ACTIONS_STAND_IN": actions, "QA_STAND_IN": qa, "RASA_STAND_IN": rasa}
    env, _ = stack_environment(tmp_path, {"RASA_MODEL": str(model), **stand_ins, **settings})
    result = subprocess.run(
        ["bash", "-c", DRIVER], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    return result, (Path(env["LOG_DIR"]) / "supervisor.log").read_text(encoding="utf-8")


def test_a_service_that_cannot_start_is_restarted_with_backoff_then_given_up(tmp_path: Path) -> None:
    result, log = run_driver(tmp_path, FAILING_ACTIONS, RUNNING, RESTART_LIMIT="3", RESTART_BACKOFF_MAX="2")

    restarts = re.findall(r"the action server stopped \(exit status 3\); restarting it in (\d+)s", log)
    assert restarts == ["1", "2", "2"], log  # doubling, capped by RESTART_BACKOFF_MAX
    assert "the action server stopped (exit status 3) after 3 restarts within a minute" in log
    # Each restart ran the service again and appended to its log.
    actions_log = (tmp_path / "log" / "actions.log").read_text(encoding="utf-8")
    assert actions_log.count("action server up") == 4
    # Without the action server there is no assistant: the script says so and stops the rest.
    assert result.returncode == 1
    assert "error: the action server stopped (exit status 3)" in result.stderr
    assert not (tmp_path / "log" / "rasa.pid").exists()


def test_the_qa_service_is_given_up_on_and_the_chat_goes_on(tmp_path: Path) -> None:
    # Rasa ends the run a while after the QA service is given up on.
    result, log = run_driver(tmp_path, RUNNING, FAILING_QA, rasa="sleep 6", RESTART_LIMIT="1")

    assert "warning: the QA service stopped (exit status 4); restarting it in 1s" in log
    assert "error: the QA service stopped (exit status 4) after 1 restarts within a minute" in log
    assert "warning: the chat goes on without the QA service" in log
    # The script went on until Rasa stopped, not any longer.
    assert result.returncode == 1
    assert "error: the Rasa server stopped (exit status 0)" in result.stderr


def test_no_restarts_at_all_with_a_limit_of_zero(tmp_path: Path) -> None:
    result, log = run_driver(tmp_path, FAILING_ACTIONS, RUNNING, RESTART_LIMIT="0")

    assert "restarting" not in log
    assert result.returncode == 1
    assert "error: the action server stopped (exit status 3)" in result.stderr
