"""Two pieces of per-turn work Rasa 3.6 repeats for nothing, done once instead.

Profiled under `make bench-turns` (py-spy on Rasa, horoscope turns; bench/README.md, "Turn
latency"), Rasa spent about a sixth of its CPU in a custom-action turn on two lookups whose
answer never changes while it runs:

- **The action server's reply is checked against a constant schema, and the schema first
  against its metaschema, on every call** (`RemoteAction._validate_action_result` calls
  `jsonschema.validate`, which runs `check_schema` each time): 8% of Rasa's CPU. Here the
  schema is checked once and its validator kept; every reply is still validated, with
  Rasa's own error message.
- **Each event read back is matched to its class by walking all subclasses of `Event`**
  (`Event.resolve_by_type`, for every event of an action's reply and of a tracker loaded from
  the tracker store): 6% of Rasa's CPU. Here the walk is done once into a table, and again
  whenever a name is missing from it, so an event class defined later is still found.

`apply()` installs both; addons/tracker_store.py calls it, because the tracker store named in
endpoints.yml is the one project module every serving Rasa process imports (`rasa run`, `rasa
shell`, the cluster's instances). Rasa 3.6 offers no hook for either; tests/addons/
test_rasa_speedups.py pins the patched methods to Rasa's own results, so a Rasa upgrade that
changes them fails there.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft7Validator, ValidationError, exceptions
from rasa.core.actions.action import RemoteAction
from rasa.shared.constants import DOCS_BASE_URL
from rasa.shared.core.events import Event
from rasa.shared.utils.common import all_subclasses

# Rasa's own methods, kept for the fallback below and for the tests that compare against them.
RASA_RESOLVE_BY_TYPE = Event.resolve_by_type
RASA_VALIDATE_ACTION_RESULT = RemoteAction._validate_action_result
_response_validator: Draft7Validator | None = None
_event_classes: dict[str, type[Event]] = {}


def _validator() -> Draft7Validator:
    """The action-response schema's validator, its schema checked once. Draft 7 is what
    `jsonschema.validate` (3.2, which Rasa's venv pins) picks for a schema without `$schema`."""
    global _response_validator
    if _response_validator is None:
        schema = RemoteAction.action_response_format_spec()
        Draft7Validator.check_schema(schema)
        _response_validator = Draft7Validator(schema)
    return _response_validator


def validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
    """Rasa's check of an action server's reply, without re-checking the schema each call."""
    error = exceptions.best_match(_validator().iter_errors(result))
    if error is None:
        return True
    assert isinstance(error, ValidationError)
    error.message += (
        ". Failed to validate Action server response from API, "
        "make sure your response from the Action endpoint is valid. "
        f"For more information about the format visit {DOCS_BASE_URL}/custom-actions"
    )
    raise error


def _event_class_table() -> dict[str, type[Event]]:
    """type_name -> class, the first class in `all_subclasses` order, as Rasa's walk returns."""
    table: dict[str, type[Event]] = {}
    for cls in all_subclasses(Event):
        table.setdefault(cls.type_name, cls)
    return table


def resolve_event_by_type(type_name: str, default: type[Event] | None = None) -> type[Event] | None:
    """Rasa's `Event.resolve_by_type` from a table; a name missing from it walks the classes again."""
    global _event_classes
    cls = _event_classes.get(type_name)
    if cls is None:
        _event_classes = _event_class_table()
        cls = _event_classes.get(type_name)
    if cls is not None:
        return cls
    return RASA_RESOLVE_BY_TYPE(type_name, default)  # "topic", the default, or Rasa's error


def apply() -> None:
    """Install both; safe to call more than once."""
    RemoteAction._validate_action_result = validate_action_result
    Event.resolve_by_type = staticmethod(resolve_event_by_type)
