"""Configuration: offline defaults, accepted values, and clear errors for bad ones."""

from __future__ import annotations

import json

import pytest

from actions.actions import default_services
from actions.settings import DEFAULT_DATABASE_FILE, REPO_ROOT, Settings, SettingsError


def test_defaults_work_offline() -> None:
    settings = Settings.from_env({})
    assert settings.horoscope_api_url is None
    assert settings.horoscope_api_timeout == 3.0
    assert settings.database_url == f"sqlite:///{REPO_ROOT / 'var' / 'assistant.db'}"
    assert settings.qa_service_url == "http://127.0.0.1:8000"
    assert settings.qa_service_timeout == 5.0
    # the hedge threshold `make calibrate-confidence` chose for the shipped reader's confidence
    calibration = json.loads((REPO_ROOT / "models/reader/confidence_calibration.json").read_text())
    assert settings.qa_min_confidence == calibration["fitted_on"]["hedge_below"]
    assert DEFAULT_DATABASE_FILE.parent.is_dir()


def test_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOROSCOPE_API_URL", "http://127.0.0.1:8000/")
    monkeypatch.setenv("HOROSCOPE_API_TIMEOUT", "0.5")
    monkeypatch.setenv("DATABASE_URL", "postgresql://rasa:secret@db:5432/rasa")
    monkeypatch.setenv("QA_SERVICE_URL", "https://qa.example.org:9000/")
    monkeypatch.setenv("QA_SERVICE_TIMEOUT", "2.5")
    monkeypatch.setenv("QA_MIN_CONFIDENCE", "0")
    settings = Settings.from_env()
    assert settings == Settings(
        horoscope_api_url="http://127.0.0.1:8000",
        horoscope_api_timeout=0.5,
        database_url="postgresql://rasa:secret@db:5432/rasa",
        qa_service_url="https://qa.example.org:9000",
        qa_service_timeout=2.5,
        qa_min_confidence=0.0,
    )


def test_settings_are_immutable() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.horoscope_api_timeout = 10.0  # type: ignore[misc]


@pytest.mark.parametrize("timeout", ["abc", "0", "-1", "nan", "inf"])
def test_unusable_timeout_is_refused(timeout: str) -> None:
    with pytest.raises(SettingsError, match="HOROSCOPE_API_TIMEOUT"):
        Settings.from_env({"HOROSCOPE_API_TIMEOUT": timeout})


@pytest.mark.parametrize("name", ["HOROSCOPE_API_URL", "QA_SERVICE_URL"])
@pytest.mark.parametrize("url", ["ftp://example.org", "localhost:8000", "http://"])
def test_non_http_url_is_refused(name: str, url: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: url})


@pytest.mark.parametrize("timeout", ["abc", "0", "-1", "nan"])
def test_unusable_qa_timeout_is_refused(timeout: str) -> None:
    with pytest.raises(SettingsError, match="QA_SERVICE_TIMEOUT"):
        Settings.from_env({"QA_SERVICE_TIMEOUT": timeout})


@pytest.mark.parametrize("confidence", ["high", "-0.1", "1.5", "nan"])
def test_confidence_threshold_outside_0_to_1_is_refused(confidence: str) -> None:
    with pytest.raises(SettingsError, match="QA_MIN_CONFIDENCE"):
        Settings.from_env({"QA_MIN_CONFIDENCE": confidence})


def test_unparsable_database_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL") as error:
        Settings.from_env({"DATABASE_URL": "not a url with s3cret"})
    assert "s3cret" not in str(error.value)


def test_bad_configuration_fails_when_the_action_server_builds_its_services(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOROSCOPE_API_TIMEOUT", "three seconds")
    default_services.cache_clear()
    try:
        with pytest.raises(SettingsError, match="HOROSCOPE_API_TIMEOUT"):
            default_services()
    finally:
        default_services.cache_clear()
