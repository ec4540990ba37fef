"""A config as it is shown: values of secret-looking keys, URI credentials and named secrets as ***."""

from __future__ import annotations

import re
from typing import Any, Mapping


REDACTED = "***"
# A key is a secret's when one of its words contains one of these (`spark.hadoop.fs.s3a.secret.key`,
# `db_passwd`, `sas_token`)...
_SECRET_PARTS = ("password", "passwd", "token", "secret", "credential")
# ...or is one of these words (`api_key`, `fs.azure.account.key.<account>...`, an Azure SAS `sig=`): "key" only as
# a whole word, so `keyspace` or `monkey` stay visible.
_SECRET_WORDS = frozenset({"key", "apikey", "accesskey", "pwd", "sas", "sig"})
# Azure's abfs(s)/wasb(s) name a container before the @ (`container@account.dfs.core.windows.net`), not a user.
_CONTAINER_SCHEMES = frozenset({"abfs", "abfss", "wasb", "wasbs"})
# scheme://userinfo@ — greedy up to the last @ of the authority, so a password holding an unescaped @ is
# hidden whole.
_URI_USERINFO = re.compile(r"\b(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<userinfo>[^/?#\s]+)@")
# name=value in a query string (`?password=`), a JDBC URL (`;password=`) or Java options (`-Dx.keyPassword=`).
_NAMED_VALUE = re.compile(r"(?P<lead>(?:^|[?&;\s])(?:-D)?)(?P<name>[A-Za-z][A-Za-z0-9_.-]*)=(?P<value>[^&;#\s]*)")


def is_secret_key(name: str) -> bool:
    """Whether a config key's value is a secret, by the words of its name (`apiKey`, `fs.s3a.secret.key`)."""
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    return any(w in _SECRET_WORDS or any(part in w for part in _SECRET_PARTS) for w in words)


def redacted(values: Any) -> Any:
    """Plain config values (`Config.to_dict()`) as they may be shown: the value of every secret-looking key
    (`is_secret_key`), and the credentials inside any URI or `name=value` text, replaced by `***`. For
    display only: the Config itself keeps the real values, which Spark and MLflow need."""
    if isinstance(values, Mapping):
        return {key: REDACTED if is_secret_key(str(key)) and value not in (None, "") else redacted(value)
                for key, value in values.items()}
    if isinstance(values, (list, tuple)):
        return [redacted(v) for v in values]
    if isinstance(values, str):
        return _redacted_text(values)
    return values


def _redacted_text(text: str) -> str:
    def userinfo(match: re.Match[str]) -> str:
        if match["scheme"].lower() in _CONTAINER_SCHEMES:
            return match[0]
        return f"{match['scheme']}://{REDACTED}@"

    def named(match: re.Match[str]) -> str:
        if not is_secret_key(match["name"]) or not match["value"]:
            return match[0]
        return f"{match['lead']}{match['name']}={REDACTED}"

    return _NAMED_VALUE.sub(named, _URI_USERINFO.sub(userinfo, text))


def _to_plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _to_plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_to_plain(v) for v in node]
    return node
