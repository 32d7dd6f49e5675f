"""Two pieces of per-turn work Rasa 3.6 repeats for nothing, done once instead.

Profiled under `make bench-turns` (py-spy on Rasa, horoscope turns; bench/README.md, "Turn
latency"), Rasa spent about a sixth of its CPU in a custom-action turn on two lookups whose
answer never changes while it runs:

- **The action server's reply is checked against a constant schema, and the schema first
  against its metaschema, on every call** (`RemoteAction._validate_action_result` calls
  `jsonschema.validate`, which runs `check_schema` each time): 8% of Rasa's CPU. Here the
  schema is checked once and its validator kept; every reply is still validated, and one that
  fails goes through Rasa's own check for its error.
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

from jsonschema import Draft7Validator
from rasa.core.actions.action import RemoteAction
from rasa.shared.core.events import Event
from rasa.shared.utils.common import all_subclasses

# Rasa's own methods, kept for the fallbacks below and for the tests that compare against them.
RASA_RESOLVE_BY_TYPE = Event.resolve_by_type
RASA_VALIDATE_ACTION_RESULT = RemoteAction._validate_action_result
# Draft 7 is what `jsonschema.validate` (3.2, which Rasa's venv pins) picks for a schema without
# `$schema`; the schema is checked against its metaschema here, once.
_RESPONSE_SCHEMA = RemoteAction.action_response_format_spec()
Draft7Validator.check_schema(_RESPONSE_SCHEMA)
_RESPONSE_VALIDATOR = Draft7Validator(_RESPONSE_SCHEMA)
_event_classes: dict[str, type[Event]] = {}


def validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
    """Rasa's check of an action server's reply, without re-checking the schema each call. A reply
    that fails goes through Rasa's own check, which raises its error with its message."""
    if _RESPONSE_VALIDATOR.is_valid(result):
        return True
    return RASA_VALIDATE_ACTION_RESULT(self, result)


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
