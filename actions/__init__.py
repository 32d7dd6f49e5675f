"""Custom actions of the horoscope assistant, served by `rasa run actions --actions actions`."""
