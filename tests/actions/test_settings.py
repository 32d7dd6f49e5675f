"""Configuration: offline defaults, accepted values, and clear errors for bad ones."""

from __future__ import annotations

import pytest

from actions.actions import default_services
from actions.settings import DEFAULT_DATABASE_FILE, REPO_ROOT, Settings, SettingsError


def test_defaults_work_offline() -> None:
    settings = Settings.from_env({})
    assert settings.horoscope_api_url is None
    assert settings.horoscope_api_timeout == 3.0
    assert settings.database_url == f"sqlite:///{REPO_ROOT / 'var' / 'assistant.db'}"
    assert DEFAULT_DATABASE_FILE.parent.is_dir()


def test_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOROSCOPE_API_URL", "http://127.0.0.1:8000/")
    monkeypatch.setenv("HOROSCOPE_API_TIMEOUT", "0.5")
    monkeypatch.setenv("DATABASE_URL", "postgresql://rasa:secret@db:5432/rasa")
    settings = Settings.from_env()
    assert settings == Settings("http://127.0.0.1:8000", 0.5, "postgresql://rasa:secret@db:5432/rasa")


def test_settings_are_immutable() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.horoscope_api_timeout = 10.0  # type: ignore[misc]


@pytest.mark.parametrize("timeout", ["abc", "0", "-1", "nan", "inf"])
def test_unusable_timeout_is_refused(timeout: str) -> None:
    with pytest.raises(SettingsError, match="HOROSCOPE_API_TIMEOUT"):
        Settings.from_env({"HOROSCOPE_API_TIMEOUT": timeout})


@pytest.mark.parametrize("url", ["ftp://example.org", "localhost:8000", "http://"])
def test_non_http_api_url_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="HOROSCOPE_API_URL"):
        Settings.from_env({"HOROSCOPE_API_URL": url})


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
