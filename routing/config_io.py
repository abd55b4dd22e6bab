"""Routing as code: read, check, apply and dump providers, models, prices, the policy and rules.

The files (`config/llm_routing.yaml`, `config/local_provider.yaml`) are merged by key, checked
completely, and only then written, so bad input never leaves a half-loaded database. Every
message names the file, the line and the key path, because a person has to fix it by hand.

Top-level keys that are not sections are providers, as in the sprint report's
`ollama: {priority: 1, capabilities: [...]}`; a `providers:` mapping is accepted too (and is
the only way to name a provider like a section). Other apps add their own sections
(`agents`) through `extra_sections` and check them with the same `Checker`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models as db_models

from routing.models import (
    SLUG_RE,
    LLMModel,
    Price,
    Provider,
    ProviderKind,
    RoutingPolicy,
    RoutingRule,
    RuleProvider,
)
from routing.selectors import routing_policy

SECTIONS = ("providers", "cost_optimization", "routing", "rules")
# A `cost:` shortcut stores one price row from this date: "what local inference costs" has no start.
LOCAL_COST_FROM = datetime(2000, 1, 1, tzinfo=UTC)
KIND_DEFAULTS = {
    ProviderKind.OLLAMA: {"api_key_env": "", "local": True},  # base_url: settings.OLLAMA_HOST
    ProviderKind.ANTHROPIC: {
        "base_url": "https://api.anthropic.com",
        "api_key_env": "ANTHROPIC_API_KEY",
        "local": False,
    },
    ProviderKind.OPENAI: {"base_url": "https://api.openai.com", "api_key_env": "OPENAI_API_KEY", "local": False},
    ProviderKind.OPENAI_COMPATIBLE: {"api_key_env": "", "local": False},
}
# The connection details of a local provider live in local_provider.yaml; these stay in llm_routing.yaml.
ROUTING_FIELDS = ("priority", "enabled", "capabilities")

ConfigPath = tuple[str | int, ...]


class ConfigError(Exception):
    """The configuration cannot be loaded; `messages` says where and why, one line each."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


# --- reading: YAML with line numbers -----------------------------------------------------------


class _MarkedDict(dict):
    line: int
    lines: dict


class _MarkedList(list):
    line: int
    lines: list


