"""StorageManager: configuration, defaults, aliases, file paths, settings and env parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

import depotx
from depotx import (
    ConfigurationError,
    DepotManager,
    FileStorage,
    InvalidFileIdError,
    LocalFileStorage,
    MemoryFileStorage,
    MissingDependencyError,
    StorageManager,
    StorageNotFoundError,
    StoredFileNotFoundError,
)
from depotx.storages.memory import MemoryFileStorage as MemoryByPath


class TunableStorage(MemoryFileStorage):
    """A backend with typed options, to check string conversion from .ini/env files."""

    def __init__(
        self,
        *,
        retries: int = 1,
        ratio: float = 0.5,
        enabled: bool = False,
        label: str | None = None,
        limit: int | None = None,
        headers: dict[str, str] | None = None,
        root: Path | None = None,
    ) -> None:
        super().__init__()
        self.retries, self.ratio, self.enabled = retries, ratio, enabled
        self.label, self.limit, self.headers, self.root = label, limit, headers, root


def test_depot_manager_is_the_global_storage_manager() -> None:
    assert isinstance(DepotManager, StorageManager)
    assert depotx.DepotManager is DepotManager


def test_managers_are_independent(manager: StorageManager) -> None:
    other = StorageManager()
    manager.configure("a", {"depot.backend": "memory"})
    assert manager.names == ["a"]
    assert other.names == []
    with pytest.raises(StorageNotFoundError):
        other.get("a")


def test_configure_local_by_default(manager: StorageManager, tmp_path: Path) -> None:
    storage = manager.configure("files", {"depot.storage_path": str(tmp_path)})
    assert isinstance(storage, LocalFileStorage)
    assert storage.storage_path == str(tmp_path)
    assert manager.get("files") is storage
    assert storage.name == "files"


def test_configure_ignores_keys_outside_the_prefix(manager: StorageManager, tmp_path: Path) -> None:
    settings = {
        "sqlalchemy.url": "sqlite://",
        "debug": "true",
        "depot.storage_path": str(tmp_path),
        "uploads.backend": "s3",
    }
    storage = manager.configure("files", settings)
    assert isinstance(storage, LocalFileStorage)


def test_custom_prefix(manager: StorageManager) -> None:
    storage = manager.configure("m", {"uploads.backend": "memory"}, prefix="uploads.")
    assert isinstance(storage, MemoryFileStorage)


@pytest.mark.parametrize(
    ("backend", "cls"),
    [
        ("memory", MemoryFileStorage),
        ("local", LocalFileStorage),
        ("depot.io.memory.MemoryFileStorage", MemoryFileStorage),
        ("depot.io.local.LocalFileStorage", LocalFileStorage),
        ("depotx.storages.memory.MemoryFileStorage", MemoryFileStorage),
        ("depotx.storages.memory:MemoryFileStorage", MemoryFileStorage),
        ("tests.test_manager:TunableStorage", TunableStorage),
    ],
)
def test_backend_names(manager: StorageManager, tmp_path: Path, backend: str, cls: type) -> None:
    config = {"depot.backend": backend}
    if cls is LocalFileStorage:
        config["depot.storage_path"] = str(tmp_path)
    assert type(manager.configure("s", config)) is cls


def test_filedepot_config_works_unchanged(manager: StorageManager, tmp_path: Path) -> None:
    """A filedepot .ini section, as written for filedepot, configures the same storage."""
    settings = {
        "depot.backend": "depot.io.local.LocalFileStorage",
        "depot.storage_path": str(tmp_path),
    }
    storage = manager.configure("default", settings)
    assert isinstance(storage, LocalFileStorage)
    assert MemoryByPath is MemoryFileStorage


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ("nosuchbackend", "unknown backend 'nosuchbackend'"),
        ("no.such.module.Storage", "cannot import backend"),
        ("depotx._ids.new_file_id", "does not name a FileStorage subclass"),
    ],
)
def test_bad_backend(manager: StorageManager, backend: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        manager.configure("x", {"depot.backend": backend})
    assert manager.names == []


def test_unknown_option_names_the_option_and_the_valid_ones(
    manager: StorageManager, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError) as info:
        manager.configure("x", {"depot.storage_path": str(tmp_path), "depot.storagepath": "y"})
    message = str(info.value)
    assert "depot.storagepath" in message
    assert "storage_path" in message
    assert isinstance(info.value, ValueError)


def test_missing_required_option(manager: StorageManager) -> None:
    with pytest.raises(ConfigurationError, match=r"needs depot\.storage_path"):
        manager.configure("x", {"depot.backend": "local"})


def test_string_options_are_converted_by_annotation(manager: StorageManager) -> None:
    storage = manager.configure(
        "t",
        {
            "depot.backend": "tests.test_manager:TunableStorage",
            "depot.retries": "3",
            "depot.ratio": "0.25",
            "depot.enabled": "yes",
            "depot.label": "hello",
            "depot.limit": "none",
            "depot.headers": '{"a": "b"}',
            "depot.root": "/tmp/x",
        },
    )
    assert isinstance(storage, TunableStorage)
    assert storage.retries == 3
    assert storage.ratio == 0.25
    assert storage.enabled is True
    assert storage.label == "hello"
    assert storage.limit is None
    assert storage.headers == {"a": "b"}
    assert storage.root == Path("/tmp/x")


@pytest.mark.parametrize(
    ("option", "value"),
    [("retries", "three"), ("enabled", "maybe"), ("headers", "[1, 2]"), ("ratio", "x")],
)
def test_unconvertible_values(manager: StorageManager, option: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"depot.{option}"):
        manager.configure(
            "t", {"depot.backend": "tests.test_manager:TunableStorage", f"depot.{option}": value}
        )


def test_non_string_values_pass_unchanged(manager: StorageManager) -> None:
    storage = manager.configure(
        "t", {"depot.backend": "tests.test_manager:TunableStorage", "depot.retries": 7}
    )
    assert isinstance(storage, TunableStorage)
    assert storage.retries == 7


def test_common_option_inline_active_content(manager: StorageManager) -> None:
    default = manager.configure("a", {"depot.backend": "memory"})
    inline = manager.configure(
        "b", {"depot.backend": "memory", "depot.inline_active_content": "true"}
    )
    assert default.inline_active_content is False
    assert inline.inline_active_content is True


def test_configure_twice_is_an_error(manager: StorageManager) -> None:
    manager.configure("a", {"depot.backend": "memory"})
    with pytest.raises(ConfigurationError, match="already configured"):
        manager.configure("a", {"depot.backend": "memory"})


@pytest.mark.parametrize("name", ["", "a/b"])
def test_invalid_storage_names(manager: StorageManager, name: str) -> None:
    with pytest.raises(ConfigurationError):
        manager.configure(name, {"depot.backend": "memory"})


def test_first_configured_is_the_default(manager: StorageManager) -> None:
    first = manager.configure("first", {"depot.backend": "memory"})
    second = manager.configure("second", {"depot.backend": "memory"})
    assert manager.get_default() == "first"
    assert manager.get() is first
    manager.set_default("second")
    assert manager.get_default() == "second"
    assert manager.get() is second


def test_no_default_yet(manager: StorageManager) -> None:
    with pytest.raises(StorageNotFoundError):
        manager.get_default()
    with pytest.raises(StorageNotFoundError):
        manager.get()


def test_unknown_storage(manager: StorageManager) -> None:
    manager.configure("known", {"depot.backend": "memory"})
    with pytest.raises(StorageNotFoundError, match=r"'missing'.*known") as info:
        manager.get("missing")
    assert isinstance(info.value, LookupError)
    with pytest.raises(StorageNotFoundError):
        manager.set_default("missing")


def test_aliases_resolve_and_can_be_repointed(manager: StorageManager) -> None:
    old = manager.configure("avatars_v1", {"depot.backend": "memory"})
    new = manager.configure("avatars_v2", {"depot.backend": "memory"})
    manager.alias("avatars", "avatars_v1")
    assert manager.get("avatars") is old
    assert manager.resolve_alias("avatars") == "avatars_v1"
    assert manager.resolve_alias("avatars_v2") == "avatars_v2"
    manager.alias("avatars", "avatars_v2")
    assert manager.get("avatars") is new
    # old files stay readable under the storage's real name
    assert manager.get("avatars_v1") is old


def test_alias_errors(manager: StorageManager) -> None:
    manager.configure("a", {"depot.backend": "memory"})
    manager.configure("b", {"depot.backend": "memory"})
    with pytest.raises(ConfigurationError, match="shadow"):
        manager.alias("a", "b")
    with pytest.raises(StorageNotFoundError):
        manager.alias("x", "missing")
    with pytest.raises(StorageNotFoundError):
        manager.resolve_alias("nothing")
    manager.alias("x", "a")
    with pytest.raises(ConfigurationError, match="already an alias"):
        manager.configure("x", {"depot.backend": "memory"})


def test_default_through_alias(manager: StorageManager) -> None:
    manager.configure("a", {"depot.backend": "memory"})
    b = manager.configure("b", {"depot.backend": "memory"})
    manager.alias("current", "b")
    manager.set_default("current")
    assert manager.get_default() == "b"
    assert manager.get() is b


async def test_get_file_and_url_for(manager: StorageManager) -> None:
    storage = manager.configure("media", {"depot.backend": "memory"})
    manager.alias("pictures", "media")
    file_id = await storage.create(b"data", "a.txt")
    async with await manager.get_file(f"media/{file_id}") as stored:
        assert await stored.read() == b"data"
    async with await manager.get_file(f"pictures/{file_id}") as stored:
        assert stored.file_id == file_id
    assert manager.url_for(f"media/{file_id}") == f"/depot/media/{file_id}"
    # Through the real storage: re-pointing the alias later keeps the URL working.
    assert manager.url_for(f"pictures/{file_id}") == f"/depot/media/{file_id}"
    manager.set_mountpoint("/files/")
    assert manager.url_for(f"media/{file_id}") == f"/files/media/{file_id}"


def test_url_for_prefers_the_public_url(manager: StorageManager) -> None:
    class PublicStorage(MemoryFileStorage):
        def public_url(self, file_id: str) -> str | None:
            return f"https://cdn.example.com/{file_id}"

    manager.configure("cdn", {"depot.backend": PublicStorage})
    assert manager.url_for("cdn/abc") == "https://cdn.example.com/abc"


@pytest.mark.parametrize(
    "path", ["nofileid", "/abc", "media/..", "media/", "media/a//b", "media/a\\b", "media/a/../b"]
)
async def test_malformed_paths(manager: StorageManager, path: str) -> None:
    manager.configure("media", {"depot.backend": "memory"})
    with pytest.raises(InvalidFileIdError):
        await manager.get_file(path)
    with pytest.raises(InvalidFileIdError):
        manager.url_for(path)


async def test_get_file_errors(manager: StorageManager) -> None:
    manager.configure("media", {"depot.backend": "memory"})
    with pytest.raises(StorageNotFoundError):
        await manager.get_file("other/abc")
    with pytest.raises(StoredFileNotFoundError):
        await manager.get_file("media/abc")


@pytest.mark.parametrize("mountpoint", ["depot", "", "/"])
def test_bad_mountpoints(manager: StorageManager, mountpoint: str) -> None:
    with pytest.raises(ConfigurationError):
        manager.set_mountpoint(mountpoint)


def test_configure_many(manager: StorageManager, tmp_path: Path) -> None:
    settings = {
        "app.title": "ignored",
        "depot.avatars.backend": "memory",
        "depot.docs.backend": "local",
        "depot.docs.storage_path": str(tmp_path),
        "depot.pictures.alias": "avatars",
        "depot.default": "docs",
    }
    storages = manager.configure_many(settings)
    assert set(storages) == {"avatars", "docs"}
    assert isinstance(storages["docs"], LocalFileStorage)
    assert manager.get_default() == "docs"
    assert manager.get("pictures") is storages["avatars"]


def test_configure_many_first_is_default(manager: StorageManager) -> None:
    manager.configure_many({"depot.b.backend": "memory", "depot.a.backend": "memory"})
    assert manager.get_default() == "b"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"depot.backend": "memory"}, "names no storage"),
        ({"depot.x.alias": "y", "depot.y.backend": "memory", "depot.x.backend": "s3"}, "no other"),
        ({"depot.a.backend": "memory", "depot.a.bogus": "1"}, r"depot\.a\.bogus"),
    ],
)
def test_configure_many_errors(
    manager: StorageManager, settings: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        manager.configure_many(settings)


def test_configure_from_env(manager: StorageManager, tmp_path: Path) -> None:
    environ = {
        "PATH": "/usr/bin",
        "DEPOTX_AVATARS__BACKEND": "memory",
        "DEPOTX_DOCS__BACKEND": "local",
        "DEPOTX_DOCS__STORAGE_PATH": str(tmp_path),
        "DEPOTX_DEFAULT": "docs",
    }
    storages = manager.configure_from_env(environ)
    assert set(storages) == {"avatars", "docs"}
    assert manager.get_default() == "docs"
    assert isinstance(manager.get("docs"), LocalFileStorage)


def test_configure_from_env_reads_os_environ(
    manager: StorageManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPOTX_SCRATCH__BACKEND", "memory")
    assert set(manager.configure_from_env()) == {"scratch"}


def test_from_config_builds_without_registering(manager: StorageManager) -> None:
    storage = StorageManager.from_config({"depot.backend": "memory"})
    assert isinstance(storage, FileStorage)
    assert manager.names == []


def test_missing_extra_names_it() -> None:
    error = MissingDependencyError("s3", "aioboto3")
    assert isinstance(error, ImportError)
    assert "pip install 'depotx[s3]'" in str(error)


async def test_aclose_closes_every_storage(manager: StorageManager) -> None:
    closed: list[str] = []

    class Closing(MemoryFileStorage):
        async def aclose(self) -> None:
            closed.append(self.name or "")

    manager.configure("a", {"depot.backend": Closing})
    manager.configure("b", {"depot.backend": Closing})
    async with manager:
        pass
    assert closed == ["a", "b"]


async def test_aclose_reports_failures_after_closing_the_rest(manager: StorageManager) -> None:
    closed: list[str] = []

    class Failing(MemoryFileStorage):
        async def aclose(self) -> None:
            closed.append(self.name or "")
            raise OSError("connection reset")

    manager.configure("a", {"depot.backend": Failing})
    manager.configure("b", {"depot.backend": Failing})
    with pytest.raises(OSError, match="connection reset"):
        await manager.aclose()
    assert closed == ["a", "b"]


def test_clear_forgets_everything(manager: StorageManager) -> None:
    manager.configure("a", {"depot.backend": "memory"})
    manager.alias("b", "a")
    manager.clear()
    assert manager.names == []
    with pytest.raises(StorageNotFoundError):
        manager.get("b")


def test_register_an_instance(manager: StorageManager) -> None:
    storage = MemoryFileStorage()
    assert manager.register("tenant-a", storage) is storage
    assert manager.get() is storage  # the first storage is the default
    assert storage.name == "tenant-a"
    manager.alias("current", "tenant-a")
    assert manager.get("current") is storage
    with pytest.raises(ConfigurationError, match="already configured"):
        manager.register("tenant-a", MemoryFileStorage())
    with pytest.raises(ConfigurationError, match="already an alias"):
        manager.register("current", MemoryFileStorage())
    with pytest.raises(TypeError, match="FileStorage"):
        manager.register("bad", object())  # type: ignore[arg-type]


async def test_a_forgotten_await_is_named(manager: StorageManager) -> None:
    storage = manager.configure("media", {"depot.backend": "memory"})
    pending = storage.create(b"x")
    with pytest.raises(InvalidFileIdError, match="did you forget await"):
        manager.url_for(pending)  # type: ignore[arg-type]
    pending = storage.create(b"x")
    with pytest.raises(InvalidFileIdError, match="did you forget await"):
        await storage.get(pending)  # type: ignore[arg-type]

    async def read() -> bytes:
        return b"data"

    with pytest.raises(TypeError, match="did you forget await"):
        await storage.create(read())


async def test_an_already_read_source_is_stored_whole(
    manager: StorageManager, tmp_path: Path
) -> None:
    import io

    from starlette.datastructures import UploadFile

    storage = manager.configure("media", {"depot.backend": "memory"})
    upload = UploadFile(io.BytesIO(b"uploaded bytes"), filename="u.txt")
    assert await upload.read() == b"uploaded bytes"  # an app looked at it first
    file_id = await storage.create(upload)
    async with await storage.get(file_id) as stored:
        assert await stored.read() == b"uploaded bytes"
    path = tmp_path / "plain.bin"
    path.write_bytes(b"plain file")
    with path.open("rb") as plain:
        plain.read()
        file_id = await storage.create(plain)
    async with await storage.get(file_id) as stored:
        assert await stored.read() == b"plain file"


def test_a_one_underscore_env_variable_is_named_in_the_error(manager: StorageManager) -> None:
    with pytest.raises(ConfigurationError, match="DEPOTX_AVATARS_BACKEND") as info:
        manager.configure_from_env({"DEPOTX_AVATARS_BACKEND": "memory"})
    assert "DEPOTX_AVATARS__BACKEND" in str(info.value)
    assert manager.configure_from_env({"DEPOTX_TEST_URI": "x", "DEPOTX_A__BACKEND": "memory"})


def test_typed_members_of_a_union_are_tried_before_str() -> None:
    from depotx._config import convert_value

    assert convert_value("false", bool | str) is False
    assert convert_value("true", bool | str | None) is True
    assert convert_value("/etc/ssl/ca.pem", bool | str) == "/etc/ssl/ca.pem"
    assert convert_value("none", bool | str | None) is None
    assert convert_value("42", int | str) == 42
