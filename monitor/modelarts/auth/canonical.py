"""The canonical request of ``SDK-HMAC-SHA256``: the official SDK's rules for what is signed.

Pure functions, moved here unchanged from ``aksk.py`` (which re-exports the public ones), so the
signer there keeps to keys, dates and ``httpx`` and this stays one screen of the SDK's quirks:
the path decoded before it is encoded again, query pairs sorted before encoding, header names
lower-cased and values stripped, and ``X-Sdk-Content-Sha256`` standing in for a body's hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, quote, unquote

__all__ = ["canonical_query", "canonical_request"]

_CONTENT_SHA256 = "x-sdk-content-sha256"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _encode(s: str) -> str:
    return quote(s, safe="~")


def _canonical_uri(path: str) -> str:
    # Like the SDK: decode the (possibly percent-encoded) path first, so "%41" and "A" sign alike
    # and "%2F" signs as a segment separator, then encode every segment again.
    uri = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def _query_pairs(query: str | Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(query, str):
        # Form decoding: "+" is a space, as httpx encodes a space in ``params=``.
        return parse_qsl(query, keep_blank_values=True)
    return list(query)


def canonical_query(query: str | Sequence[tuple[str, str]]) -> str:
    """Canonical query string: decoded pairs sorted (key, then value), each encoded as ``k=v``.

    ``query`` is either the raw query string of a URL or already-decoded ``(key, value)`` pairs.
    Like the SDK, pairs are sorted *before* encoding, and a repeated key yields one ``k=v`` per
    value. The result is also a valid query string, which :class:`AkSkAuth` sends as is.
    """
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(_query_pairs(query)))


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def canonical_request(
    method: str,
    path: str,
    query: str | Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
) -> tuple[str, str]:
    """Return ``(canonical request, signed headers)`` exactly as the official SDK builds them.

    ``path`` may be percent-encoded or not (it is decoded before being encoded again); ``query``
    is a raw query string or decoded pairs (see :func:`canonical_query`). Every header whose name
    has no ``_`` is signed, under its lower-cased name, with its value stripped. The payload hash
    is SHA-256 of ``body``, except that for a non-empty body an ``X-Sdk-Content-Sha256`` header
    (e.g. ``UNSIGNED-PAYLOAD``) is used verbatim instead, as the SDK and the gateway do.
    """
    lower = {name: str(value).strip() for name, value in _lower_headers(headers).items()}
    names = sorted(name for name in lower if "_" not in name)
    signed_headers = ";".join(names)
    canonical_headers = "\n".join(f"{name}:{lower[name]}" for name in names) + "\n"
    payload_hash = _EMPTY_SHA256
    if body:
        payload_hash = lower.get(_CONTENT_SHA256) or hashlib.sha256(body).hexdigest()
    text = "\n".join(
        (
            method.upper(),
            _canonical_uri(path),
            canonical_query(query),
            canonical_headers,
            signed_headers,
            payload_hash,
        )
    )
    return text, signed_headers