class _Loader(yaml.SafeLoader):
    """Safe YAML that remembers lines, rejects duplicate keys and reads decimals exactly."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _MarkedDict:
    own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    inherited = len(node.value) - own  # `<<: *base` pairs come first; the mapping's own keys override them
    mapping = _MarkedDict()
    mapping.line, mapping.lines = node.start_mark.line + 1, {}
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int) or isinstance(key, bool):
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be a name, got {key!r}", key_node.start_mark
            )
        if key in mapping and index >= inherited and mapping.lines[key] >= 0:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {mapping.lines[key]})", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = key_node.start_mark.line + 1 if index >= inherited else -(key_node.start_mark.line + 1)
    mapping.lines = {key: abs(line) for key, line in mapping.lines.items()}
    return mapping


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> _MarkedList:
    sequence = _MarkedList(loader.construct_object(child, deep=True) for child in node.value)
    sequence.line = node.start_mark.line + 1
    sequence.lines = [child.start_mark.line + 1 for child in node.value]
    return sequence


def _construct_decimal(loader: _Loader, node: yaml.ScalarNode) -> Decimal | float:
    # Prices are money: 0.15 must stay 0.15, not 0.1499999.
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        return Decimal(text)
    except InvalidOperation:
        return loader.construct_yaml_float(node)  # .inf, .nan: rejected later with a clear message


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> date | datetime:
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError as exc:  # 2025-13-45 looks like a date to YAML but is none
        raise yaml.constructor.ConstructorError(None, None, f"not a date: {exc}", node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


@dataclass(frozen=True)
class Location:
    file: str
    line: int | None
    written: ConfigPath  # the key path as the file spells it (a provider may sit at the top level)


@dataclass
class Config:
    """The merged files: plain data at canonical paths, and where each key was written."""

    data: dict
    where: dict[ConfigPath, Location]
    files: list[str]

    def section(self, name: str) -> Any:
        return self.data.get(name)

    def describe(self, path: ConfigPath) -> str:
        for end in range(len(path), -1, -1):
            location = self.where.get(path[:end])
            if location is not None:
                shown = _path_text(location.written + path[end:])
                line = f":{location.line}" if location.line else ""
                return f"{location.file}{line}: {shown}" if shown else f"{location.file}{line}"
        return f"{' + '.join(self.files)}: {_path_text(path)}"


def _path_text(path: ConfigPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value.isoformat() if isinstance(value, date) else _plain(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, db_models.Model):
        return str(value)
    return value


def looks_like_section(name: str, sections: Iterable[str]) -> bool:
    names = list(sections)
    return name in names or bool(difflib.get_close_matches(name, names, n=1, cutoff=0.8))


def config_read(*, paths: Sequence[Path], extra_sections: Sequence[str] = ()) -> Config:
    """Read and merge the files. A key set in both files must have the same value in both."""
    sections = (*SECTIONS, *extra_sections)
    errors: list[str] = []
    config = Config(data={}, where={}, files=[Path(path).name for path in paths])
    for path in map(Path, paths):
        document = _read_document(path, errors)
        if document is not None:
            _merge_document(config, document, path.name, sections, errors)
    if errors:
        raise ConfigError(errors)
    return config


def _read_document(path: Path, errors: list[str]) -> dict | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        errors.append(f"{path}: no such file")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{path}: cannot be read: {exc}")
        return None
    try:
        document = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        errors.append(f"{path.name}{line}: malformed YAML: {what}")
        return None
    except yaml.YAMLError as exc:
        errors.append(f"{path.name}: malformed YAML: {exc}")
        return None
    if document is None:
        return _MarkedDict()  # an empty file is an empty configuration
    if not isinstance(document, dict):
        errors.append(f"{path.name}:1: the file must be a mapping of sections and providers, got {_kind_of(document)}")
        return None
    return document


def _merge_document(config: Config, document: dict, file: str, sections: Sequence[str], errors: list[str]) -> None:
    top_level = {key for key in document if key not in sections}
    for key, value in document.items():
        line = document.lines[key]
        if key == "providers":
            if value is None:
                continue
            if not isinstance(value, dict):
                errors.append(f"{file}:{line}: providers: must be a mapping of provider names, got {_kind_of(value)}")
                continue
            for name, provider in value.items():
                where = Location(file, value.lines[name], ("providers", name))
                if name in top_level:
                    errors.append(f"{file}:{where.line}: providers.{name}: also at the top level of the same file")
                    continue
                _merge_value(config, ("providers", name), provider, where, errors)
        elif key in sections:
            _merge_value(config, (key,), value, Location(file, line, (key,)), errors)
        elif not isinstance(key, str) or looks_like_section(key, sections):
            hint = difflib.get_close_matches(str(key), sections, n=1, cutoff=0.8)
            errors.append(
                f"{file}:{line}: {key}: unknown section (did you mean {hint[0]!r}?); "
                "a provider with this name goes under providers:"
                if hint
                else f"{file}:{line}: {key}: not a valid provider name"
            )
        else:
            _merge_value(config, ("providers", key), value, Location(file, line, (key,)), errors)


def _merge_value(config: Config, path: ConfigPath, value: Any, where: Location, errors: list[str]) -> None:
    parent = config.data
    for part in path[:-1]:
        parent = parent.setdefault(part, {})
    key = path[-1]
    if key not in parent:
        parent[key] = value
        _index(config, path, value, where)
        return
    current, first = parent[key], config.where[path]
    if isinstance(current, dict) and isinstance(value, dict):
        for child_key, child in value.items():
            child_where = Location(where.file, value.lines[child_key], (*where.written, child_key))
            _merge_value(config, (*path, child_key), child, child_where, errors)
    elif _plain(current) != _plain(value):
        errors.append(
            f"{where.file}:{where.line}: {_path_text(where.written)}: set differently in {first.file} "
            f"(line {first.line}: {_short(current)}) and {where.file} (line {where.line}: {_short(value)}); "
            "set it in one file only"
        )


def _index(config: Config, path: ConfigPath, value: Any, where: Location) -> None:
    config.where[path] = where
    if isinstance(value, _MarkedDict):
        for key, child in value.items():
            _index(config, (*path, key), child, Location(where.file, value.lines[key], (*where.written, key)))
    elif isinstance(value, _MarkedList):
        for index, child in enumerate(value):
            _index(config, (*path, index), child, Location(where.file, value.lines[index], (*where.written, index)))


# --- checking: one converter per kind of value ------------------------------------------------


class Invalid(Exception):
    """A value is wrong; the message says what is expected."""


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | Decimal | float):
        return f"the number {_plain(value)}"
    return f"a {type(value).__name__}"


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


def text(*, max_length: int, pattern: str | None = None, hint: str = "", env: bool = False, blank: bool = False):
    def convert(value: Any) -> str:
        if isinstance(value, int | Decimal) and not isinstance(value, bool) and pattern is None:
            value = _plain(value)
        if not isinstance(value, str):
            raise Invalid(f"must be text, got {_kind_of(value)}")
        result = expand_env(value) if env else value
        if "\x00" in result:
            raise Invalid("must not contain a NUL character")
        if not result.strip() and not blank:
            raise Invalid("must not be empty")
        if len(result) > max_length:
            raise Invalid(f"must be at most {max_length} characters, got {len(result)}")
        if result and pattern and not re.fullmatch(pattern, result):
            raise Invalid(f"{hint or 'is not valid'}, got {result!r}")
        return result

    return convert


def whole_number(*, minimum: int = 0, hint: str = "", optional: bool = False, maximum: int = 2**31 - 1):
    def convert(value: Any) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be a whole number, got {_kind_of(value)}")
        if value < minimum:
            raise Invalid(f"{hint or f'must be at least {minimum}'}, got {value}")
        if value > maximum:  # the database column's limit
            raise Invalid(f"must be at most {maximum}, got {value}")
        return value

    return convert


def decimal_number(*, minimum: Decimal, maximum: Decimal | None = None, places: int = 6, hint: str = ""):
    def convert(value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
            raise Invalid(f"must be a number, got {_kind_of(value)}")
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
        if not number.is_finite():
            raise Invalid(f"must be a finite number, got {value}")
        if number < minimum or (maximum is not None and number > maximum):
            limits = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise Invalid(f"{hint or 'must be ' + limits}, got {_plain(number)}")
        if number != number.quantize(Decimal(1).scaleb(-places)):
            raise Invalid(f"must have at most {places} decimal places, got {_plain(number)}")
        return number

    return convert


def float_number(*, minimum: float):
    def convert(value: Any) -> float:
        number = decimal_number(minimum=Decimal(str(minimum)), places=3)(value)
        return float(number)

    return convert


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, got {_kind_of(value)}")
    return value


def choice(options: Sequence[str]):
    def convert(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            hint = difflib.get_close_matches(str(value), options, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise Invalid(f"must be one of {', '.join(options)}; got {_kind_of(value)}{suggestion}")
        return value

    return convert


_CAPABILITY = text(
    max_length=64, pattern=r"[a-z][a-z0-9_]*", hint="a capability is a lowercase word like code_generation"
)


def capability_list(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(f"must be a list of capabilities like [code_generation, testing], got {_kind_of(value)}")
    result = [_CAPABILITY(item) for item in value]
    repeated = sorted({item for item in result if result.count(item) > 1})
    if repeated:
        raise Invalid(f"lists {', '.join(repeated)} more than once")
    return result


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
    raise Invalid(f"must be a date like 2025-09-29, got {_kind_of(value)}")


def url(value: Any) -> str:
    result = text(max_length=300, env=True)(value)
    try:
        URLValidator(schemes=["http", "https"])(result)
    except ValidationError:
        raise Invalid(f"must be an http(s) URL like http://localhost:11434, got {result!r}") from None
    return result.rstrip("/")


REQUIRED = object()


def _empty_list(_values: dict) -> list:
    return []


@dataclass(frozen=True)
class Field:
    convert: Callable[[Any], Any]
    default: Any = REQUIRED  # a value, REQUIRED, or a callable given the fields converted so far


_UNKNOWN_KEY_HINTS = {
    "api_key": "never put an API key in a file: set api_key_env to the name of the environment variable holding it",
}


class Checker:
    """Collects every problem (not just the first), each with its file, line and key path."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, path: ConfigPath, message: str) -> None:
        self.errors.append(f"{self.config.describe(path)}: {message}")

    def warn(self, path: ConfigPath, message: str) -> None:
        self.warnings.append(f"{self.config.describe(path)}: {message}")

    def value(self, path: ConfigPath, value: Any, convert: Callable[[Any], Any]) -> Any:
        try:
            return convert(value)
        except Invalid as exc:
            self.error(path, str(exc))
            return None

    def mapping(self, path: ConfigPath, value: Any, what: str) -> dict | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping ({what}), got {_kind_of(value)}")
            return None
        return value

    def items(self, path: ConfigPath, value: Any, what: str) -> list[tuple[ConfigPath, dict]]:
        """A list of mappings (rules, models, prices), each with its path."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"must be a list of {what}, got {_kind_of(value)}")
            return []
        found = []
        for index, item in enumerate(value):
            if isinstance(item, dict):
                found.append(((*path, index), item))
            else:
                self.error((*path, index), f"must be a mapping (one of the {what}), got {_kind_of(item)}")
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


# --- the routing specification -----------------------------------------------------------------


@dataclass
class PriceSpec:
    effective_from: datetime
    input_per_mtok: Decimal
    output_per_mtok: Decimal


@dataclass
class ModelSpec:
    name: str
    context_window: int
    capabilities: list[str]
    prices: list[PriceSpec]


@dataclass
class ProviderSpec:
    name: str
    kind: str
    base_url: str
    api_key_env: str
    is_local: bool
    priority: int
    enabled: bool
    capabilities: list[str]
    default_model: str
    connect_timeout_s: float
    request_timeout_s: float
    max_in_flight: int | None
    keep_alive: str
    models: list[ModelSpec]


@dataclass
class PolicySpec:
    target_local_share: Decimal
    baseline: tuple[str, str] | None
    failures_before_cooldown: int
    cooldown_seconds: int
    slot_wait_seconds: float


@dataclass
class RuleSpec:
    name: str
    enabled: bool
    capability: str
    agent: str
    min_prompt_tokens: int | None
    max_prompt_tokens: int | None
    allow_cloud: bool
    escalate_above_tokens: int | None
    escalate_capabilities: list[str]
    providers: list[str]


@dataclass
class RoutingSpec:
    providers: list[ProviderSpec]
    policy: PolicySpec
    rules: list[RuleSpec]


def _kind_default(key: str) -> Callable[[dict], Any]:
    def default(values: dict) -> Any:
        kind = values.get("kind")
        if kind is None:
            return None  # the missing or wrong kind is reported already
        if key == "base_url" and kind == ProviderKind.OLLAMA:
            return url(settings.OLLAMA_HOST)
        if key not in KIND_DEFAULTS[kind]:
            raise Invalid(f"is required for a {kind} provider")
        return KIND_DEFAULTS[kind][key]

    return default


def _api_key_env(value: Any) -> str:
    name = text(max_length=100, env=True, blank=True)(value)
    if name and not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
        # Not echoed: a value here that is not a variable name may well be the key itself.
        raise Invalid(
            "must be the NAME of the environment variable holding the key (like ANTHROPIC_API_KEY), "
            "never the key itself"
        )
    return name


def _keep_alive(value: Any) -> str:
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        value = _plain(value)
    return text(
        max_length=20,
        pattern=r"-?\d+(\.\d+)?(ms|s|m|h)?",
        hint="must be a duration like 30m, 1h, 300 or -1",
        env=True,
        blank=True,
    )(value)


PROVIDER_FIELDS = {
    "kind": Field(choice(ProviderKind.values)),
    "base_url": Field(url, _kind_default("base_url")),
    "api_key_env": Field(_api_key_env, _kind_default("api_key_env")),
    "local": Field(boolean, _kind_default("local")),
    "priority": Field(whole_number(minimum=1, hint="must be 1 or more (1 is tried first)")),
    "enabled": Field(boolean, True),
    "capabilities": Field(capability_list, _empty_list),
    "default_model": Field(text(max_length=120, env=True), None),
    "connect_timeout_s": Field(float_number(minimum=0.1), 5.0),
    "request_timeout_s": Field(float_number(minimum=0.1), 120.0),
    "max_in_flight": Field(whole_number(minimum=1, optional=True), None),
    "keep_alive": Field(_keep_alive, ""),
    "models": Field(lambda value: value),  # checked item by item below
}
MODEL_FIELDS = {
    "name": Field(text(max_length=120)),
    "context_window": Field(whole_number(minimum=1), 8192),
    "capabilities": Field(capability_list, _empty_list),
    "prices": Field(lambda value: value, None),
    "cost": Field(lambda value: value, None),
}
_MONEY = decimal_number(
    minimum=Decimal(0), maximum=Decimal("999999"), hint="must be 0 or more (USD per million tokens)"
)
PRICE_FIELDS = {
    "effective_from": Field(moment),
    "input_per_mtok": Field(_MONEY),
    "output_per_mtok": Field(_MONEY),
}
COST_FIELDS = {"input_per_mtok": Field(_MONEY, Decimal(0)), "output_per_mtok": Field(_MONEY, Decimal(0))}
POLICY_FIELDS = {
    "local_model_target_percentage": Field(
        decimal_number(minimum=Decimal(0), maximum=Decimal(100), places=2, hint="must be a share between 0 and 100"),
        Decimal(85),
    ),
    "baseline_model": Field(text(max_length=200, pattern=r"[^/]+/.+", hint="must be provider/model"), None),
}
LIMIT_FIELDS = {
    "failures_before_cooldown": Field(whole_number(minimum=1), 3),
    "cooldown_seconds": Field(whole_number(minimum=0), 60),
    "slot_wait_seconds": Field(float_number(minimum=0), 30.0),
}
_TOKENS = whole_number(minimum=0, optional=True)
RULE_FIELDS = {
    "name": Field(text(max_length=64, pattern=SLUG_RE.strip("^$"), hint="must be a name like large-prompts")),
    "enabled": Field(boolean, True),
    "capability": Field(text(max_length=64, pattern=r"[a-z][a-z0-9_]*", hint="must be a capability", blank=True), ""),
    "agent": Field(text(max_length=64, pattern=SLUG_RE.strip("^$"), hint="must be an agent slug", blank=True), ""),
    "min_prompt_tokens": Field(_TOKENS, None),
    "max_prompt_tokens": Field(_TOKENS, None),
    "allow_cloud": Field(boolean, True),
    "escalate_above_tokens": Field(_TOKENS, None),
    "escalate_capabilities": Field(capability_list, _empty_list),
    "providers": Field(lambda value: value, _empty_list),
}


def routing_check(*, config: Config, checker: Checker) -> RoutingSpec:
    """Every routing section, checked; problems go to `checker` (the caller raises)."""
    providers = _check_providers(config, checker)
    policy = _check_policy(config, checker, providers)
    rules = _check_rules(config, checker, providers)
    return RoutingSpec(providers=providers, policy=policy, rules=rules)


_PROVIDER_NAME = text(
    max_length=64, pattern=SLUG_RE.strip("^$"), hint="must be a provider name like claude (a-z, 0-9, _ . : -)"
)


def _check_providers(config: Config, checker: Checker) -> list[ProviderSpec]:
    section = checker.mapping(("providers",), config.section("providers"), "provider names") or {}
    result, priorities = [], {}
    for name, raw in section.items():
        path = ("providers", name)
        spec = _check_provider(checker, path, name, raw)
        if spec is None:
            continue
        if spec.priority is not None and spec.priority in priorities:
            other = priorities[spec.priority]
            checker.error(
                (*path, "priority"),
                f"{spec.priority} is also the priority of {other} "
                f"({config.describe(('providers', other, 'priority'))}); priorities must differ",
            )
        priorities.setdefault(spec.priority, name)
        result.append(spec)
    return result


def _check_provider(checker: Checker, path: ConfigPath, name: str, raw: Any) -> ProviderSpec | None:
    if checker.value(path, name, _PROVIDER_NAME) is None:
        return None
    raw = checker.mapping(path, raw, "the provider's settings")
    if raw is None:
        return None
    if "kind" not in raw and name in ProviderKind.values:
        raw = {**raw, "kind": name}  # `ollama:` alone means an Ollama provider
    values = checker.fields(path, raw, PROVIDER_FIELDS)
    if values["keep_alive"] and values["kind"] not in (None, ProviderKind.OLLAMA):
        checker.error((*path, "keep_alive"), "only Ollama providers take keep_alive")
    models = _check_models(checker, path, raw.get("models"), is_local=bool(values["local"]))
    if not models and "models" in raw:
        checker.error((*path, "models"), "a provider needs at least one model")
    values["default_model"] = _check_default_model(checker, path, values["default_model"], models)
    return ProviderSpec(name=name, is_local=values.pop("local"), models=models, **_without(values, "models"))


def _check_default_model(checker: Checker, path: ConfigPath, default: str | None, models: list[ModelSpec]) -> str:
    names = [model.name for model in models]
    if default is None:
        return names[0] if names else ""
    if names and default not in names:
        close = difflib.get_close_matches(default, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        checker.error(
            (*path, "default_model"), f"{default!r} is not among {path[-1]}'s models: {', '.join(names)}{hint}"
        )
    return default


def _without(values: dict, *keys: str) -> dict:
    return {key: value for key, value in values.items() if key not in keys}


def _check_models(checker: Checker, provider_path: ConfigPath, raw: Any, *, is_local: bool) -> list[ModelSpec]:
    path = (*provider_path, "models")
    result, seen = [], set()
    for model_path, item in checker.items(path, raw, "models"):
        values = checker.fields(model_path, item, MODEL_FIELDS)
        if values["name"] in seen:
            checker.error((*model_path, "name"), f"model {values['name']!r} is listed twice")
        seen.add(values["name"])
        prices = _check_prices(checker, model_path, item, is_local=is_local)
        result.append(ModelSpec(prices=prices, **_without(values, "prices", "cost")))
    return result


def _check_prices(checker: Checker, model_path: ConfigPath, item: dict, *, is_local: bool) -> list[PriceSpec]:
    if "cost" in item and "prices" in item:
        checker.error((*model_path, "cost"), "give either cost (one figure) or prices (with dates), not both")
        return []
    if "cost" in item or ("prices" not in item and is_local):
        # Local inference costs what the team says, zero by default: stored as a real price row
        # so that a missing price can always mean "unknown", never "free".
        cost = checker.mapping((*model_path, "cost"), item.get("cost"), "input_per_mtok and output_per_mtok")
        values = checker.fields((*model_path, "cost"), cost or {}, COST_FIELDS)
        return [PriceSpec(effective_from=LOCAL_COST_FROM, **values)]
    prices, starts = [], {}
    for price_path, raw in checker.items((*model_path, "prices"), item.get("prices"), "prices"):
        price = PriceSpec(**checker.fields(price_path, raw, PRICE_FIELDS))
        if price.effective_from is not None and price.effective_from in starts:
            checker.error(
                (*price_path, "effective_from"), f"a price from {price.effective_from:%Y-%m-%d} is listed twice"
            )
        starts[price.effective_from] = price
        prices.append(price)
    if not prices:
        checker.warn(model_path, "no price: calls to this model will be recorded without a cost")
    return prices


def _check_policy(config: Config, checker: Checker, providers: list[ProviderSpec]) -> PolicySpec:
    cost = checker.mapping(("cost_optimization",), config.section("cost_optimization"), "its settings") or {}
    limits = checker.mapping(("routing",), config.section("routing"), "its settings") or {}
    values = checker.fields(("cost_optimization",), cost, POLICY_FIELDS)
    limit_values = checker.fields(("routing",), limits, LIMIT_FIELDS)
    baseline = None
    if values["baseline_model"]:
        provider_name, model_name = values["baseline_model"].split("/", 1)
        provider = next((p for p in providers if p.name == provider_name), None)
        known = [f"{p.name}/{m.name}" for p in providers for m in p.models if not p.is_local]
        if provider is None or model_name not in [m.name for m in provider.models]:
            close = difflib.get_close_matches(values["baseline_model"], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; cloud models: {', '.join(known) or 'none'}"
            checker.error(("cost_optimization", "baseline_model"), f"no model {values['baseline_model']!r}{hint}")
        elif provider.is_local:
            checker.error(
                ("cost_optimization", "baseline_model"), "must be a cloud model: savings are measured against it"
            )
        else:
            baseline = (provider_name, model_name)
    return PolicySpec(target_local_share=values["local_model_target_percentage"], baseline=baseline, **limit_values)


def _check_rules(config: Config, checker: Checker, providers: list[ProviderSpec]) -> list[RuleSpec]:
    by_name = {provider.name: provider for provider in providers}
    result, seen = [], set()
    for path, raw in checker.items(("rules",), config.section("rules"), "rules"):
        values = checker.fields(path, raw, RULE_FIELDS)
        if values["name"] in seen:
            checker.error((*path, "name"), f"a rule named {values['name']!r} is listed twice")
        seen.add(values["name"])
        low, high = values["min_prompt_tokens"], values["max_prompt_tokens"]
        if low is not None and high is not None and low > high:
            checker.error((*path, "max_prompt_tokens"), f"{high} is below min_prompt_tokens ({low})")
        values["providers"] = _check_rule_providers(checker, path, values, by_name)
        result.append(RuleSpec(**values))
    return result


def _check_rule_providers(checker: Checker, path: ConfigPath, values: dict, by_name: dict) -> list[str]:
    raw = values["providers"]
    if not isinstance(raw, list):
        checker.error((*path, "providers"), f"must be a list of provider names, got {_kind_of(raw)}")
        return []
    names = []
    for index, name in enumerate(raw):
        step = (*path, "providers", index)
        if not isinstance(name, str) or name not in by_name:
            close = difflib.get_close_matches(str(name), list(by_name), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; providers: {', '.join(by_name) or 'none'}"
            checker.error(step, f"no provider named {name!r}{hint}")
        elif name in names:
            checker.error(step, f"{name} is listed twice")
        elif not values["allow_cloud"] and not by_name[name].is_local:
            checker.error(step, f"{name} is a cloud provider but the rule says allow_cloud: false")
        else:
            names.append(name)
    return names


# --- applying: compare, then write only what differs -------------------------------------------


@dataclass
class Changes:
    made: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def extend(self, other: Changes) -> None:
        self.made.extend(other.made)
        self.warnings.extend(other.warnings)


def assign(obj: db_models.Model, values: dict[str, Any]) -> list[str]:
    """Set the fields that differ; say what changed, e.g. `priority 3 -> 2`."""
    changed = []
    for name, new in values.items():
        old = getattr(obj, name)
        if old != new:
            setattr(obj, name, new)
            changed.append(f"{name} {_short(old, 40)} -> {_short(new, 40)}")
    return changed


def save_checked(obj: db_models.Model, *, label: str, exclude: Sequence[str] = ()) -> None:
    """The model's own field validators, as a last guard behind the checks above."""
    try:
        obj.clean_fields(exclude=list(exclude))
    except ValidationError as exc:
        raise ConfigError([f"{label}: {name}: {' '.join(errs)}" for name, errs in exc.message_dict.items()]) from None
    obj.save()


