"""The egress allow-list: `network: {allow: [api.openai.com, "*.anthropic.com"]}` on a plan (and
more hosts for one step on its own `network`).

With it the sandbox has no network of its own; its one way out is a proxy autodev runs beside
it (`blocks/sandbox/egress.py`), which lets a connection through only to a host the list allows,
resolving the name anew for each connection. This module is the pure part: what an entry may
say, whether a host and port are allowed, which hosts each step may reach (the plan's list, the
step's own, and the hosts of its agent's model configuration), and a refused connection.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST = rf"(\*\.)?{_LABEL}(\.{_LABEL})*"
_ENTRY = re.compile(rf"^(?P<host>{_HOST}|\[[0-9A-Fa-f:.]+\])(:(?P<port>[0-9]{{1,5}}))?$")
PLAN_WIDE = "(sandbox)"  # the rules' key for what every process in the sandbox may reach


def check_entry(entry: str) -> str:
    """An allow-list entry as written (a host name, `*.` and a domain, or an IP address, each
    with an optional `:port`; an address of this machine's loopback with its port), lower-cased;
    ValueError naming the entry and what to write otherwise."""
    found = _ENTRY.match(entry.strip())
    port = found.group("port") if found else None
    if found is None or (port is not None and not 0 < int(port) < 65536):
        raise ValueError(
            f"network allow-list entry {entry!r} is not a host name: write a host (api.openai.com), a domain's "
            "hosts (*.anthropic.com) or an address (127.0.0.1:8080), each with an optional :port; no scheme, no path"
        )
    host = found.group("host").lower()
    if host == "localhost":
        raise ValueError(f"network allow-list entry {entry!r}: localhost is the sandbox's own (never proxied); "
                         "a server on this machine is 127.0.0.1:PORT")  # fmt: skip
    if host.startswith("*.") and host.count(".") < 2:
        raise ValueError(f"network allow-list entry {entry!r} allows a whole top-level domain: name the domain (*.example.com)")
    if port is None and (_is_loopback(host.strip("[]"))):
        raise ValueError(f"network allow-list entry {entry!r} would open every service of this machine: give its port (127.0.0.1:8080)")
    return entry.strip().lower()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def private_to_this_machine(address: str) -> bool:
    """An address a name must not lead to (the host's loopback, link-local such as a cloud's
    metadata service): only an entry naming the address itself reaches it."""
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified


class Egress(BaseModel):
    """`network: {allow: [...]}`: the hosts the sandbox may reach, through autodev's proxy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[str] = Field(default_factory=list, description="Hosts (api.openai.com, *.anthropic.com, 127.0.0.1:8080).")

    @field_validator("allow")
    @classmethod
    def _hosts(cls, entries: list[str]) -> list[str]:
        return list(dict.fromkeys(check_entry(e) for e in entries))


NetworkMode = bool | str  # false, true, "host" or a Docker network's name


def network_mode(network: NetworkMode) -> NetworkMode:
    """A network as a plan, a setting or a flag writes it: true/false (or their words), none,
    host, or a Docker network's name; ValueError naming the choices for anything else."""
    if isinstance(network, bool):
        return network
    words = {"true": True, "yes": True, "false": False, "no": False, "none": False}
    if network.lower() in words:
        return words[network.lower()]
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", network):
        raise ValueError(f"{network!r}: use false, true, host or the name of a Docker network")
    return network


def egress(network: Any) -> Egress:
    """`{allow: [...]}` as a plan or a step writes it; ValueError naming the entry that is wrong."""
    try:
        return Egress.model_validate(network)
    except ValidationError as exc:
        raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None


def allowed(host: str, port: int, entries: list[str]) -> bool:
    """Whether a connection to host:port is on the list (`*.example.com`: the hosts under it)."""
    host = host.lower().strip("[]").rstrip(".")
    for entry in entries:
        found = _ENTRY.match(entry)
        if found is None:
            continue
        name, want = found.group("host").strip("[]"), found.group("port")
        if want and int(want) != port:
            continue
        if name == host or (name.startswith("*.") and host.endswith(name[1:])):
            return True
    return False


def url_host(url: str) -> str | None:
    """`host:port` of a URL (a model's base URL), or None when it is none."""
    try:
        parts = urlsplit(url.strip().strip("'\""))
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port or (443 if parts.scheme == 'https' else 80)}"


class EgressRules(BaseModel):
    """What the proxy lets through: by step id, and PLAN_WIDE for any process of the sandbox."""

    hosts: dict[str, list[str]]

    def for_step(self, step_id: str | None) -> list[str]:
        return [*self.hosts.get(PLAN_WIDE, []), *self.hosts.get(step_id or "", [])]


class Refusal(BaseModel):
    """A connection the proxy refused: who asked (the step and attempt, when its proxy
    credentials said), where to, and when."""

    step_id: str | None = None
    attempt: int | None = None
    host: str
    port: int
    ts: datetime

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port in (80, 443) else f"{host}:{self.port}"


def refusal_summary(targets: list[str], who: str = "the step") -> str:
    """The advice's words for what a step (`who`: the agent, for an agent step) tried to reach."""
    return f"{who} tried to reach {', '.join(targets)}, which the allow-list refuses"
