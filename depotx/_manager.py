"""The registry of named storages: configuration, default, aliases, file paths.

``DepotManager`` is the one process-wide instance, as in filedepot; tests and
multi-tenant apps make their own ``StorageManager()`` so nothing leaks between them.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ._config import build_storage, env_settings, options_under
from ._exceptions import ConfigurationError, StorageNotFoundError
from ._files import StoredFile
from ._ids import split_path
from ._signing import SigningKeys, parse_secrets, sign_file_query
from .storages.base import FileStorage

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from .middleware import DepotMiddleware

__all__ = ["DEFAULT_MOUNTPOINT", "DepotManager", "StorageManager"]

logger = logging.getLogger("depotx")

DEFAULT_MOUNTPOINT = "/depot"


def url_quote(file_id: str) -> str:
    """``file_id`` for a URL path: each segment percent-encoded, the ``/`` between kept.

    Every valid key round-trips through an HTTP client: spaces, ``%``, ``?``,
    ``#``, ``+`` and non-ASCII are escaped; generated ids come out unchanged.
    """
    return "/".join(quote(segment, safe="") for segment in file_id.split("/"))


_MOUNTPOINT_KEY = "mountpoint"
_SECRET_KEY = "secret_key"
_UPLOAD_STAGING_KEY = "upload_staging"
_ALIAS_OPTION = "alias"
_DEFAULT_KEY = "default"


class StorageManager:
    """Named storages, a default one, and aliases that can be re-pointed.

    Configuration is synchronous and does no I/O, so it can run at import time;
    backends connect on first use. Close with ``await manager.aclose()`` (or
    ``async with manager:``) when the app shuts down.
    """

    def __init__(
        self,
        *,
        mountpoint: str = DEFAULT_MOUNTPOINT,
        secret_key: str | bytes | Sequence[str | bytes] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storages: dict[str, FileStorage] = {}
        self._aliases: dict[str, str] = {}
        self._default: str | None = None
        self._mountpoint = DEFAULT_MOUNTPOINT
        self._keys: SigningKeys | None = None
        self._upload_staging: FileStorage | str | None = None
        self._default_upload_staging: FileStorage | None = None
        #: The time signed URLs are made and checked against (injectable for tests).
        self.clock = clock
        self.set_mountpoint(mountpoint)
        if secret_key is not None:
            self.set_secret_key(secret_key)

    # -- configuration -----------------------------------------------------------

    @staticmethod
    def from_config(config: Mapping[str, Any], prefix: str = "depot.") -> FileStorage:
        """Build a storage from ``config`` without registering it (filedepot's ``from_config``)."""
        return build_storage(options_under(config, prefix), label="<unnamed>", prefix=prefix)

    def configure(
        self, name: str, config: Mapping[str, Any], prefix: str = "depot."
    ) -> FileStorage:
        """Create the storage ``name`` from the ``<prefix>*`` keys of ``config``.

        Other keys are ignored, so a whole settings dict can be passed. The first
        storage configured becomes the default.
        """
        self._check_new_name(name)  # before building: a taken name is the clearer error
        storage = build_storage(options_under(config, prefix), label=name, prefix=prefix)
        return self._add(name, storage)

    def register(self, name: str, storage: FileStorage) -> FileStorage:
        """Register a storage you built yourself under ``name``.

        For storages that need objects no config file can hold (an existing
        database client, a custom subclass with collaborators). Same rules as
        :meth:`configure`: the name must be new, and the first storage is the default.
        """
        if not isinstance(storage, FileStorage):
            raise TypeError(f"expected a FileStorage, got {type(storage).__name__}")
        self._check_new_name(name)
        if storage.name is None:
            storage.name = name
        return self._add(name, storage)

    def set_secret_key(self, secret_key: str | bytes | Sequence[str | bytes]) -> None:
        """Set the secret(s) that sign URLs: the first signs, every one verifies.

        Rotate by putting a new secret first and keeping the old one until the URLs
        it signed have expired. A comma-separated string gives several. Secrets
        are at least 16 bytes; they are never shown in reprs or errors.
        """
        try:
            self._keys = SigningKeys(parse_secrets(secret_key))
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"secret_key: {exc}") from None

    @property
    def signing_keys(self) -> SigningKeys | None:
        """The keys that sign and verify URLs; ``None`` until a secret is set."""
        return self._keys

    def _add(self, name: str, storage: FileStorage) -> FileStorage:
        if storage.private and self._keys is None:
            raise ConfigurationError(
                f"storage {name!r} is private, so its URLs are signed: set a secret first "
                "(depot.secret_key in the same settings, DEPOTX_SECRET_KEY, or "
                "StorageManager(secret_key=...))"
            )
        storage._bind(self.get)
        storage._manager = self
        self._storages[name] = storage
        if self._default is None:  # the first storage is the default
            self._default = name
        return storage

    def _check_new_name(self, name: str) -> None:
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigurationError(f"invalid storage name {name!r}: a non-empty name without '/'")
        if name in self._storages:
            raise ConfigurationError(f"storage {name!r} is already configured")
        if name in self._aliases:
            raise ConfigurationError(
                f"{name!r} is already an alias; storage names and aliases must differ"
            )

    def configure_many(
        self, settings: Mapping[str, Any], prefix: str = "depot."
    ) -> dict[str, FileStorage]:
        """Configure several storages from one flat dict.

        ``depot.<name>.<option>`` keys configure storage ``<name>``;
        ``depot.<alias>.alias = <name>`` makes an alias; ``depot.default = <name>``
        picks the default (else the first storage in the settings is the default,
        unless this manager already had one); ``depot.mountpoint = /media`` sets
        where the middleware serves files, ``depot.secret_key`` the secret(s) that
        sign URLs (comma-separated, newest first). Keys outside ``prefix`` are ignored.
        """
        groups: dict[str, dict[str, Any]] = {}
        default: str | None = None
        options = options_under(settings, prefix)
        # The manager's own settings first: a private storage needs the secret.
        if _SECRET_KEY in options:
            self.set_secret_key(options.pop(_SECRET_KEY))
        if _MOUNTPOINT_KEY in options:
            self.set_mountpoint(str(options.pop(_MOUNTPOINT_KEY)))
        if _UPLOAD_STAGING_KEY in options:
            self.set_upload_staging(str(options.pop(_UPLOAD_STAGING_KEY)))
        for key, value in options.items():
            if key == _DEFAULT_KEY:
                default = str(value)
                continue
            name, dot, option = key.partition(".")
            if not dot or not name or not option:
                raise ConfigurationError(
                    f"setting {prefix}{key} names no storage: write {prefix}<name>.{key}, "
                    f"or use configure(name, settings) for a single storage"
                )
            groups.setdefault(name, {})[option] = value
        configured: dict[str, FileStorage] = {}
        aliases: dict[str, str] = {}
        # Storages made of others (mirrors) come after the storages they name.
        ordered = sorted(groups.items(), key=lambda item: item[1].get("backend") == "mirror")
        for name, options in ordered:
            if _ALIAS_OPTION in options:
                if len(options) > 1:
                    extra = ", ".join(f"{prefix}{name}.{k}" for k in options if k != _ALIAS_OPTION)
                    raise ConfigurationError(f"alias {name!r} takes no other options: {extra}")
                aliases[name] = str(options[_ALIAS_OPTION])
                continue
            # The storage's own prefix, so errors name the full key the user wrote.
            own_prefix = f"{prefix}{name}."
            configured[name] = self.configure(
                name, {f"{own_prefix}{k}": v for k, v in options.items()}, prefix=own_prefix
            )
        for alias, target in aliases.items():
            self.alias(alias, target)
        if default is not None:
            self.set_default(default)
        return configured

    def configure_from_env(
        self,
        environ: Mapping[str, str] | None = None,
        env_prefix: str = "DEPOTX_",
    ) -> dict[str, FileStorage]:
        """Configure storages from environment variables.

        ``DEPOTX_AVATARS__BACKEND=s3`` is ``depot.avatars.backend = s3``;
        ``DEPOTX_DEFAULT=avatars`` picks the default. Names and options are lowercased.
        """
        return self.configure_many(env_settings(environ, env_prefix, "depot."), prefix="depot.")

    # -- lookup --------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """The configured storage names, in configuration order (aliases excluded)."""
        return list(self._storages)

    def resolve_alias(self, name: str) -> str:
        """The storage name behind ``name`` (itself when it is a storage name)."""
        if name in self._storages:
            return name
        target = self._aliases.get(name)
        if target is None or target not in self._storages:
            raise StorageNotFoundError(name, [*self._storages, *self._aliases])
        return target

    def get(self, name: str | None = None) -> FileStorage:
        """The storage (or alias) ``name``; the default storage when omitted."""
        if name is None:
            name = self.get_default()
        return self._storages[self.resolve_alias(name)]

    def get_default(self) -> str:
        if self._default is None:
            raise StorageNotFoundError("<default>", [])
        return self._default

    def set_default(self, name: str) -> None:
        """Make ``name`` (a storage or alias, resolved now) the default storage."""
        self._default = self.resolve_alias(name)

    def alias(self, alias: str, name: str) -> None:
        """Point ``alias`` at storage ``name``; calling it again re-points it.

        Files stored through an alias are recorded under the storage's real name,
        so re-pointing the alias later keeps the old files readable.
        """
        if alias in self._storages:
            raise ConfigurationError(f"alias {alias!r} would shadow the storage of the same name")
        if not isinstance(alias, str) or not alias or "/" in alias:
            raise ConfigurationError(f"invalid alias {alias!r}: a non-empty name without '/'")
        if name not in self._storages:
            raise StorageNotFoundError(name, list(self._storages))
        self._aliases[alias] = name

    # -- files -----------------------------------------------------------------------

    async def get_file(self, path: str) -> StoredFile:
        """Open the file at ``"<storage>/<fileid>"``."""
        storage_name, file_id = split_path(path)
        return await self.get(storage_name).get(file_id)

    def url_for(
        self,
        path: str,
        *,
        expires_in: float | timedelta | None = None,
        download: bool = False,
        filename: str | None = None,
    ) -> str:
        """The URL of the file at ``"<storage>/<fileid>"``, without I/O.

        Without ``expires_in``: the storage's public URL where it has one, else the
        middleware's route. With it (seconds or a ``timedelta``): a URL under the
        mountpoint, signed (HMAC-SHA256 over the storage, the id, the expiry and
        the overrides) and valid that long; ``download=True`` serves it as an
        attachment, ``filename`` under another name. A private storage's files
        only have signed URLs. The real storage name is used, never an alias, so
        re-pointing the alias later does not break URLs already handed out.
        """
        storage_name, file_id = split_path(path)
        storage_name = self.resolve_alias(storage_name)
        storage = self._storages[storage_name]
        route = f"{self._mountpoint}/{storage_name}/{url_quote(file_id)}"
        if expires_in is None:
            if download or filename is not None:
                raise ConfigurationError(
                    "download and filename are signed overrides: pass expires_in as well"
                )
            if storage.private:
                raise ConfigurationError(
                    f"storage {storage_name!r} is private: its URLs are signed and expire; "
                    "pass expires_in (seconds or a timedelta)"
                )
            public = storage.public_url(file_id)  # validated by split_path and the storage
            if public:
                return public
            return route
        seconds = (
            expires_in.total_seconds() if isinstance(expires_in, timedelta) else float(expires_in)
        )
        if not seconds > 0:
            raise ConfigurationError(f"expires_in must be positive, not {expires_in!r}")
        if self._keys is None:
            raise ConfigurationError(
                "signed URLs need a secret: depot.secret_key, DEPOTX_SECRET_KEY or "
                "StorageManager(secret_key=...)"
            )
        if filename is not None and not isinstance(filename, str):
            raise TypeError(f"filename must be a str, not {type(filename).__name__}")
        expires = math.ceil(self.clock() + seconds)
        query = sign_file_query(
            self._keys, storage_name, file_id, expires=expires, download=download, filename=filename
        )
        return f"{route}?{query}"

    @property
    def mountpoint(self) -> str:
        return self._mountpoint

    # -- direct uploads --------------------------------------------------------------

    def set_upload_staging(self, storage: FileStorage | str) -> None:
        """Where direct uploads to storages that cannot presign wait to be finalized.

        A storage, or the name of one of this manager's (``depot.upload_staging``).
        The default is local storage in ``$XDG_CACHE_HOME/depotx/uploads``; several
        app servers need a shared one. Its contents are never listed as files.
        """
        if not isinstance(storage, (FileStorage, str)):
            raise ConfigurationError("upload_staging is a storage or a storage name")
        self._upload_staging = storage

    @property
    def upload_staging(self) -> FileStorage:
        """The storage direct uploads are staged in (see :meth:`set_upload_staging`)."""
        if isinstance(self._upload_staging, FileStorage):
            return self._upload_staging
        if isinstance(self._upload_staging, str):
            return self.get(self._upload_staging)
        if self._default_upload_staging is None:
            from .storages.local import LocalFileStorage
            from .uploads._staging import default_staging_path

            self._default_upload_staging = LocalFileStorage(default_staging_path("uploads"))
            self._default_upload_staging.name = "upload-staging"
        return self._default_upload_staging

    @property
    def has_upload_staging(self) -> bool:
        """Whether an upload staging storage is set, or the default one exists on disk."""
        if self._upload_staging is not None or self._default_upload_staging is not None:
            return True
        from .uploads._staging import default_staging_path

        return os.path.isdir(default_staging_path("uploads"))

    async def finalize_upload(self, token: str) -> str:
        """Finalize a direct upload in the storage its token names; return its path.

        ``"<storage>/<fileid>"``, for the database and :meth:`get_file`. The
        storage's :meth:`~depotx.FileStorage.finalize_upload` does the work.
        """
        from .uploads._direct import read_grant

        grant = read_grant(self, token)
        storage = self.get(grant.storage)
        return f"{grant.storage}/{await storage.finalize_upload(token)}"

    def set_mountpoint(self, mountpoint: str) -> None:
        """Set where the middleware serves files (and ``url_for`` points).

        A setting of the manager, given at configuration (``StorageManager(mountpoint=...)``,
        ``depot.mountpoint``) or here; a middleware reads it and never changes it.
        """
        if not isinstance(mountpoint, str) or not mountpoint.startswith("/"):
            raise ConfigurationError(f"mountpoint must be an absolute path, got {mountpoint!r}")
        self._mountpoint = mountpoint.rstrip("/") or ""
        if not self._mountpoint:
            raise ConfigurationError("mountpoint cannot be '/': files need a prefix of their own")

    def make_middleware(self, app: ASGIApp, **options: Any) -> DepotMiddleware:
        """Wrap ``app`` in the middleware that serves this manager's files.

        A ``mountpoint`` option sets the manager's mountpoint first (filedepot's
        ``make_middleware(app, mountpoint=...)``), so ``url_for`` agrees at once.
        """
        from .middleware import DepotMiddleware

        if "mountpoint" in options:
            self.set_mountpoint(options.pop("mountpoint"))
        return DepotMiddleware(app, manager=self, **options)

    # -- lifecycle -----------------------------------------------------------------

    def clear(self) -> None:
        """Forget every storage, alias and the default (for tests; does not close clients)."""
        self._storages.clear()
        self._aliases.clear()
        self._default = None
        self._mountpoint = DEFAULT_MOUNTPOINT
        self._upload_staging = None

    async def aclose(self) -> None:
        """Close every storage's clients; the storages stay configured."""
        first_error: Exception | None = None
        for name, storage in self._storages.items():
            try:
                await storage.aclose()
            except Exception as exc:  # close the others first, then raise the first failure
                logger.warning("closing storage %r failed", name, exc_info=exc)
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    async def __aenter__(self) -> StorageManager:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<StorageManager storages={self.names!r} default={self._default!r}>"


#: The process-wide manager, as filedepot's ``DepotManager``.
DepotManager = StorageManager()
