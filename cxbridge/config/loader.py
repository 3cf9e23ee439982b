"""Loading ``cxbridge.toml``: TOML, environment overrides, secret references, validation in two steps.

1. The file is read with :mod:`tomllib`; ``CXBRIDGE_<SECTION>__<KEY>...`` environment variables override keys
   (pydantic-settings' ``env_nested_delimiter`` convention, e.g. ``CXBRIDGE_STORE__URL``,
   ``CXBRIDGE_SOURCES__SHOP__ENABLED=false``); JSON values (``'["email"]'``) are decoded.
2. Secret references -- a table that is exactly ``{ env = "VAR" }`` or ``{ file = "path" }`` -- are replaced
   by the value, anywhere in the document, and registered for redaction. A relative ``file`` is relative to
   the config file's folder (the workspace).
3. The framework's keys are validated by :class:`~cxbridge.config.models.Config`.
4. Each source's ``connection`` table is validated by its adapter's ``config_model``; each
   ``[plugins.<namespace>]`` by the model the plugin registered (absent tables get the defaults); write-back
   rules must name a configured source and a registered trait.
5. Relative SQLite URLs and relative ``Path`` settings are made absolute against the workspace, and the
   ``config_loaded`` hook is called.

Every failure is a :class:`~cxbridge.errors.ConfigError` whose ``key`` is the dotted path in the file.
"""

from __future__ import annotations

import copy
import json
import os
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr, ValidationError

from ..errors import ConfigError
from ..secrets import redact, registry
from .errors import ConfigValidationError, dotted, from_validation_error
from .models import Config

if TYPE_CHECKING:
    import pluggy

__all__ = ["DEFAULT_CONFIG_NAME", "config_from_dict", "env_overrides", "load_config", "resolve_sqlite_url"]

#: The file name ``cxbridge`` looks for in the current folder.
DEFAULT_CONFIG_NAME = "cxbridge.toml"
ENV_PREFIX = "CXBRIDGE_"
_SECTIONS = ("store", "identity", "sync", "sources", "plugins", "daemon")


def load_config(
    path: str | os.PathLike[str],
    *,
    pm: pluggy.PluginManager | None = None,
    env: Mapping[str, str] | None = None,
    call_hook: bool = True,
) -> Config:
    """Read, resolve and validate a ``cxbridge.toml``.

    :param path: the config file; its folder is the workspace.
    :param pm: the plugin manager whose adapters, settings and traits validate the file (default: a fresh
        :func:`cxbridge.plugins.get_plugin_manager`).
    :param env: environment for ``{ env = ... }`` references and ``CXBRIDGE_*`` overrides (default
        ``os.environ``).
    :param call_hook: call the ``config_loaded`` hook after validation.
    :raises ConfigError: naming the offending key.
    """
    file = Path(path).expanduser()
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {file} not found (create one with `cxbridge init`)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file} is not valid TOML: {redact(exc)}") from None
    config = config_from_dict(data, workspace=file.resolve().parent, pm=pm, env=env, call_hook=call_hook)
    config._path = file.resolve()
    return config


def config_from_dict(
    data: Mapping[str, Any],
    *,
    workspace: str | os.PathLike[str] | None = None,
    pm: pluggy.PluginManager | None = None,
    env: Mapping[str, str] | None = None,
    call_hook: bool = True,
) -> Config:
    """Validate an already-parsed config document (see :func:`load_config`).

    :param workspace: folder relative paths are resolved against (default: the current folder).
    """
    env = os.environ if env is None else env
    base = Path(workspace).resolve() if workspace is not None else Path.cwd()
    doc = _deep_merge(copy.deepcopy(dict(data)), env_overrides(env))
    secret_keys: dict[str, str] = {}
    doc = _resolve_refs(doc, (), env, base, secret_keys)

    try:
        config = Config.model_validate(doc)
    except ValidationError as exc:
        raise from_validation_error(exc, Config, secret_keys=secret_keys) from None
    config._workspace = base
    config.store.url = resolve_sqlite_url(config.store.url, base)

    if pm is None:
        from ..plugins import get_plugin_manager

        pm = get_plugin_manager()
    problems: list[tuple[str, str]] = []
    _check_identity(config, problems)
    _validate_sources(config, pm, base, secret_keys, problems)
    _validate_plugins(config, pm, base, secret_keys, problems)
    _validate_writeback(config, pm, problems)
    if problems:
        raise ConfigValidationError(problems)

    _register_secrets(config, secret_keys)
    if call_hook:
        pm.hook.config_loaded(config=config, settings=dict(config.plugins))
    return config


