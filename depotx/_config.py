"""From flat dotted settings to a storage instance.

Settings come from ``.ini``/``.toml`` files and environment variables, so values
are often strings: they are converted to the type the backend's constructor
annotates. Backends are named by a short name, a dotted path, or filedepot's
own class path, so a filedepot config works unchanged.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union

from ._checksums import check_algorithm
from ._exceptions import ConfigurationError, MissingDependencyError
from .storages.base import FileStorage

__all__ = [
    "BACKENDS",
    "FILEDEPOT_BACKENDS",
    "build_storage",
    "convert_value",
    "options_under",
    "resolve_backend",
]

#: Short backend names, imported only when used (their extras may be missing).
BACKENDS: Mapping[str, str] = types.MappingProxyType(
    {
        "local": "depotx.storages.local:LocalFileStorage",
        "memory": "depotx.storages.memory:MemoryFileStorage",
        "mirror": "depotx.storages.mirror:MirrorStorage",
        "s3": "depotx.storages.s3:S3Storage",
        "gcs": "depotx.storages.gcs:GCSStorage",
        "azure": "depotx.storages.azure:AzureBlobStorage",
        "gridfs": "depotx.storages.gridfs:GridFSStorage",
    }
)

#: filedepot's class paths, mapped onto ours.
FILEDEPOT_BACKENDS: Mapping[str, str] = types.MappingProxyType(
    {
        "depot.io.local.LocalFileStorage": "local",
        "depot.io.memory.MemoryFileStorage": "memory",
        "depot.io.boto3.S3Storage": "s3",
        "depot.io.awss3.S3Storage": "s3",
        "depot.io.gridfs.GridFSStorage": "gridfs",
        "depot.io.gcs.GCSStorage": "gcs",
    }
)

#: Options every storage accepts, whatever its backend; set as attributes.
COMMON_OPTIONS: Mapping[str, Any] = types.MappingProxyType(
    {
        "inline_active_content": bool,
        "private": bool,
        "authorize": "callable",
        "checksum": "checksum",
    }
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def resolve_backend(backend: str | type[FileStorage]) -> type[FileStorage]:
    """The storage class for a short name, a dotted path or a filedepot class path."""
    if isinstance(backend, type):
        if not issubclass(backend, FileStorage):
            raise ConfigurationError(f"{backend!r} is not a FileStorage subclass")
        return backend
    name = FILEDEPOT_BACKENDS.get(backend, backend)
    target = BACKENDS.get(name, name)
    if ":" in target:
        module_name, _, attr = target.partition(":")
    elif "." in target:
        module_name, _, attr = target.rpartition(".")
    else:
        raise ConfigurationError(
            f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)} "
            "or a dotted path such as 'package.module.ClassName'"
        )
    try:
        module = importlib.import_module(module_name)
    except MissingDependencyError:
        raise
    except ImportError as exc:
        raise ConfigurationError(f"cannot import backend {backend!r}: {exc}") from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, FileStorage)):
        raise ConfigurationError(f"backend {backend!r} does not name a FileStorage subclass")
    return cls


def resolve_callable(value: Any) -> Any:
    """A callable given as itself or as a dotted path (``myapp.auth:can_read``)."""
    if callable(value):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a callable or a dotted path to one, got {value!r}")
    target = value.strip()
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"cannot import {target!r}: {exc}") from exc
    if not callable(found):
        # A ValueError like every other bad option value: reported as ConfigurationError.
        raise ValueError(f"{target!r} is not callable")  # noqa: TRY004
    return found


def options_under(config: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The keys of ``config`` that start with ``prefix``, with the prefix removed."""
    return {key[len(prefix) :]: value for key, value in config.items() if key.startswith(prefix)}


def _convert_scalar(value: str, target: Any) -> Any:
    if target is bool:
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected a boolean (true/false, yes/no, on/off, 1/0), got {value!r}")
    if target is int:
        return int(value.strip())
    if target is float:
        return float(value.strip())
    if target is Path:
        return Path(value)
    if target in (dict, list) or typing.get_origin(target) in (dict, list):
        parsed = json.loads(value)
        origin = typing.get_origin(target) or target
        if not isinstance(parsed, origin):
            raise ValueError(f"expected a JSON {origin.__name__}, got {value!r}")
        return parsed
    if typing.get_origin(target) is Literal:
        if value not in typing.get_args(target):
            choices = ", ".join(repr(arg) for arg in typing.get_args(target))
            raise ValueError(f"expected one of {choices}, got {value!r}")
        return value
    return value


def convert_value(value: Any, annotation: Any) -> Any:
    """Convert a string ``value`` to ``annotation``'s type; other values pass unchanged."""
    if not isinstance(value, str) or annotation is inspect.Parameter.empty:
        return value
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if type(None) in typing.get_args(annotation) and value.strip().lower() in {
            "",
            "none",
            "null",
        }:
            return None
        errors: list[str] = []
        # The typed members first: for ``bool | str`` "true" is a bool, and any
        # other text is the string.
        for member in members:
            if member is str:
                continue
            try:
                return _convert_scalar(value, member)
            except ValueError as exc:
                errors.append(str(exc))
        if str in members:
            return value
        raise ValueError("; ".join(errors))
    return _convert_scalar(value, annotation)