def routing_apply(*, spec: RoutingSpec, prune: bool) -> Changes:
    """Write the spec; call inside transaction.atomic (the caller also writes the agents)."""
    changes = Changes()
    existing = {provider.name: provider for provider in Provider.objects.select_for_update()}
    for provider_spec in spec.providers:
        provider = _apply_provider(provider_spec, existing.get(provider_spec.name), changes)
        _apply_models(provider, provider_spec.models, changes)
    for name in sorted(set(existing) - {p.name for p in spec.providers}):
        mark_stale(existing[name], f"provider {name}", prune, changes)
    _apply_policy(spec.policy, changes)
    _apply_rules(spec.rules, changes)
    return changes


def mark_stale(obj: db_models.Model, label: str, prune: bool, changes: Changes) -> None:
    """In the database but not in the files: kept (it may have history), disabled with --prune."""
    if prune and obj.enabled:
        obj.enabled = False
        obj.save(update_fields=["enabled"])
        changes.made.append(f"disabled {label} (not in the files)")
    elif not prune:
        state = "kept" if obj.enabled else "kept, disabled"
        changes.warnings.append(f"{label} is in the database but not in the files: {state} (--prune disables it)")


def _apply_provider(spec: ProviderSpec, provider: Provider | None, changes: Changes) -> Provider:
    values = _without(spec.__dict__, "name", "models")
    if provider is None:
        provider = Provider(name=spec.name, **values)
        save_checked(provider, label=f"provider {spec.name}")
        changes.made.append(f"created provider {spec.name} ({spec.kind}, priority {spec.priority})")
        return provider
    changed = assign(provider, values)
    if changed:
        save_checked(provider, label=f"provider {spec.name}")
        changes.made.append(f"updated provider {spec.name}: {', '.join(changed)}")
    return provider


