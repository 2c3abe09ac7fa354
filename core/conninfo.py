"""Connection strings of targets and channels: masking their secrets for display, scrubbing them out
of error messages, and bounding a PostgreSQL session's statements and locks.

Every app that shows a URL or an error about one (monitoring's targets and collectors, the
optimizer's sessions, alert channels) takes these from here.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

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
    """Only the scheme, host and port of a webhook URL: its path is the secret (Slack's is), its port is not
    (two receivers on one host differ by it)."""
    split = urlsplit(url)
    host = split.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    try:
        port = f":{split.port}" if split.port else ""
    except ValueError:  # not a number: the URL is refused when saved; mask what is there
        port = ""
    return f"{split.scheme}://{host}{port}/{MASK}"


# The password component of a URL (scheme://user:PASSWORD@) and of a libpq DSN (password=PASSWORD).
_URL_PASSWORD = re.compile(r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]*(?=@)", re.IGNORECASE)
_DSN_PASSWORD = re.compile(r"(?P<keep>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# A password also appearing on its own in a message is masked only when it is long enough not to be an
# ordinary word or part of one: with password "p", "postgresql" and "port" must stay as they are.
MIN_BARE_SECRET = 6


def scrub(message: str, url: str) -> str:
    """The message with the URL masked and every password *component* (in any URL or DSN it quotes)
    replaced; the password's own text elsewhere only as a whole token of at least MIN_BARE_SECRET characters."""
    try:
        masked = mask_url(url)
    except ValueError:  # a URL too broken to mask, e.g. a port that is not a number
        masked = "the configured URL"
    if url:
        message = message.replace(url, masked)
    message = _URL_PASSWORD.sub(lambda m: m["keep"] + MASK, message)
    message = _DSN_PASSWORD.sub(lambda m: m["keep"] + MASK, message)
    try:
        password = urlsplit(url).password if "://" in url else conninfo_to_dict(url).get("password")
    except (ValueError, psycopg.Error):
        password = None
    for secret in {password, unquote(password)} if password else ():
        if len(secret) >= MIN_BARE_SECRET:
            message = re.sub(rf"(?<![\w%]){re.escape(secret)}(?![\w%])", MASK, message)
    return message


def bounded_conninfo(
    url: str, *, statement_timeout_ms: int, lock_timeout_ms: int, application_name: str, extra_options: str = ""
) -> dict:
    """Connection parameters of a PostgreSQL url with statement and lock timeouts set for the whole session.

    Settings in the URL's own options are kept; ours come last, so they win.
    """
    params = conninfo_to_dict(url)
    options = " ".join(
        part
        for part in (
            params.get("options"),
            f"-c statement_timeout={statement_timeout_ms} -c lock_timeout={lock_timeout_ms}",
            extra_options,
        )
        if part
    )
    params.update(options=options, application_name=application_name)
    return params