# ----------------------------------------------------------------------------------------------------------
# Environment overrides and secret references
# ----------------------------------------------------------------------------------------------------------


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """The nested table ``CXBRIDGE_<SECTION>__<KEY>__...`` variables describe (keys lowercased).

    Built with pydantic-settings' environment source, so the convention is exactly its
    ``env_prefix`` + ``env_nested_delimiter`` one.
    """
    if not any(k.upper().startswith(ENV_PREFIX) and "__" in k for k in env):
        return {}
    from ._envsource import read_env_overrides

    return _decode_json_leaves(read_env_overrides(env, ENV_PREFIX, _SECTIONS))


def _decode_json_leaves(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _decode_json_leaves(v) for k, v in value.items()}
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def _is_ref(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and next(iter(value)) in ("env", "file")
        and isinstance(next(iter(value.values())), str)
    )


def _resolve_refs(
    value: Any, loc: tuple[str | int, ...], env: Mapping[str, str], base: Path, found: dict[str, str]
) -> Any:
    if _is_ref(value):
        key = dotted(loc)
        secret = _resolve_one(key, value, env, base)
        registry.add(secret)
        found[key] = secret
        return secret
    if isinstance(value, dict):
        return {k: _resolve_refs(v, (*loc, k), env, base, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, (*loc, i), env, base, found) for i, v in enumerate(value)]
    return value


def _resolve_one(key: str, ref: Mapping[str, str], env: Mapping[str, str], base: Path) -> str:
    if "env" in ref:
        name = ref["env"]
        value = env.get(name)
        if value is None:
            raise ConfigError(
                f"environment variable {name} is not set (referenced as {{ env = {name!r} }})", key=key
            )
        if not value.strip():
            raise ConfigError(f"environment variable {name} is empty", key=key)
        return value
    path = Path(ref["file"]).expanduser()
    if not path.is_absolute():
        path = base / path
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"secret file {path} does not exist", key=key) from None
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}", key=key) from None
    if not value:
        raise ConfigError(f"secret file {path} is empty", key=key)
    return value


# ----------------------------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------------------------


def resolve_sqlite_url(url: str, base: str | os.PathLike[str]) -> str:
    """Make a relative SQLite URL absolute against ``base``; other URLs are returned unchanged."""
    if not url.startswith("sqlite"):
        return url
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return url
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:") or Path(database).is_absolute():
        return url
    absolute = (Path(base) / database).resolve()
    return parsed.set(database=str(absolute)).render_as_string(hide_password=False)


def _absolutize(model: BaseModel, base: Path) -> BaseModel:
    """Relative ``Path`` fields and SQLite URLs in a settings model, made absolute against the workspace."""
    updates: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path) and not value.expanduser().is_absolute():
            updates[name] = (base / value).resolve()
        elif isinstance(value, str) and value.startswith("sqlite"):
            resolved = resolve_sqlite_url(value, base)
            if resolved != value:
                updates[name] = resolved
        elif isinstance(value, SecretStr) and value.get_secret_value().startswith("sqlite"):
            resolved = resolve_sqlite_url(value.get_secret_value(), base)
            if resolved != value.get_secret_value():
                updates[name] = SecretStr(resolved)
    return model.model_copy(update=updates) if updates else model


# ----------------------------------------------------------------------------------------------------------
# Second-step validation
# ----------------------------------------------------------------------------------------------------------


def _check_identity(config: Config, problems: list[tuple[str, str]]) -> None:
    known = ", ".join(sorted(config.sources)) or "(none)"
    for i, name in enumerate(config.identity.source_priority):
        if name not in config.sources:
            problems.append(
                (f"identity.source_priority[{i}]", f"unknown source {name!r}; configured sources: {known}")
            )


