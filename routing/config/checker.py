"""The schema's vocabulary: one converter per kind of value, and the `Checker` that applies them.

Converters check the shape and type a YAML value must have (a whole number, a date, a URL,
a list) and expand `${ENV}` references. Limits the models already state (minimums, lengths,
name patterns, decimal places) are not repeated here: `routing.config.validation` runs the
models' own validation and reports its messages at the key they concern.

A value taken from the environment may be a secret (a key in the wrong variable, a URL with a
password): no message prints it. Converters name it by its variables (`the value of ${NAME}`),
and the `Checker` cleans it out of every later message, the models' included.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from routing.config.loading import Config, ConfigPath, kind_of, plain


class Invalid(Exception):
    """A value is wrong; the message says what is expected."""


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str) -> str:
    """`${NAME}` and `${NAME:-default}`, as in a shell or docker compose."""

    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name, "")
        if value:
            return value
        if default is None:
            raise Invalid(f"the environment variable {name} is not set (write ${{{name}:-default}} to give a default)")
        return default

    return _ENV_RE.sub(replace, text)


def env_names(value: Any) -> list[str]:
    """The variables a value takes text from: those it refers to (`${NAME}`, `${NAME:-default}`) that
    are set (an unset one gives its default, which is the file's own text)."""
    if not isinstance(value, str):
        return []
    return [match.group(1) for match in _ENV_RE.finditer(value) if os.environ.get(match.group(1))]


def env_label(names: Sequence[str]) -> str:
    return "the value of " + " and ".join(f"${{{name}}}" for name in names)


def shown(raw: Any, result: str) -> str:
    """How a message shows a converted value: quoted as written, or by its variables once expanded."""
    names = env_names(raw)
    return env_label(names) if names else repr(result)


def text(
    *, max_length: int | None = None, pattern: str | None = None, hint: str = "", env: bool = False, blank: bool = False
):
    """Text; `max_length` and `pattern` only where no model field states them (prompts, references)."""

    def convert(value: Any) -> str:
        if isinstance(value, int | Decimal) and not isinstance(value, bool) and pattern is None:
            value = plain(value)
        if not isinstance(value, str):
            raise Invalid(f"must be text, got {kind_of(value)}")
        result = expand_env(value) if env else value
        if "\x00" in result:  # PostgreSQL cannot store it, and no model field says so
            raise Invalid("must not contain a NUL character")
        if not result.strip() and not blank:
            raise Invalid("must not be empty")
        if max_length is not None and len(result) > max_length:
            raise Invalid(f"must be at most {max_length} characters, got {len(result)}")
        if result and pattern and not re.fullmatch(pattern, result):
            raise Invalid(f"{hint or 'is not valid'}, got {shown(value, result) if env else repr(result)}")
        return result

    return convert


def whole_number(*, optional: bool = False):
    def convert(value: Any) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be a whole number, got {kind_of(value)}")
        return value

    return convert


def decimal_number(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise Invalid(f"must be a number, got {kind_of(value)}")
    number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        raise Invalid(f"must be a finite number, got {value}")
    return number


def float_number(value: Any) -> float:
    return float(decimal_number(value))


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, got {kind_of(value)}")
    return value


def choice(options: Sequence[str]):
    def convert(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            hint = difflib.get_close_matches(str(value), options, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise Invalid(f"must be one of {', '.join(options)}; got {kind_of(value)}{suggestion}")
        return value

    return convert


def capability_list(value: Any) -> list[str]:
    """A list; its names are checked by the models' `validate_capabilities`."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(f"must be a list of capabilities like [code_generation, testing], got {kind_of(value)}")
    return [text()(item) for item in value]


def moment(value: Any) -> datetime:
    """A date (midnight UTC), an aware datetime, or ISO text; stored as aware UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise Invalid(f"must be a date like 2025-09-29, got {value!r}") from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    raise Invalid(f"must be a date like 2025-09-29, got {kind_of(value)}")


def url(value: Any) -> str:
    result = text(env=True)(value)
    try:
        URLValidator(schemes=["http", "https"])(result)
    except ValidationError:
        raise Invalid(f"must be an http(s) URL like http://localhost:11434, got {shown(value, result)}") from None
    return result.rstrip("/")


REQUIRED = object()


def empty_list(_values: dict) -> list:
    return []


@dataclass(frozen=True)
class Field:
    convert: Callable[[Any], Any]
    default: Any = REQUIRED  # a value, REQUIRED, or a callable given the fields converted so far


_UNKNOWN_KEY_HINTS = {
    "api_key": "never put an API key in a file: set api_key_env to the name of the environment variable holding it",
}


# An expanded value this short is cleaned only from messages about its own key: elsewhere it could
# match innocent words ("30m" in a hint).
MIN_SCRUBBED_ELSEWHERE = 4


class Checker:
    """Collects every problem (not just the first), each with its file, line and key path."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.errors: list[str] = []
        self.warnings: list[str] = []
        # Values expanded from the environment, by key: later checks (the models' validation) may
        # quote a value, so every message is cleaned of them.
        self.from_env: dict[ConfigPath, tuple[list[str], str]] = {}

    def error(self, path: ConfigPath, message: str) -> None:
        self.errors.append(f"{self.config.describe(path)}: {self._without_env_values(path, message)}")

    def warn(self, path: ConfigPath, message: str) -> None:
        self.warnings.append(f"{self.config.describe(path)}: {self._without_env_values(path, message)}")

    def _without_env_values(self, path: ConfigPath, message: str) -> str:
        for where, (names, value) in self.from_env.items():
            if value and (where == path or len(value) >= MIN_SCRUBBED_ELSEWHERE):
                for form in (repr(value), value, repr(value)[1:-1]):  # quoted, as is, escaped
                    message = message.replace(form, env_label(names))
        if path in self.from_env:
            names = self.from_env[path][0]
            if env_label(names) not in message:
                message = f"{message} ({env_label(names)})"
        return message

    def value(self, path: ConfigPath, value: Any, convert: Callable[[Any], Any]) -> Any:
        try:
            result = convert(value)
        except Invalid as exc:
            self.error(path, str(exc))  # converters name expanded values by their variables
            return None
        names = env_names(value)
        if names and isinstance(result, str):
            self.from_env[path] = (names, result)
        return result

    def mapping(self, path: ConfigPath, value: Any, what: str) -> dict | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping ({what}), got {kind_of(value)}")
            return None
        return value

    def items(self, path: ConfigPath, value: Any, what: str) -> list[tuple[ConfigPath, dict]]:
        """A list of mappings (rules, models, prices), each with its path."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"must be a list of {what}, got {kind_of(value)}")
            return []
        found = []
        for index, item in enumerate(value):
            if isinstance(item, dict):
                found.append(((*path, index), item))
            else:
                self.error((*path, index), f"must be a mapping (one of the {what}), got {kind_of(item)}")
        return found

    def fields(self, path: ConfigPath, value: dict, spec: dict[str, Field]) -> dict[str, Any]:
        for key in value:
            if key not in spec:
                hint = self._suggest(str(key), spec)
                self.error((*path, key), f"unknown key{hint}")
        result: dict[str, Any] = {}
        for name, field_spec in spec.items():
            if name in value:
                result[name] = self.value((*path, name), value[name], field_spec.convert)
            elif field_spec.default is REQUIRED:
                self.error((*path, name), "is required")
                result[name] = None
            elif callable(field_spec.default):
                try:
                    result[name] = field_spec.default(result)
                except Invalid as exc:
                    self.error((*path, name), str(exc))
                    result[name] = None
            else:
                result[name] = field_spec.default
        return result

    @staticmethod
    def _suggest(key: str, spec: Iterable[str]) -> str:
        if key in _UNKNOWN_KEY_HINTS:
            return f": {_UNKNOWN_KEY_HINTS[key]}"
        close = difflib.get_close_matches(key, list(spec), n=1)
        allowed = ", ".join(spec)
        return f" (did you mean {close[0]!r}?)" if close else f"; expected one of: {allowed}"