def _apply_models(provider: Provider, specs: list[ModelSpec], changes: Changes) -> None:
    existing = {model.name: model for model in provider.models.all()}
    for spec in specs:
        label = f"model {provider.name}/{spec.name}"
        model = existing.get(spec.name)
        values = {"context_window": spec.context_window, "capabilities": spec.capabilities}
        if model is None:
            model = LLMModel(provider=provider, name=spec.name, **values)
            save_checked(model, label=label, exclude=["provider"])
            changes.made.append(f"created {label}")
        else:
            changed = assign(model, values)
            if changed:
                save_checked(model, label=label, exclude=["provider"])
                changes.made.append(f"updated {label}: {', '.join(changed)}")
        _apply_prices(model, spec.prices, label, changes)
    for name in sorted(set(existing) - {spec.name for spec in specs}):
        changes.warnings.append(f"model {provider.name}/{name} is in the database but not in the files: kept")


def _apply_prices(model: LLMModel, specs: list[PriceSpec], label: str, changes: Changes) -> None:
    # Prices are history: rows are added or corrected by start date, never deleted.
    existing = {price.effective_from: price for price in model.prices.all()}
    for spec in specs:
        price = existing.get(spec.effective_from)
        values = {"input_per_mtok": spec.input_per_mtok, "output_per_mtok": spec.output_per_mtok}
        shown = f"${_plain(spec.input_per_mtok)} in / ${_plain(spec.output_per_mtok)} out per M tokens"
        if price is None:
            save_checked(
                Price(model=model, effective_from=spec.effective_from, **values), label=label, exclude=["model"]
            )
            changes.made.append(f"added price for {label} from {spec.effective_from:%Y-%m-%d}: {shown}")
        elif assign(price, values):
            save_checked(price, label=label, exclude=["model"])
            changes.made.append(f"corrected price for {label} from {spec.effective_from:%Y-%m-%d}: {shown}")


