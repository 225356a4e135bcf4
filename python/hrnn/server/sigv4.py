"""Optional SigV4 verification: requests must be signed by one of the configured access keys.

The AWS SDKs sign every request with Signature Version 4 (``Authorization: AWS4-HMAC-SHA256
Credential=KEY/DATE/REGION/SERVICE/aws4_request, SignedHeaders=..., Signature=...``). By default the
server accepts any signature (the SDKs need *some* credentials, dummy ones do). With credentials
configured, it recomputes the signature with the key's secret, as the service did, and refuses a
request that is unsigned, signed by an unknown key, signed wrongly, or dated more than 15 minutes
away from the server's clock — with the service's error codes, so the SDKs raise their usual
``ClientError``. Any region and service name in the credential scope are accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from calendar import timegm
from collections.abc import Mapping
from urllib.parse import quote

__all__ = ["SignatureError", "verify_sigv4"]

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
    r"SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})\s*$"
)
_MAX_SKEW_SECONDS = 15 * 60
_INVALID = "InvalidSignatureException"
_UNRECOGNIZED = "UnrecognizedClientException"


class SignatureError(Exception):
    """A request that fails verification; ``code`` is the service's error code (HTTP 403)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def verify_sigv4(
    credentials: Mapping[str, str],
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
) -> str:
    """Checks a request's SigV4 signature; returns the access key that signed it.

    Args:
        credentials: access key id → secret access key.
        method: the HTTP method.
        path: the request path as sent (percent-encoded).
        query: the query string as sent (without ``?``).
        headers: the request's headers, names lower-cased.
        body: the request body.
        now: the server's time (Unix seconds; default: the clock).

    Raises:
        SignatureError: ``MissingAuthenticationTokenException`` (no signature),
            ``UnrecognizedClientException`` (unknown key), ``InvalidSignatureException`` (wrong
            signature, or a date too far from the server's clock).
    """
    header = headers.get("authorization")
    if not header:
        raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTHORIZATION.match(header)
    if match is None:
        raise SignatureError(_INVALID, "Authorization: not an AWS4-HMAC-SHA256 signature")
    key, day, region, service, signed, signature = match.groups()
    secret = credentials.get(key)
    if secret is None:
        raise SignatureError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise SignatureError(
            "InvalidSignatureException", f"X-Amz-Date: expected YYYYMMDDTHHMMSSZ, found {amz_date!r}"
        ) from None
    if abs((time.time() if now is None else now) - signed_at) > _MAX_SKEW_SECONDS or not amz_date.startswith(
        day
    ):
        raise SignatureError(
            "InvalidSignatureException",
            "Signature expired: X-Amz-Date is more than 15 minutes from the server's time",
        )
    names = signed.split(";")
    if "host" not in names or any(name not in headers for name in names):
        raise SignatureError(
            "InvalidSignatureException", "SignedHeaders: must include host, and only headers sent"
        )
    payload_hash = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    canonical = "\n".join(
        [
            method,
            quote(path, safe="/~%"),
            _canonical_query(query),
            "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in names),
            signed,
            payload_hash,
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signing_key = f"AWS4{secret}".encode()
    for part in (day, region, service, "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureError(
            _INVALID,
            "The request signature we calculated does not match the signature you provided.",
        )
    return key


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        name, _, value = part.partition("=")
        pairs.append((quote(name, safe="-_.~%"), quote(value, safe="-_.~%")))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))
