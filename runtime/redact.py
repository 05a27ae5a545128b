"""Camera credentials masked wherever a source is shown: `rtsp://admin:***@10.0.0.5/stream1`.

A camera URL often carries its password (`rtsp://user:pass@host/...`) or a token in its query (`?token=...`).
The runtime names a source in JSON lines, events (MQTT, `/api/cameras`), summaries, warnings and error lines; all
of them use `mask_url(spec)`, and only the capture opener gets the real URL. Masking keeps what an operator needs
to tell cameras apart (scheme, user, host, port, path) and replaces only the secret values with `***`.
"""

from __future__ import annotations

import re

MASK = "***"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.DOTALL)
# Query parameters whose value is a secret: password, pass, passwd, pwd, token, access_token, key, api_key,
# stream_key, secret, auth, sig, signature, credential(s) (AWS-style X-Amz-Credential / X-Amz-Signature too).
_SECRET_PARAM = re.compile(r"pass|pwd|token|key|secret|auth|sig|credential", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def _split_userinfo(rest: str) -> tuple[str, str] | None:
    """(userinfo, the rest after its '@'), or None when the URL has no credentials.

    The userinfo ends at the last '@' of the authority (as FFmpeg reads it). A password with an unencoded '/', '?'
    or '#' cuts the authority short and leaves a non-numeric "port" (`admin:pa/ss@host`): then everything up to the
    last '@' is taken as the userinfo, so such a password is masked too."""
    end = len(rest)
    for sep in "/?#":
        i = rest.find(sep)
        if i != -1:
            end = min(end, i)
    authority = rest[:end]
    at = authority.rfind("@")
    if at != -1:
        return rest[:at], rest[at + 1 :]
    host, colon, port = authority.rpartition(":")
    if colon and host and not host.endswith("]") and not port.isdigit() and "@" in rest[end:]:
        at = rest.rfind("@")
        return rest[:at], rest[at + 1 :]
    return None


def _mask_query(query: str) -> str:
    """`a=1&password=x` -> `a=1&password=***` (also `;`-separated parameters)."""
    parts = re.split(r"([&;])", query)
    out = []
    for part in parts:
        name, eq, _value = part.partition("=")
        out.append(f"{name}={MASK}" if eq and _SECRET_PARAM.search(name) else part)
    return "".join(out)


def mask_url(spec: str) -> str:
    """The source spec as it may be shown: a URL's password and secret query values replaced by `***`.

    Anything that is not a URL (a file, a folder, a camera index) comes back unchanged."""
    spec = str(spec)
    m = _SCHEME.match(spec)
    if m is None:
        return spec
    scheme, rest = m.groups()
    split = _split_userinfo(rest)
    if split is not None:
        userinfo, rest = split
        user, colon, _password = userinfo.partition(":")
        rest = f"{user}:{MASK}@{rest}" if colon else f"{userinfo}@{rest}"
    head, q, tail = rest.partition("?")
    if q:
        query, hash_, fragment = tail.partition("#")
        rest = f"{head}?{_mask_query(query)}{hash_}{fragment}"
    return scheme + rest


def mask_text(text: str) -> str:
    """Free text (an error message, an exception from a backend) with every URL in it masked."""
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), str(text))