def _apply_policy(spec: PolicySpec, changes: Changes) -> None:
    RoutingPolicy.get()
    policy = RoutingPolicy.objects.select_for_update().get(pk=1)
    baseline = None
    if spec.baseline:
        baseline = LLMModel.objects.get(provider__name=spec.baseline[0], name=spec.baseline[1])
    values = {
        "target_local_share": spec.target_local_share,
        "baseline_model": baseline,
        "failures_before_cooldown": spec.failures_before_cooldown,
        "cooldown_seconds": spec.cooldown_seconds,
        "slot_wait_seconds": spec.slot_wait_seconds,
    }
    changed = assign(policy, values)
    if changed:
        save_checked(policy, label="routing policy")
        changes.made.append(f"updated the routing policy: {', '.join(changed)}")


def _apply_rules(specs: list[RuleSpec], changes: Changes) -> None:
    existing = {rule.name: rule for rule in RoutingRule.objects.select_for_update()}
    for name in sorted(set(existing) - {spec.name for spec in specs}):
        existing.pop(name).delete()  # rules are configuration: the files say which exist
        changes.made.append(f"deleted rule {name} (not in the files)")
    provider_ids = dict(Provider.objects.values_list("name", "id"))
    for position, spec in enumerate(specs):
        values = {**_without(spec.__dict__, "name", "providers"), "position": position}
        rule = existing.get(spec.name)
        created = rule is None
        rule = rule or RoutingRule(name=spec.name)
        changed = assign(rule, values)
        if created or changed:
            save_checked(rule, label=f"rule {spec.name}")
        steps = list(rule.steps.order_by("position").values_list("provider__name", flat=True))
        if steps != spec.providers:
            rule.steps.all().delete()
            RuleProvider.objects.bulk_create(
                RuleProvider(rule=rule, provider_id=provider_ids[name], position=index)
                for index, name in enumerate(spec.providers)
            )
            changed.append(f"providers {steps} -> {spec.providers}")
        if created:
            changes.made.append(f"created rule {spec.name}")
        elif changed:
            changes.made.append(f"updated rule {spec.name}: {', '.join(changed)}")


