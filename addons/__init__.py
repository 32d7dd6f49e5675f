"""Extensions Rasa loads by class path from endpoints.yml and config.yml."""