def _signature(cls: type[FileStorage]) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    signature = inspect.signature(cls.__init__)
    params = {
        name: param
        for name, param in signature.parameters.items()
        if name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
    }
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):
        hints = {}
    return params, hints, takes_any


def build_storage(options: Mapping[str, Any], *, label: str, prefix: str = "depot.") -> FileStorage:
    """Instantiate a storage from its options (``backend`` included, prefix removed).

    No I/O happens here: backends open connections lazily.
    """
    options = dict(options)
    backend = options.pop("backend", "local")
    cls = resolve_backend(backend)
    params, hints, takes_any = _signature(cls)
    common = {key: options.pop(key) for key in list(options) if key in COMMON_OPTIONS}
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if key not in params and not takes_any:
            valid = ", ".join(sorted({*params, *COMMON_OPTIONS, "backend"}))
            raise ConfigurationError(
                f"storage {label!r}: unknown option {prefix}{key} for backend {backend!r}; "
                f"valid options: {valid}"
            )
        annotation = hints.get(
            key, params[key].annotation if key in params else inspect.Parameter.empty
        )
        try:
            kwargs[key] = convert_value(value, annotation)
        except ValueError as exc:
            raise ConfigurationError(f"storage {label!r}: option {prefix}{key}: {exc}") from exc
    missing = [
        name
        for name, param in params.items()
        if param.default is param.empty and name not in kwargs
    ]
    if missing:
        raise ConfigurationError(
            f"storage {label!r}: backend {backend!r} needs "
            + ", ".join(f"{prefix}{name}" for name in missing)
        )
    try:
        storage = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"storage {label!r}: {exc}") from exc
    for key, value in common.items():
        try:
            if COMMON_OPTIONS[key] == "callable":
                converted = resolve_callable(value)
            elif COMMON_OPTIONS[key] == "checksum":
                storage.checksum_algorithm = check_algorithm(value)
                continue
            else:
                converted = convert_value(value, COMMON_OPTIONS[key])
        except ValueError as exc:
            raise ConfigurationError(f"storage {label!r}: option {prefix}{key}: {exc}") from exc
        setattr(storage, key, converted)
    storage.name = label
    return storage


#: Options a mistyped ``DEPOTX_<NAME>_<OPTION>`` (one underscore) most likely meant.
_COMMON_OPTIONS = (
    "backend",
    "storage_path",
    "bucket",
    "alias",
    "mongouri",
    "endpoint_url",
    "prefix",
    "policy",
    "access_key_id",
    "secret_access_key",
    "region_name",
)
#: Settings of the manager itself, not of one storage: ``DEPOTX_DEFAULT``, ...
MANAGER_KEYS = ("default", "mountpoint", "secret_key", "upload_staging")


def env_settings(environ: Mapping[str, str] | None, env_prefix: str, prefix: str) -> dict[str, str]:
    """Environment variables as dotted settings.

    ``DEPOTX_AVATARS__BACKEND=s3`` becomes ``{"depot.avatars.backend": "s3"}``, and
    ``DEPOTX_DEFAULT=avatars`` becomes ``{"depot.default": "avatars"}`` (also
    ``DEPOTX_MOUNTPOINT``). Only those shapes are settings: other ``DEPOTX_*``
    variables (a test suite's ``DEPOTX_SOMETHING_URI``) are left alone, except
    ``DEPOTX_AVATARS_BACKEND``-like ones, one underscore short of a setting,
    which raise an error naming the variable.
    """
    environ = os.environ if environ is None else environ
    settings: dict[str, str] = {}
    for key, value in environ.items():
        shaped = env_setting_key(key, env_prefix)
        if shaped is not None:
            settings[prefix + shaped] = value
            continue
        rest = key[len(env_prefix) :].lower() if key.upper().startswith(env_prefix.upper()) else ""
        for option in _COMMON_OPTIONS:
            if rest.endswith("_" + option) and len(rest) > len(option) + 1:
                name = key[len(env_prefix) : len(key) - len(option) - 1]
                raise ConfigurationError(
                    f"environment variable {key} is not a depotx setting: write "
                    f"{env_prefix}{name}__{key[len(key) - len(option) :]} (two underscores "
                    "between the storage name and the option)"
                )
    return settings


def env_setting_key(key: str, env_prefix: str = "DEPOTX_") -> str | None:
    """The dotted key (``avatars.backend``) a variable stands for; ``None``: no setting."""
    if not key.upper().startswith(env_prefix.upper()):
        return None
    rest = key[len(env_prefix) :].lower()
    if rest in MANAGER_KEYS:
        return rest
    name, sep, option = rest.partition("__")
    if not sep or not name or not option or "__" in option:
        return None
    return f"{name}.{option}"