# --- dumping: the database as YAML that loads back to the same state ---------------------------


def _moment_out(value: datetime) -> date | datetime:
    value = value.astimezone(UTC)
    return value.date() if value.timetz() == time(0, tzinfo=UTC) else value


def _model_out(model: LLMModel, *, is_local: bool) -> dict:
    prices = sorted(model.prices.all(), key=lambda price: price.effective_from)
    out: dict[str, Any] = {
        "name": model.name,
        "context_window": model.context_window,
        "capabilities": model.capabilities,
    }
    if is_local and len(prices) == 1 and prices[0].effective_from == LOCAL_COST_FROM:
        out["cost"] = {"input_per_mtok": prices[0].input_per_mtok, "output_per_mtok": prices[0].output_per_mtok}
    else:
        out["prices"] = [
            {
                "effective_from": _moment_out(price.effective_from),
                "input_per_mtok": price.input_per_mtok,
                "output_per_mtok": price.output_per_mtok,
            }
            for price in prices
        ]
    return out


def _base_url_out(provider: Provider) -> str:
    # The Ollama host follows OLLAMA_HOST: keep the reference when the database agrees with it,
    # so the exported file loads back the same here and still moves with the variable elsewhere.
    try:
        follows_env = provider.kind == ProviderKind.OLLAMA and provider.base_url == url(settings.OLLAMA_HOST)
    except Invalid:
        follows_env = False
    return f"${{OLLAMA_HOST:-{provider.base_url}}}" if follows_env else provider.base_url


