"""The validation rules that model validation, the admin's forms and `load_routing` share.

Each rule is written once, with one message, so an operator reads the same sentence whether
the admin or the loader refused a change. Nothing here imports the models at run time (they
import these validators); a rule that needs the database asks the row it is given.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Protocol
from urllib.parse import SplitResult, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator

# Providers, rules and agents are named with these: safe in URLs, YAML keys and log lines.
SLUG_RE = r"^[a-z0-9][a-z0-9_.:-]*$"
slug_validator = RegexValidator(SLUG_RE, "Use lowercase letters, digits and _ . : - only.")

CAPABILITY_MESSAGE = "A capability is a lowercase word like code_generation."
capability_validator = RegexValidator(r"^[a-z][a-z0-9_]*$", CAPABILITY_MESSAGE)


def validate_capabilities(value: object) -> None:
    """A list of capability names, none twice (providers', models' and rules' JSON lists)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Capabilities must be a list of names.", code="not_a_list")
    for item in value:
        try:
            capability_validator(item)
        except ValidationError:
            # The item is named: a list is edited as one line of text, and one word of it is wrong.
            # (Not code "invalid": a JSONField would put its own "Value must be valid JSON." in its place.)
            raise ValidationError(f"{item!r}: {CAPABILITY_MESSAGE}", code="invalid_capability") from None
    repeated = sorted({item for item in value if value.count(item) > 1})
    if repeated:
        raise ValidationError(f"Listed more than once: {', '.join(repeated)}.", code="repeated")


def provider_priority_check(*, priorities: Mapping[str, int]) -> None:
    """Each provider its own priority (1 is tried first), counting every provider, enabled or not.

    The database allows a tie, so that the admin can swap two priorities row by row; a tie left
    standing would be broken by name, which nobody chose. One error per clash; its `params`
    name the priority and the providers, for callers that mark each one.
    """
    holders: dict[int, list[str]] = defaultdict(list)
    for name, priority in priorities.items():
        holders[priority].append(name)
    clashes = [
        ValidationError(
            "Priority %(priority)s is given to more than one provider: %(names)s.",
            code="duplicate_priority",
            params={"priority": priority, "names": ", ".join(sorted(names)), "providers": sorted(names)},
        )
        for priority, names in sorted(holders.items())
        if len(names) > 1
    ]
    if clashes:
        raise ValidationError(clashes)


def default_model_check(*, default_model: str, model_names: Collection[str]) -> None:
    """A provider's default model is one of its models: calls that name no model go there."""
    if default_model and default_model not in model_names:
        offered = ", ".join(sorted(model_names)) or "none yet"
        raise ValidationError(
            f"The default model {default_model!r} must be one of this provider's models ({offered}): "
            "add it, or choose another default model.",
            code="default_model_missing",
        )


PRICE_IN_USE_MESSAGE = (
    "Calls were already charged at this price, so it cannot change: "
    "add a new price with a later 'effective from' instead."
)


class PriceTerms(Protocol):
    """What the price rule asks of a price (routing.models.Price, which imports this module)."""

    pk: int | None

    def terms_changed(self) -> bool: ...

    def is_charged(self) -> bool: ...


def price_change_check(*, price: PriceTerms) -> None:
    """A price some call was charged at cannot change: that would rewrite what was billed."""
    if price.pk is not None and price.terms_changed() and price.is_charged():
        raise ValidationError(PRICE_IN_USE_MESSAGE, code="price_in_use")


def rule_provider_check(*, allow_cloud: bool, provider_name: str, provider_is_local: bool) -> None:
    """A rule that allows no cloud keeps its requests local, so it cannot list a cloud provider."""
    if not allow_cloud and not provider_is_local:
        raise ValidationError(
            f"{provider_name} is a cloud provider, but this rule allows no cloud: remove the provider or allow cloud.",
            code="cloud_provider_in_local_rule",
        )


def alias_name_check(*, name: str, models: Collection[str]) -> None:
    """An alias and a concrete model never share a name: a request naming it could not say which it
    means. `models` are the clashing models as `provider/name` (empty: no clash)."""
    if models:
        raise ValidationError(
            f"{name!r} is the name of both an alias and a model ({', '.join(sorted(models))}): an alias may not "
            "have a concrete model's name, or a request naming it could not say which it means. "
            "Rename the alias (or the model).",
            code="alias_is_a_model",
        )


# -- provider keys and endpoints -------------------------------------------------------------
# A provider names the environment variable holding its key and the URL the key is sent to: both
# are checked when saved (model clean: admin, loader) and again at call time, for rows stored before
# these rules or under other settings.

KEY_VARIABLES_SETTING = "SWITCHYARD_API_KEY_ENV_ALLOWED"
PROVIDER_HOSTS_SETTING = "SWITCHYARD_ALLOWED_PROVIDER_HOSTS"


def api_key_env_allowed(name: str) -> bool:
    """Whether the operator lets providers read a key from this variable (a name or glob pattern matches)."""
    return any(fnmatchcase(name, pattern) for pattern in settings.SWITCHYARD_API_KEY_ENV_ALLOWED)


def _allowed_key_variables() -> str:
    return f"{KEY_VARIABLES_SETTING} allows {', '.join(settings.SWITCHYARD_API_KEY_ENV_ALLOWED) or 'none'}"


def api_key_env_refusal(name: str) -> str:
    """Why a provider may not read this variable ("" when it may), for call-time reasons and statuses."""
    if not name or api_key_env_allowed(name):
        return ""
    return f"{name} is not an allowed API key variable ({_allowed_key_variables()})"


def api_key_env_check(*, name: str) -> None:
    """A provider's key comes only from a variable the operator allowed, never SECRET_KEY or DATABASE_URL.

    The message leaves the name out: what was typed there may be a key pasted by mistake (the
    field's own validator refuses text that is no variable name)."""
    if name and not api_key_env_allowed(name):
        raise ValidationError(
            f"Not an allowed API key variable: {_allowed_key_variables()}.", code="api_key_env_not_allowed"
        )


@dataclass(frozen=True)
class _AllowedHost:
    """One entry of the allow-list: a host name, or an address or network; with or without a port."""

    name: str | None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    port: int | None

    def admits_name(self, host: str, port: int) -> bool:
        return self.name == host and self.port in (None, port)

    def admits_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        return self.network is not None and address in self.network and self.port in (None, port)


def _allowed_host(entry: str) -> _AllowedHost | None:
    """`mac-mini.local`, `localhost:11434`, `10.0.0.0/8`, `192.168.1.5:11434`, `[fd00::1]:8080`; None if unreadable."""
    entry = entry.strip().lower()
    if "://" in entry:  # a URL, as OLLAMA_HOST is written
        parts = urlsplit(entry)
        if not parts.hostname:
            return None
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return _allowed_host(f"{host}:{_port(parts)}")
    host, port = entry, None
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    if port is not None and not port.isdigit():
        return None
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        return _AllowedHost(host, None, int(port) if port else None) if host else None
    return _AllowedHost(None, network, int(port) if port else None)


def _allowed_hosts() -> tuple[_AllowedHost, ...]:
    return _parse_allowed_hosts((settings.OLLAMA_HOST, *settings.SWITCHYARD_ALLOWED_PROVIDER_HOSTS))


@functools.lru_cache(maxsize=16)  # asked before every request: parse the settings once, not per call
def _parse_allowed_hosts(entries: tuple[str, ...]) -> tuple[_AllowedHost, ...]:
    return tuple(allowed for entry in entries if (allowed := _allowed_host(entry)) is not None)


def _port(parts: SplitResult) -> int:
    try:
        port = parts.port
    except ValueError:
        port = None
    return port or (443 if parts.scheme == "https" else 80)


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """What the host resolves to now; [] when it does not resolve (the call fails on its own then)."""
    try:
        found = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return []
        # An IPv6 zone (fe80::1%eth0) is cut off: the address is judged, not the interface.
        found = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
    # An IPv4 address written inside IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address it is.
    return [getattr(address, "ipv4_mapped", None) or address for address in found]


def _internal_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """What kind of non-public address this is ("" for a public one)."""
    if address.is_unspecified:
        return "an unspecified"
    if address.is_loopback:
        return "a loopback"
    if address.is_link_local:
        return "a link-local (cloud metadata)" if str(address) == "169.254.169.254" else "a link-local"
    if address.is_multicast:
        return "a multicast"
    if address.is_private:
        return "a private"
    if not address.is_global:
        return "a non-public"
    return ""


def provider_endpoint_refusal(url: str) -> str:
    """Why a provider's URL may not be called ("" when it may): its host resolves to an internal
    address (loopback, private, link-local, unspecified, multicast) that the operator did not allow.

    Names the address, never the URL: a URL from `${VAR}` may hold more than the operator shows.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""  # not a URL: the URL's own validation says so
    host = (parts.hostname or "").lower()
    if not host:
        return ""
    port = _port(parts)
    allowed = _allowed_hosts()
    if any(entry.admits_name(host, port) for entry in allowed):
        return ""
    for address in _addresses(host, port):
        kind = _internal_kind(address)
        if kind and not any(entry.admits_address(address, port) for entry in allowed):
            return (
                f"the host resolves to {address}, {kind} address: providers on internal addresses are refused "
                f"unless their host is listed in {PROVIDER_HOSTS_SETTING}"
            )
    return ""


def provider_endpoint_check(*, base_url: str) -> None:
    """A provider's base URL may not lead to an internal address the operator did not allow."""
    if refusal := provider_endpoint_refusal(base_url):
        raise ValidationError(f"Refused: {refusal}.", code="internal_address")
