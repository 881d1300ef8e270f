"""Keeping secrets out of what autodev stores and sends.

Values of environment variables whose names say they are secret (TOKEN, SECRET, PASSWORD,
API_KEY, ...), from the orchestrator's environment and the step's `env`, plus passwords inside
URLs, are replaced by `***` in stored output, log files, live logs, events and notifications.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH", re.I)
URL_PASSWORD = re.compile(r"://[^:/@\s]+:([^@\s]+)@")
MIN_SECRET_LEN = 6  # shorter values would blank out ordinary words
MASK = "***"


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_LEN}, key=len, reverse=True)
        self._encoded = [(s.encode(), MASK.encode()) for s in self.secrets]

    @classmethod
    def from_env(cls, *envs: Mapping[str, str], known: Iterable[str] = ()) -> Redactor:
        """The secrets in these environments (by their names), and the `known` secret values."""
        found: list[str] = list(known)
        for env in envs:
            for name, value in env.items():
                if SECRET_NAME.search(name):
                    found.append(value)
                found.extend(URL_PASSWORD.findall(value))
        return cls(found)

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, MASK)
        return value

    def bytes(self, value: bytes) -> bytes:
        for secret, mask in self._encoded:
            value = value.replace(secret, mask)
        return value