def _provider_out(provider: Provider) -> dict:
    out: dict[str, Any] = {
        "kind": provider.kind,
        "local": provider.is_local,
        "base_url": _base_url_out(provider),
        "api_key_env": provider.api_key_env,  # the variable's name; the key never leaves the environment
        "priority": provider.priority,
        "enabled": provider.enabled,
        "capabilities": provider.capabilities,
        "default_model": provider.default_model,
        "connect_timeout_s": provider.connect_timeout_s,
        "request_timeout_s": provider.request_timeout_s,
        "max_in_flight": provider.max_in_flight,
    }
    if provider.kind == ProviderKind.OLLAMA or provider.keep_alive:
        out["keep_alive"] = provider.keep_alive
    out["models"] = [_model_out(model, is_local=provider.is_local) for model in provider.models.order_by("name")]
    return out


def routing_dump(*, extra_sections: Sequence[str] = ()) -> tuple[dict, dict]:
    """(llm_routing.yaml, local_provider.yaml) as data: a local provider's connection details
    go to the second, its priority and capabilities stay with the routing."""
    sections = (*SECTIONS, *extra_sections)
    policy = routing_policy()  # exporting never writes
    baseline = policy.baseline_model
    routing_doc: dict[str, Any] = {
        "cost_optimization": {
            "local_model_target_percentage": policy.target_local_share,
            "baseline_model": f"{baseline.provider.name}/{baseline.name}" if baseline else None,
        },
        "routing": {
            "failures_before_cooldown": policy.failures_before_cooldown,
            "cooldown_seconds": policy.cooldown_seconds,
            "slot_wait_seconds": policy.slot_wait_seconds,
        },
    }
    local_doc: dict[str, Any] = {}
    for provider in Provider.objects.order_by("priority", "name").prefetch_related("models__prices"):
        out = _provider_out(provider)
        if provider.is_local:
            _put_provider(local_doc, provider.name, _without(out, *ROUTING_FIELDS), sections)
            out = {key: out[key] for key in ROUTING_FIELDS}
        _put_provider(routing_doc, provider.name, out, sections)
    routing_doc["rules"] = [_rule_out(rule) for rule in RoutingRule.objects.order_by("position", "name")]
    return routing_doc, local_doc


