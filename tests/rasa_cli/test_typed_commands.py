"""The rasa commands as people type them in the project root, with nothing from make's environment.

`make install` gives the Rasa venv the project's defaults (requirements/rasa-defaults.pth). These
tests run the venv's own `rasa` as a shell does, without any RASA_* variable, so they see exactly
those defaults: telemetry off, and a plain `rasa test` that reads the project root (Rasa's default
for conversation tests is ".", venvs and run-time files included) and tests this bot's stories only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader
from rasa.shared.data import get_data_files, is_nlu_file

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = REPO_ROOT / "models" / "horoscope.tar.gz"
TEST_STORIES = REPO_ROOT / "tests" / "test_stories.yml"
VENVS = (".venv-rasa", ".venv")


def shell_env(**settings: str) -> dict[str, str]:
    """This process's environment without RASA_* variables (make may set some), plus `settings`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("RASA_")}, **settings}


def rasa(*args: str, cwd: Path = REPO_ROOT, timeout_s: float = 120, **settings: str) -> str:
    """Runs `.venv-rasa/bin/rasa ARGS` in `cwd`; its output (stdout and stderr), checked for success."""
    result = subprocess.run(
        [str(cwd / ".venv-rasa" / "bin" / "rasa"), *args],
        cwd=cwd,
        env=shell_env(**settings),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


@pytest.fixture
def home_with_telemetry_on(tmp_path: Path) -> Path:
    """A home whose Rasa config enables telemetry, as Rasa's first run writes it."""
    config = tmp_path / ".config" / "rasa" / "global.yml"
    config.parent.mkdir(parents=True)
    config.write_text("metrics:\n  enabled: true\n  rasa_user_id: test\n  date: 2026-11-21 00:00:00\n")
    return tmp_path


def test_telemetry_is_off_by_default(home_with_telemetry_on: Path) -> None:
    output = rasa("telemetry", HOME=str(home_with_telemetry_on))
    assert "Telemetry reporting is currently disabled" in output


def test_telemetry_can_be_turned_on(home_with_telemetry_on: Path) -> None:
    output = rasa("telemetry", HOME=str(home_with_telemetry_on), RASA_TELEMETRY_ENABLED="true")
    assert "Telemetry reporting is currently enabled" in output


def test_the_training_cache_is_outside_the_project() -> None:
    python = REPO_ROOT / ".venv-rasa" / "bin" / "python"
    probe = "import os; print(os.environ['RASA_CACHE_DIRECTORY'])"
    cache = subprocess.run([python, "-c", probe], env=shell_env(), capture_output=True, text=True, check=True)
    assert not Path(cache.stdout.strip()).resolve().is_relative_to(REPO_ROOT)


def test_the_project_root_holds_this_bots_test_stories_only() -> None:
    """What plain `rasa test` reads first, in the real project root: no crash, no foreign tests."""
    root = str(REPO_ROOT)
    get_data_files([root], is_nlu_file)  # parses every .json under the root: must not raise
    found = get_data_files([root], YAMLStoryReader.is_test_stories_file)
    assert [Path(path).resolve() for path in found] == [TEST_STORIES]


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project as a checkout after `make install` and `make train`: its files, the venvs, the model."""
    if not MODEL.is_file():
        pytest.fail(f"no trained model at {MODEL}: make train")
    copy = tmp_path_factory.mktemp("project")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():  # not deleted in the working tree
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    (copy / "models").mkdir(exist_ok=True)
    shutil.copy2(MODEL, copy / "models" / MODEL.name)
    for venv in VENVS:
        (copy / venv).symlink_to(REPO_ROOT / venv, target_is_directory=True)
    return copy


def test_plain_rasa_test_passes(project_copy: Path) -> None:
    output = rasa("test", cwd=project_copy, timeout_s=900)
    stories = len(yaml.safe_load(TEST_STORIES.read_text())["stories"])
    evaluated = [int(n) for n in re.findall(r"Evaluating (\d+) stories", output)]
    assert evaluated and evaluated[0] >= stories, output[-4000:]
    results = project_copy / "results"
    failed = (results / "failed_test_stories.yml").read_text()
    # Unlike test-stories, plain `rasa test` also parses each story's user text with the NLU model.
    assert "None of the test stories failed" in failed, f"failed end to end:\n{failed}"
    assert (results / "intent_report.json").is_file()  # the NLU half ran too
