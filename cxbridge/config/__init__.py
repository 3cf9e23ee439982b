"""Configuration: the models of ``cxbridge.toml`` and the loader (see :mod:`cxbridge.config.loader`)."""

from __future__ import annotations

from .errors import ConfigValidationError
from .loader import DEFAULT_CONFIG_NAME, config_from_dict, env_overrides, load_config, resolve_sqlite_url
from .models import (
    Config,
    DaemonConfig,
    IdentityConfig,
    SourceConfig,
    StoreConfig,
    StreamConfig,
    SyncConfig,
    WritebackRule,
)

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "Config",
    "ConfigValidationError",
    "DaemonConfig",
    "IdentityConfig",
    "SourceConfig",
    "StoreConfig",
    "StreamConfig",
    "SyncConfig",
    "WritebackRule",
    "config_from_dict",
    "env_overrides",
    "load_config",
    "resolve_sqlite_url",
]
