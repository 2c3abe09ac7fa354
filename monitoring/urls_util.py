"""Helpers for target and channel URLs: masking their secrets for display."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MASK = "••••••"


def mask_url(url: str) -> str:
    """The URL with any password replaced, for display. Also handles libpq key=value DSNs."""
    if "://" not in url:
        parts = []
        for item in url.split():
            key, sep, _value = item.partition("=")
            parts.append(f"{key}={MASK}" if sep and key.lower() == "password" else item)
        return " ".join(parts)
    split = urlsplit(url)
    if split.password is None:
        return url
    # Rebuild from the raw netloc rather than .port, which raises on a malformed port.
    credentials, _, host_port = split.netloc.rpartition("@")
    user = credentials.split(":", 1)[0]
    return urlunsplit((split.scheme, f"{user}:{MASK}@{host_port}", split.path, split.query, split.fragment))


def mask_webhook_url(url: str) -> str:
    """Only the scheme and host of a webhook URL: its path is the secret (Slack's is)."""
    split = urlsplit(url)
    return f"{split.scheme}://{split.hostname or ''}/{MASK}"
