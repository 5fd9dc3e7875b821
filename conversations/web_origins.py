"""Web origins as an assistant lists them (`Assistant.allowed_origins`) and as browsers send them (`Origin`).

An entry is `scheme://host[:port]` (http or https; the default port left out, lower case), `*` for any origin, or
`https://*.shop.example` for any subdomain of shop.example (not shop.example itself). Entries are normalized when
saved (and again when matched), so matching is exact: no substring, no prefix.
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class BadOrigin(ValueError):
    pass


def origin_normalize(value: object, *, wildcard: bool = False) -> str:
    """`value` as `scheme://host[:port]`, or BadOrigin saying why it is not an origin. `wildcard` admits `*` and a
    leading `*.` label."""
    if not isinstance(value, str) or not value.strip():
        raise BadOrigin("must be a non-empty text such as https://shop.example")
    text = value.strip()
    if wildcard and text == "*":
        return text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise BadOrigin(f"{text!r} is not an origin ({exc})") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in DEFAULT_PORTS:
        raise BadOrigin(f"{text!r} needs http:// or https:// (an origin is scheme://host[:port])")
    if not host or "@" in parts.netloc:
        raise BadOrigin(f"{text!r} has no host, or has credentials in it")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BadOrigin(f"{text!r} has a path: an origin is scheme://host[:port] only")
    labels = host.split(".")
    if any(not label for label in labels) or ("*" in host and not (wildcard and host.startswith("*.") and "*" not in host[2:])):
        raise BadOrigin(f"{text!r} has a malformed host" + (" (a wildcard is only allowed as the first label, *.)" if "*" in host else ""))
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}"


def origins_normalize(value: object) -> list[str]:
    """An assistant's whole list, normalized and without duplicates, or BadOrigin naming the entry."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadOrigin('must be a list of origins, e.g. ["https://shop.example"]')
    out: list[str] = []
    for index, entry in enumerate(value):
        try:
            origin = origin_normalize(entry, wildcard=True)
        except BadOrigin as exc:
            raise BadOrigin(f"entry {index + 1}: {exc}") from None
        if origin not in out:
            out.append(origin)
    return out


def origin_allowed(origin: str, allowed: object) -> bool:
    """Whether a browser's `Origin` matches one of the `allowed` entries, exactly or as a subdomain of a `*.` entry.
    Entries are normalized again here, so one saved before they were checked still matches as meant; an entry that is
    not an origin, or anything but a list, allows nothing."""
    if not isinstance(allowed, list) or not allowed:
        return False
    try:
        origin = origin_normalize(origin)
    except BadOrigin:
        return False
    scheme, _, host = origin.partition("://")
    for entry in allowed:
        try:
            entry = origin_normalize(entry, wildcard=True)
        except BadOrigin:
            continue
        if entry in ("*", origin):
            return True
        if entry.startswith(f"{scheme}://*."):
            suffix = entry[len(scheme) + 4:]  # ".shop.example[:port]"
            if host.endswith(suffix) and len(host) > len(suffix):
                return True
    return False