def _put_provider(document: dict, name: str, out: dict, sections: Sequence[str]) -> None:
    if looks_like_section(name, sections):
        document.setdefault("providers", {})[name] = out
    else:
        document[name] = out


def _rule_out(rule: RoutingRule) -> dict:
    return {
        "name": rule.name,
        "enabled": rule.enabled,
        "capability": rule.capability,
        "agent": rule.agent,
        "min_prompt_tokens": rule.min_prompt_tokens,
        "max_prompt_tokens": rule.max_prompt_tokens,
        "allow_cloud": rule.allow_cloud,
        "escalate_above_tokens": rule.escalate_above_tokens,
        "escalate_capabilities": rule.escalate_capabilities,
        "providers": list(rule.steps.order_by("position").values_list("provider__name", flat=True)),
    }


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # indent list items under their key: easier to read


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.ScalarNode:
    shown = format(value.normalize(), "f")
    return dumper.represent_scalar("tag:yaml.org,2002:float", shown if "." in shown else f"{shown}.0")


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None  # prompts stay readable as blocks
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_list(dumper: yaml.SafeDumper, value: list) -> yaml.SequenceNode:
    flat = all(isinstance(item, str | int | float | Decimal) for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flat or None)


_Dumper.add_representer(Decimal, _represent_decimal)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(str, _represent_text)


def yaml_text(document: dict, *, header: str = "") -> str:
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return f"{header}{body}"