def _validate_sources(
    config: Config,
    pm: pluggy.PluginManager,
    base: Path,
    secret_keys: Mapping[str, str],
    problems: list[tuple[str, str]],
) -> None:
    from ..plugins import collect_adapters

    adapters = collect_adapters(pm)
    for name, source in config.sources.items():
        info = adapters.get(source.adapter)
        if info is None:
            installed = ", ".join(sorted(adapters)) or "(none installed)"
            problems.append(
                (f"sources.{name}.adapter", f"unknown adapter {source.adapter!r}; installed adapters: {installed}")
            )
            continue
        prefix = f"sources.{name}.connection"
        table = source.connection
        if not isinstance(table, dict):
            problems.append((prefix, f"must be a table, got {type(table).__name__}"))
            continue
        try:
            model = info.config_model.model_validate(table)
        except ValidationError as exc:
            problems.extend(
                from_validation_error(exc, info.config_model, prefix=prefix, secret_keys=secret_keys).problems
            )
            continue
        source.connection = _absolutize(model, base)


def _validate_plugins(
    config: Config,
    pm: pluggy.PluginManager,
    base: Path,
    secret_keys: Mapping[str, str],
    problems: list[tuple[str, str]],
) -> None:
    from ..plugins import collect_settings

    models: dict[str, type[BaseModel]] = {ns: info.model for ns, info in collect_settings(pm).items()}
    known = ", ".join(sorted(models)) or "(no plugin registers settings)"
    validated: dict[str, Any] = {}
    for ns, table in config.plugins.items():
        prefix = f"plugins.{ns}"
        if ns not in models:
            problems.append((prefix, f"no installed plugin registers settings {ns!r}; known namespaces: {known}"))
            continue
        if not isinstance(table, dict):
            problems.append((prefix, f"must be a table, got {type(table).__name__}"))
            continue
        try:
            validated[ns] = _absolutize(models[ns].model_validate(table), base)
        except ValidationError as exc:
            problems.extend(
                from_validation_error(exc, models[ns], prefix=prefix, secret_keys=secret_keys).problems
            )
    for ns, model in models.items():
        if ns in validated or ns in config.plugins:
            continue
        try:
            validated[ns] = _absolutize(model.model_validate({}), base)
        except ValidationError as exc:
            problems.extend(from_validation_error(exc, model, prefix=f"plugins.{ns}").problems)
    config.plugins = validated


def _trait_names(traits: Any) -> set[str]:
    if isinstance(traits, Mapping):
        return set(traits)
    return {getattr(t, "name", t) for t in traits}


def _validate_writeback(config: Config, pm: pluggy.PluginManager, problems: list[tuple[str, str]]) -> None:
    if not config.writeback:
        return
    from ..plugins import collect_traits

    traits = _trait_names(collect_traits(pm))
    sources = ", ".join(sorted(config.sources)) or "(none)"
    for i, rule in enumerate(config.writeback):
        if rule.source not in config.sources:
            problems.append(
                (f"writeback[{i}].source", f"unknown source {rule.source!r}; configured sources: {sources}")
            )
        if rule.trait not in traits:
            same_ns = sorted(t for t in traits if t.split(".")[0] == rule.trait.split(".")[0])
            if same_ns:
                hint = f"; traits of that plugin: {', '.join(same_ns)}"
            elif traits:
                hint = f"; registered traits: {', '.join(sorted(traits)[:30])}"
            else:
                hint = "; no plugin registers traits"
            problems.append((f"writeback[{i}].trait", f"no installed plugin registers trait {rule.trait!r}{hint}"))


# ----------------------------------------------------------------------------------------------------------
# Secrets
# ----------------------------------------------------------------------------------------------------------


def _secret_values(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secret_values(getattr(value, name))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _secret_values(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _secret_values(item)


def _register_secrets(config: Config, secret_keys: Mapping[str, str]) -> None:
    values: list[str] = list(_secret_values(config))
    registry.update(values)
    registry.update(secret_keys.values())
    store_password = _url_password(config.store.url)
    if store_password:
        registry.add(store_password)
    for name, source in config.sources.items():
        own: list[str] = [v for k, v in secret_keys.items() if k.startswith(f"sources.{name}.")]
        own.extend(_secret_values(source.connection))
        for value in _walk_strings(source.connection):
            password = _url_password(value)
            if password:
                own.append(password)
        registry.update(own)
        config._source_secrets[name] = sorted(set(own))


def _walk_strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk_strings(getattr(value, name))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _walk_strings(item)


def _url_password(url: str) -> str | None:
    if "://" not in url or "@" not in url:
        return None
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None
