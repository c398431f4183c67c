"""Secrets out of text: configured credentials, and anything shaped like one, removed before text is kept or shown."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    from fluxroute.settings import Settings

REDACTED = "[redacted]"
# the halves of an `id:secret` key are redacted on their own too (a provider may echo only one, or a URL
# may carry the key percent-encoded); halves shorter than this are not, so text stays readable
MIN_PART = 6

_CREDENTIAL_CHARS = r"[\w.~+/=:-]"
_VALUE = rf"(?:\[redacted\]|{_CREDENTIAL_CHARS}+)"
# `Authorization: Key ...`, `"authorization": "Bearer ..."`, `authorization=...`: the whole value goes
_AUTHORIZATION = re.compile(r"""(?i)(\b(?:proxy-)?authorization\b["']?\s*[:=]\s*["']?)(?:[a-z]+\s+)?""" + _VALUE)
_SCHEMES = frozenset({"bearer", "key", "basic", "token"})
# `Key abc:123`, `Bearer eyJ0...`, `token=a1b2...`, `api_key: ...`: only values that look generated (a digit
# or a colon in them), so that prose such as "key configured" or "Bearer token missing" stays as it is
_KEYED = re.compile(
    r"(?i)\b((?:api[_-]?)?key|token|secret|password|bearer|basic)(\s+|\s*[=:]\s*)"
    rf"(?={_CREDENTIAL_CHARS}*[\d:]){_CREDENTIAL_CHARS}{{8,}}"
)


def secret_values(*secrets: SecretStr | str | None) -> tuple[str, ...]:
    """Every form of `secrets` that text may carry: each value, its `:`-separated parts, and their
    percent-encodings; longest first, so a whole key is replaced before its halves."""
    found: set[str] = set()
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if not value:
            continue
        forms = {value} | {part for part in value.split(":") if len(part) >= MIN_PART}
        found |= forms | {quote(form, safe="") for form in forms}
    return tuple(sorted(found, key=len, reverse=True))


def url_password(url: str) -> str | None:
    """The password a URL such as postgresql://user:password@host/db carries, decoded; None without one."""
    try:
        password = urlsplit(url).password if "://" in url else None
    except ValueError:
        return None
    return unquote(password) if password else None


def settings_secrets(settings: Settings) -> tuple[str, ...]:
    """`secret_values` of every SecretStr field of `settings` (provider keys, the server token, the database URL,
    any added later), and of the password inside a secret URL on its own (a driver may name it without the URL)."""
    values = [getattr(settings, name) for name in type(settings).model_fields]
    secrets = [value.get_secret_value() for value in values if isinstance(value, SecretStr)]
    passwords = [password for secret in secrets if (password := url_password(secret))]
    return secret_values(*secrets, *passwords)


def header_secrets(headers: Mapping[str, str]) -> tuple[str, ...]:
    """`secret_values` of the credential in an Authorization header (`Key id:secret`, `Bearer token`): what a
    provider may echo back is exactly what was sent to it."""
    words = next((v for k, v in headers.items() if k.lower() == "authorization"), "").split()
    if len(words) == 1 and words[0].lower() not in _SCHEMES:  # a bare credential, no scheme
        return secret_values(words[0])
    return secret_values(*words[1:])  # nothing when no key is configured ("Bearer ")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with each of `secrets` (see `secret_values`) and anything shaped like a credential replaced by
    `[redacted]`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _AUTHORIZATION.sub(lambda m: m[1] + REDACTED, text)
    return _KEYED.sub(lambda m: m[1] + m[2] + REDACTED, text)
