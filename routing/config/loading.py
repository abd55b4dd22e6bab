"""Reading the routing files: YAML with line numbers, merged into one `Config`.

The files (`config/llm_routing.yaml`, `config/local_provider.yaml`) are merged by key; every
key keeps the file and line it was written on, so each later message can name them.

Top-level keys that are not sections are providers, as in the sprint report's
`ollama: {priority: 1, capabilities: [...]}`; a `providers:` mapping is accepted too (and is
the only way to name a provider like a section). Other apps add their own sections
(`agents`) through `extra_sections`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from django.db import models as db_models

SECTIONS = ("providers", "cost_optimization", "routing", "rules", "aliases")

ConfigPath = tuple[str | int, ...]


class ConfigError(Exception):
    """The configuration cannot be loaded; `messages` says where and why, one line each."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


class _MarkedDict(dict):
    line: int
    lines: dict


class _MarkedList(list):
    line: int
    lines: list


class _Loader(yaml.SafeLoader):
    """Safe YAML that remembers lines, rejects duplicate keys and aliases, and reads decimals exactly."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        # An alias repeats a node; nested, a few hundred bytes expand into gigabytes ("billion laughs").
        # Routing files have no need of them: refuse each one where it stands.
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*{event.anchor}) are not allowed: write the value out", event.start_mark
            )
        return super().compose_node(parent, index)


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
                shown = path_text(location.written + path[end:])
                line = f":{location.line}" if location.line else ""
                return f"{location.file}{line}: {shown}" if shown else f"{location.file}{line}"
        return f"{' + '.join(self.files)}: {path_text(path)}"


def path_text(path: ConfigPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def short(value: Any, limit: int = 60) -> str:
    text = repr(value.isoformat() if isinstance(value, date) else plain(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
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
        errors.append(f"{path.name}:1: the file must be a mapping of sections and providers, got {kind_of(document)}")
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
                errors.append(f"{file}:{line}: providers: must be a mapping of provider names, got {kind_of(value)}")
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
    elif plain(current) != plain(value):
        errors.append(
            f"{where.file}:{where.line}: {path_text(where.written)}: set differently in {first.file} "
            f"(line {first.line}: {short(current)}) and {where.file} (line {where.line}: {short(value)}); "
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


def kind_of(value: Any) -> str:
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
        return f"the number {plain(value)}"
    return f"a {type(value).__name__}"
