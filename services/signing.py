"""HMAC-SHA256 signatures of control commands. Pure.

A signed command carries ``"sig": "<64 hex digits>"``, the HMAC of its canonical
encoding: the command object without ``sig``, as compact JSON with sorted keys (orjson,
UTF-8, no spaces), prefixed with a domain tag so that a signature made for something
else never passes for a command. Every field is covered, including any a later version
adds; a JSON round trip gives the same bytes, so the signer and the verifier agree
without sharing the original text.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from services.security import Secret

DOMAIN = b"fraud-console control command\n"
SIGNATURE = "sig"


def canonical(body: Mapping[str, Any]) -> bytes:
    return DOMAIN + orjson.dumps({k: v for k, v in body.items() if k != SIGNATURE},
                                 option=orjson.OPT_SORT_KEYS)


def signature(body: Mapping[str, Any], secret: Secret) -> str:
    return hmac.new(secret.reveal().encode(), canonical(body), hashlib.sha256).hexdigest()


def signed(body: Mapping[str, Any], secret: Secret) -> dict[str, Any]:
    """``body`` with its signature."""
    return {**body, SIGNATURE: signature(body, secret)}


def problem(body: Mapping[str, Any], secret: Secret) -> str | None:
    """Why ``body`` is not signed with ``secret``, or None when it is (constant time)."""
    given = body.get(SIGNATURE)
    if given is None:
        return "unsigned command (this service requires signed commands)"
    if not isinstance(given, str):
        return "bad signature"
    try:
        expected = signature(body, secret)
    except orjson.JSONEncodeError:  # a body orjson reads but cannot write back
        return "bad signature"
    # compare_digest takes ASCII str only: anything else is wrong anyway.
    if not given.isascii() or not hmac.compare_digest(given.lower(), expected):
        return "bad signature"
    return None
