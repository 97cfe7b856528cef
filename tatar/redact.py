"""Credentials out of every text the pipeline keeps: error messages reach ``failures.jsonl`` (a DVC output pushed
to remotes), logs, metrics, lineage and Prefect artifacts, and a server may echo the request's headers in its
error body. ``redact`` removes authorization headers, bearer tokens, ``sk-...``-style keys, key-like query values,
URL user-info and any secret passed in explicitly (the key the client actually sent)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "[REDACTED]"
# Query parameters and header-like fields whose value is a credential.
SECRET_NAMES = r"(?:api[_-]?key|access[_-]?token|auth[_-]?token|token|secret|password|passwd|key|sig|signature)"
_PATTERNS: list[tuple[re.Pattern, str]] = [
    # "Authorization: Bearer x", "'authorization': 'Basic x'", "x-api-key: x", "api-key": "x" (header echoes)
    (re.compile(r"""(?i)((?:proxy-)?authorization|x-api-key|api-key|openai-api-key|x-goog-api-key)(["']?\s*[:=]\s*["']?)"""
                r"""(?:(?:bearer|basic|token)\s+)?[^\s"',;}]+"""), r"\1\2" + MASK),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + MASK),
    (re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_-]{6,}"), r"\1-" + MASK),
    (re.compile(r"(?i)([?&;]" + SECRET_NAMES + r"=)[^&\s\"'#]+"), r"\1" + MASK),
    (re.compile(r"(?i)\b(" + SECRET_NAMES + r"""["']?\s*[:=]\s*["']?)(?!\[REDACTED\])[^\s"',;&}]{6,}"""), r"\1" + MASK),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"']+@"), r"\1" + MASK + "@"),
]


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def url_credentials(url: str) -> str | None:
    """What in ``url`` is a credential ("user-info", "query parameter 'api_key'"), else None."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        return "user-info"
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if re.fullmatch(SECRET_NAMES, name, re.IGNORECASE):
            return f"query parameter {name!r}"
    return None


def public_url(url: str) -> str:
    """``url`` as it may be recorded: without user-info and with credential query values masked."""
    parts = urlsplit(url)
    if not parts.netloc:
        return redact(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    return redact(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))
