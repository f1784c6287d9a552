"""Signed, expiring URLs: a canonical form of the signed fields and HMAC-SHA256 over it.

Pure and free of depotx imports, so the rules are tested on their own and
anything that signs (file URLs today, upload tickets next) shares them:

- **Canonical form**: a version tag, then every field as ``name=value`` with
  both lengths spelled out, in a fixed order. No field can bleed into another
  (``a`` + ``bc`` never signs like ``ab`` + ``c``), and an absent override
  signs differently from an empty one.
- **Secrets**: several may be given; the first signs, any verifies, so a key is
  rotated by putting the new one first and dropping the old one once the URLs
  it signed have expired. They are held by :class:`SigningKeys`, whose repr
  never shows them.
- **Comparison** in constant time (:func:`hmac.compare_digest`), against each key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple
from urllib.parse import parse_qsl, quote, urlencode

__all__ = [
    "FILE_URL",
    "UPLOAD_TOKEN",
    "BadSignature",
    "SignedQuery",
    "SigningKeys",
    "canonical",
    "check_file_query",
    "parse_secrets",
    "read_token",
    "sign_file_query",
    "sign_token",
]

_VERSION = b"depotx-signed-v1"


def canonical(purpose: str, fields: Mapping[str, str]) -> bytes:
    """The bytes that are signed: the purpose and every field, unambiguously.

    ``<version>\n<n>:<purpose>\n<n>:<name><n>:<value>\n...``, names sorted, every
    length in UTF-8 bytes. On every signed request: built in one pass.
    """
    parts = [_VERSION, _length_prefixed(purpose)]
    parts.extend(_field(name, fields[name]) for name in sorted(fields))
    return b"\n".join(parts)


def _length_prefixed(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return b"%d:%b" % (len(data), data)


def _field(name: str, value: str) -> bytes:
    """One field of the canonical form: ``<n>:<name><n>:<value>``."""
    return _length_prefixed(name) + _length_prefixed(value)


def parse_secrets(value: str | bytes | Iterable[str | bytes]) -> list[bytes]:
    """Secrets from configuration: one, a list, or a comma-separated string (newest first)."""
    if isinstance(value, (str, bytes)):
        items: list[str | bytes] = (
            [part.strip() for part in value.split(",")] if isinstance(value, str) else [value]
        )
    else:
        items = list(value)
    secrets = [item.encode() if isinstance(item, str) else bytes(item) for item in items]
    secrets = [secret for secret in secrets if secret]
    if not secrets:
        raise ValueError("no signing secret given")
    for secret in secrets:
        if len(secret) < 16:
            raise ValueError("a signing secret must be at least 16 bytes long")
    return secrets


class SigningKeys:
    """The secrets that sign and verify; never shown in reprs, logs or errors."""

    __slots__ = ("_keys", "_verified")

    def __init__(self, secrets: Sequence[bytes]) -> None:
        if not secrets:
            raise ValueError("no signing secret given")
        # Each key's HMAC with the key already absorbed: a signature copies it and
        # hashes the message only (a third cheaper, on every signed request).
        self._keys = tuple(hmac.new(secret, digestmod=hashlib.sha256) for secret in secrets)
        #: Signed file queries these keys verified, by (storage, file id, query string):
        #: the same URL asked again (an image on a busy page, a video's ranges) is a
        #: lookup, not an HMAC. Only what verified is kept; expiry is checked every time.
        self._verified: dict[tuple[str, str, str], SignedQuery] = {}

    def sign(self, purpose: str, fields: Mapping[str, str]) -> str:
        """The signature of ``fields`` with the newest key, URL-safe base64 without padding."""
        return _encode(_mac(self._keys[0], canonical(purpose, fields)))

    def verify(self, purpose: str, fields: Mapping[str, str], signature: str) -> bool:
        """Whether ``signature`` signs ``fields`` under any of the keys (constant time each)."""
        return self.verify_message(canonical(purpose, fields), signature)

    def verify_message(self, message: bytes, signature: str) -> bool:
        """Whether ``signature`` signs the canonical ``message`` under any of the keys.

        The signature is compared in its one spelling (URL-safe base64, no padding),
        in constant time, against each key's: another spelling of the same bytes
        never passes.
        """
        if not signature.isascii():
            return False
        given = signature.encode("ascii")
        found = False
        for key in self._keys:  # every key is tried, so timing says nothing about which
            found |= hmac.compare_digest(_encode(_mac(key, message)).encode("ascii"), given)
        return found

    def __repr__(self) -> str:
        return f"<SigningKeys: {len(self._keys)} secret(s), hidden>"


def _mac(key: hmac.HMAC, message: bytes) -> bytes:
    mac = key.copy()
    mac.update(message)
    return mac.digest()


def _encode(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# -- signed file URLs ------------------------------------------------------------------

#: What a file URL's signature is for: a signature for anything else never passes.
FILE_URL = "file-url"
_FILE_URL_HEAD = _VERSION + b"\n" + _length_prefixed(FILE_URL)
#: The query parameters of a signed file URL.
EXPIRES, DOWNLOAD, FILENAME, SIGNATURE = "expires", "download", "filename", "sig"


class SignedQuery(NamedTuple):
    """What a valid signature grants: until when, and the response overrides it carries."""

    expires: int
    download: bool
    filename: str | None


#: How many verified signed URLs :class:`SigningKeys` remembers (about 1 MiB).
_VERIFIED_LIMIT = 4096
#: The parameters a signed file URL may carry; any other is ignored (and not signed).
_SIGNED_PARAMETERS = frozenset({EXPIRES, DOWNLOAD, FILENAME, SIGNATURE})


def _query_pairs(query_string: str) -> list[tuple[str, str]]:
    """``parse_qsl(query_string, keep_blank_values=True)``, without its cost when nothing
    is escaped (a signature is URL-safe base64, an expiry digits)."""
    if "%" in query_string or "+" in query_string:
        return parse_qsl(query_string, keep_blank_values=True)
    return [pair.partition("=")[::2] for pair in query_string.split("&") if pair]


def _file_message(
    storage: str, file_id: str, expires: str, download: bool, filename: str | None
) -> bytes:
    """``canonical(FILE_URL, _file_fields(...))``, spelled out: it is built on every
    signed request (tests check the two agree)."""
    fields = (
        ("disposition", "attachment" if download else ""),
        ("expires", expires),
        ("file_id", file_id),
        ("filename", "" if filename is None else "+" + filename),
        ("storage", storage),
    )
    return b"\n".join([_FILE_URL_HEAD, *(_field(name, value) for name, value in fields)])


def _file_fields(
    storage: str, file_id: str, expires: int, download: bool, filename: str | None
) -> dict[str, str]:
    return {
        "storage": storage,
        "file_id": file_id,
        "expires": str(expires),
        "disposition": "attachment" if download else "",
        # "+name" when given: an absent filename never signs like an empty one.
        "filename": "" if filename is None else "+" + filename,
    }


def sign_file_query(
    keys: SigningKeys,
    storage: str,
    file_id: str,
    *,
    expires: int,
    download: bool = False,
    filename: str | None = None,
) -> str:
    """The query string of a signed URL for ``storage/file_id``, valid until ``expires``."""
    params = [(EXPIRES, str(expires))]
    if download:
        params.append((DOWNLOAD, "1"))
    if filename is not None:
        params.append((FILENAME, filename))
    fields = _file_fields(storage, file_id, expires, download, filename)
    params.append((SIGNATURE, keys.sign(FILE_URL, fields)))
    return urlencode(params, quote_via=quote)


class BadSignature(Exception):
    """A signed URL that does not verify, or has expired; the message says which."""


def check_file_query(
    keys: SigningKeys | None, storage: str, file_id: str, query_string: str, now: float
) -> SignedQuery | None:
    """Check the signature in ``query_string``; ``None`` if the request carries none.

    Raises :class:`BadSignature` for a malformed, tampered or expired one. Every
    field is checked in one canonical spelling: ``expires`` as plain digits,
    ``download`` as ``1``, each parameter once.
    """
    if not query_string:
        return None  # the hot path of public files: nothing to parse
    if keys is not None:
        seen = keys._verified.get((storage, file_id, query_string))
        if seen is not None:
            if now >= seen.expires:
                raise BadSignature("expired")
            return seen
    values: dict[str, str] = {}
    for name, value in _query_pairs(query_string):
        if name in _SIGNED_PARAMETERS:
            if name in values:
                raise BadSignature(f"{name} given twice")
            values[name] = value
    if SIGNATURE not in values:
        if len(values):
            raise BadSignature("signed parameters without a signature")
        return None
    if keys is None:
        raise BadSignature("no signing key is configured")
    expires_text = values.get(EXPIRES, "")
    if (
        not expires_text.isdigit()
        or not expires_text.isascii()
        or expires_text != str(int(expires_text))
    ):
        raise BadSignature("malformed expiry")
    download_text = values.get(DOWNLOAD)
    if download_text not in (None, "1"):
        raise BadSignature("malformed download flag")
    expires = int(expires_text)
    download = download_text == "1"
    filename = values.get(FILENAME)
    message = _file_message(storage, file_id, expires_text, download, filename)
    if not keys.verify_message(message, values[SIGNATURE]):
        raise BadSignature("signature does not match")
    if now >= expires:  # checked after the signature: an expired forgery is still a forgery
        raise BadSignature("expired")
    granted = SignedQuery(expires, download, filename)
    verified = keys._verified
    if len(verified) >= _VERIFIED_LIMIT:
        del verified[next(iter(verified))]  # the oldest first
    verified[(storage, file_id, query_string)] = granted
    return granted


# -- upload tokens -----------------------------------------------------------------------

#: What an upload token's signature is for.
UPLOAD_TOKEN = "upload-token"


def sign_token(keys: SigningKeys, purpose: str, payload: Mapping[str, object]) -> str:
    """``<payload>.<signature>``: the JSON payload in URL-safe base64, then its HMAC.

    The payload's exact bytes are what is signed and what is read back, so there
    is one spelling of every token: nothing can be re-encoded into a valid one.
    """
    body = _encode(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    return f"{body}.{keys.sign(purpose, {'payload': body})}"


def read_token(
    keys: SigningKeys | None, purpose: str, token: object, now: float
) -> dict[str, object]:
    """The payload of a token :func:`sign_token` made, checked; :class:`BadSignature` if not.

    A payload's ``expires`` (Unix seconds) is checked after the signature, so an
    expired forgery is reported as a forgery.
    """
    if keys is None:
        raise BadSignature("no signing key is configured")
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 16384:
        raise BadSignature("malformed token")
    body, signature = token.split(".")
    if not keys.verify(purpose, {"payload": body}, signature):
        raise BadSignature("signature does not match")
    try:
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError as exc:  # signed by us, so only a bug gets here
        raise BadSignature("unreadable payload") from exc
    if not isinstance(payload, dict):
        raise BadSignature("unreadable payload")
    expires = payload.get("expires")
    if not isinstance(expires, int) or now >= expires:
        raise BadSignature("expired")
    return payload
