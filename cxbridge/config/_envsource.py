"""``CXBRIDGE_*`` environment overrides read with pydantic-settings' own environment source.

Kept in its own module so pydantic-settings is only imported when such a variable is set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import create_model
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

__all__ = ["read_env_overrides"]


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of ``os.environ``.

    ``DotEnvSettingsSource`` extends the same source the same way (by overriding ``_load_env_vars``).
    """

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._mapping = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._mapping.items()}


def read_env_overrides(env: Mapping[str, str], prefix: str, sections: Sequence[str]) -> dict[str, Any]:
    """The nested overrides ``<prefix><SECTION>__<KEY>__...`` variables in ``env`` describe."""
    fields: dict[str, Any] = {name: (dict[str, Any], {}) for name in sections}
    settings_cls = create_model(  # type: ignore[call-overload]
        "CxbridgeEnvOverrides",
        __base__=BaseSettings,
        **fields,
    )
    settings_cls.model_config = SettingsConfigDict(
        env_prefix=prefix, env_nested_delimiter="__", case_sensitive=False, extra="ignore"
    )
    values = _MappingEnvSource(settings_cls, env)()
    return {k: v for k, v in values.items() if v}
