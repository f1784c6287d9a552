"""The ``depotx`` command: store, fetch, list and serve files from the shell.

Storages come from ``--config FILE`` (dotted keys in an ``.ini`` or ``.toml``
file), else from ``DEPOTX_*`` environment variables, else the embedded default:
local storage under ``./depot-files`` (or ``--storage-path``).
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from ._config import MANAGER_KEYS, env_settings
from ._exceptions import ConfigurationError, DepotError
from ._ids import split_path
from ._manager import StorageManager
from ._units import human_size
from .migrate import MigrationProgress, migrate
from .server import LOG_LEVELS
from .storages.local import LocalFileStorage

__all__ = ["build_manager", "load_settings", "main", "safe_basename"]

DEFAULT_STORAGE_PATH = "./depot-files"
DEFAULT_STORAGE_NAME = "default"
PREFIX = "depot."


def _flatten(table: Mapping[str, Any], into: dict[str, Any], prefix: str = "") -> None:
    for key, value in table.items():
        if isinstance(value, Mapping):
            _flatten(value, into, f"{prefix}{key}.")
        else:
            into[f"{prefix}{key}"] = value


def load_settings(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read dotted settings from an ``.ini``/``.cfg`` (every section) or ``.toml`` file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigurationError(f"config file {str(file)!r} does not exist")
    settings: dict[str, Any] = {}
    if file.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib

            try:
                with file.open("rb") as handle:
                    _flatten(tomllib.load(handle), settings)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigurationError(f"cannot parse {str(file)!r}: {exc}") from exc
            return settings
        raise ConfigurationError("reading .toml config files needs Python 3.11+")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    try:
        parser.read(file, encoding="utf-8")
    except configparser.Error as exc:
        raise ConfigurationError(f"cannot parse {str(file)!r}: {exc}") from exc
    for section in parser.sections():
        settings.update(parser.items(section))
    return settings


def build_manager(
    config: str | None = None,
    storage_path: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> StorageManager:
    """The manager the CLI (and ``depotx serve``) work on; see the module docstring.

    The manager's own settings (``DEPOTX_SECRET_KEY``, ``DEPOTX_MOUNTPOINT``) apply
    whichever way the storages are configured. ``storage_path`` is the embedded
    default storage's folder: given together with a config file or storages in
    ``DEPOTX_*`` settings, it would be ignored, so that is an error rather than a
    surprise.
    """
    manager = StorageManager()
    environ = os.environ if environ is None else environ
    from_env = env_settings(environ, "DEPOTX_", PREFIX)  # a near-miss variable raises here
    env_storages = any("." in key[len(PREFIX) :] for key in from_env)
    if storage_path is not None and (config is not None or env_storages):
        source = "--config" if config is not None else "DEPOTX_* environment settings"
        raise ConfigurationError(
            f"--storage-path applies to the embedded default storage, not to storages from "
            f"{source}: set the path there (depot.storage_path)"
        )
    if not env_storages:
        # Only the manager's own settings are in the environment: they apply to the
        # config file or the embedded default alike (with storages in the
        # environment, configure_many below reads them together).
        manager.configure_many({k: v for k, v in from_env.items() if k != f"{PREFIX}default"})
    if config is not None:
        settings = load_settings(config)
        own = [key[len(PREFIX) :] for key in settings if key.startswith(PREFIX)]
        if not own:
            raise ConfigurationError(f"{config!r} has no {PREFIX}* settings")
        single = any("." not in key and key not in MANAGER_KEYS for key in own)
        if single:  # filedepot style: depot.backend, depot.storage_path, ...
            ours = {f"{PREFIX}{key}" for key in MANAGER_KEYS if key != "default"}
            manager.configure_many({k: v for k, v in settings.items() if k in ours})
            storage = {k: v for k, v in settings.items() if k not in ours}
            manager.configure(DEFAULT_STORAGE_NAME, storage)
        else:
            manager.configure_many(settings)
    elif env_storages:
        manager.configure_many(from_env)
    else:
        path = DEFAULT_STORAGE_PATH if storage_path is None else storage_path
        manager.configure(DEFAULT_STORAGE_NAME, {"depot.storage_path": path})
    return manager


def _path_for(manager: StorageManager, path: str) -> str:
    """Accept ``storage/fileid`` or a bare file id in the default storage."""
    return path if "/" in path else f"{manager.get_default()}/{path}"


async def _put(manager: StorageManager, args: argparse.Namespace) -> int:
    storage_name = manager.resolve_alias(args.storage or manager.get_default())
    storage = manager.get(storage_name)
    if args.id is not None and len(args.files) != 1:
        raise ConfigurationError("--id names one file: give exactly one")
    write = storage.put if args.force else None
    for name in args.files:
        source: Any = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
        try:
            if write is not None and args.id is not None:
                file_id = await write(args.id, source, args.filename, args.content_type)
            else:
                file_id = await storage.create(
                    source, args.filename, args.content_type, file_id=args.id
                )
        finally:
            if source is not sys.stdin.buffer:
                source.close()
        print(f"{storage_name}/{file_id}")
    return 0


def safe_basename(filename: str) -> str:
    """A stored filename made safe to create in a folder of the user's.

    The uploader chose it: no folders (``../``, ``/etc/``), no control or NUL
    characters, no hidden or special names (``.bashrc``, ``..``), never empty.
    """
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join("_" if not char.isprintable() else char for char in name).strip()
    name = name.lstrip(".").strip()
    return name[:255] or "download"


def _open_binary(path: Path, mode: str) -> BinaryIO:
    return path.open(mode)  # type: ignore[return-value]  # "wb"/"xb": always binary


async def _get(manager: StorageManager, args: argparse.Namespace) -> int:
    async with await manager.get_file(_path_for(manager, args.path)) as stored:
        out: BinaryIO
        if args.output in (None, "-"):
            out = sys.stdout.buffer
            async for chunk in stored:
                out.write(chunk)
            out.flush()
            return 0
        target = Path(args.output)
        if await asyncio.to_thread(target.is_dir):
            target = target / safe_basename(stored.filename)
        mode = "wb" if args.force else "xb"
        try:
            out = await asyncio.to_thread(_open_binary, target, mode)
        except FileExistsError as exc:
            raise ConfigurationError(
                f"{str(target)!r} exists; pass --force to overwrite it"
            ) from exc
        try:
            async for chunk in stored:
                await asyncio.to_thread(out.write, chunk)
        finally:
            out.close()
        print(target, file=sys.stderr)
    return 0


async def _ls(manager: StorageManager, args: argparse.Namespace) -> int:
    target = args.storage or manager.get_default()
    name, _, prefix = target.partition("/")
    storage_name = manager.resolve_alias(name)
    storage = manager.get(storage_name)
    delimiter = None if args.recursive else "/"
    async for file_id in storage.list(prefix, delimiter=delimiter):
        if file_id.endswith("/"):  # a folder of keys
            print(f"{storage_name}/{file_id}")
            continue
        if not args.long:
            print(f"{storage_name}/{file_id}")
            continue
        try:
            stored = await storage.get(file_id)
        except DepotError as exc:
            print(f"depotx: skipping {storage_name}/{file_id}: {exc}", file=sys.stderr)
            continue
        async with stored:
            print(
                f"{storage_name}/{file_id}\t{stored.content_length}\t"
                f"{stored.last_modified.isoformat()}\t{stored.content_type}\t{stored.filename}"
            )
    return 0


async def _info(manager: StorageManager, args: argparse.Namespace) -> int:
    path = _path_for(manager, args.path)
    async with await manager.get_file(path) as stored:
        info = {
            "path": path,
            "file_id": stored.file_id,
            "filename": stored.filename,
            "content_type": stored.content_type,
            "content_length": stored.content_length,
            "last_modified": stored.last_modified.isoformat(),
            "checksum": stored.checksum,
            "metadata": stored.metadata,
            "url": manager.url_for(path),
        }
    print(json.dumps(info, indent=2, ensure_ascii=False))
    return 0


async def _rm(manager: StorageManager, args: argparse.Namespace) -> int:
    for path in args.paths:
        storage_name, file_id = split_path(_path_for(manager, path))
        await manager.get(storage_name).delete(file_id)
    return 0


async def _cp(manager: StorageManager, args: argparse.Namespace) -> int:
    target_name = manager.resolve_alias(args.storage)
    async with await manager.get_file(_path_for(manager, args.path)) as stored:
        file_id = await manager.get(target_name).create(stored)
    print(f"{target_name}/{file_id}")
    return 0


def _duration(value: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``1h`` or ``7d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = value.strip().lower()
    factor = units.get(text[-1:])
    number = text[:-1] if factor else text
    try:
        seconds = float(number) * (factor or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {value!r} (use seconds, or 15m, 1h, 7d)"
        ) from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError("a duration must be positive")
    return seconds


async def _url(manager: StorageManager, args: argparse.Namespace) -> int:
    print(
        manager.url_for(
            _path_for(manager, args.path),
            expires_in=args.expires,
            download=args.download,
            filename=args.filename,
        )
    )
    return 0


class _Progress:
    """A progress line: redrawn in place on a terminal, a plain line every few seconds else."""

    def __init__(self, stream: Any, interval: float = 5.0) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.interval = interval
        self.last = 0.0

    def __call__(self, progress: MigrationProgress) -> None:
        now = time.monotonic()
        finished = progress.files_done == progress.total_files
        if not self.tty and not finished and now - self.last < self.interval:
            return
        self.last = now
        eta = progress.eta
        line = (
            f"{progress.files_done}/{progress.total_files} files, "
            f"{human_size(progress.bytes_done)}, {human_size(progress.rate)}/s, "
            f"{progress.failed} failed"
            + (f", ETA {eta:.0f} s" if eta is not None and not finished else "")
        )
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if finished else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


async def _migrate(manager: StorageManager, args: argparse.Namespace) -> int:
    source = manager.get(args.source)
    destination = manager.get(args.destination)
    ids = None
    if args.ids is not None:
        lines = sys.stdin if args.ids == "-" else open(args.ids, encoding="utf-8")  # noqa: SIM115
        try:
            ids = [line.strip() for line in lines if line.strip()]
        finally:
            if lines is not sys.stdin:
                lines.close()
    journal = None if args.dry_run else args.journal or _default_journal(args)
    if journal is not None and not args.json:
        print(f"journal: {journal}", file=sys.stderr)
    report = await migrate(
        source,
        destination,
        prefix=args.prefix,
        ids=ids,
        concurrency=args.concurrency,
        verify=args.verify,
        overwrite=args.overwrite,
        delete_source=args.delete_source,
        journal=journal,
        dry_run=args.dry_run,
        on_progress=None if args.json else _Progress(sys.stderr),
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    elif args.dry_run:
        for file_id, size in report.planned.items():
            print(f"{file_id}\t{size}")
        total = sum(report.planned.values())
        print(
            f"would copy {len(report.planned)} files, {human_size(total)}; "
            f"{len(report.skipped)} already there, {len(report.failed)} not possible"
        )
    else:
        print(
            f"copied {len(report.copied)}, skipped {len(report.skipped)}, failed "
            f"{len(report.failed)}; {human_size(report.bytes)} in {report.elapsed:.1f} s"
        )
    for file_id, reason in report.failed.items():
        if not args.json:
            print(f"failed: {file_id}: {reason}", file=sys.stderr)
    return 0 if report.ok else 1


def _default_journal(args: argparse.Namespace) -> str:
    name = f".depotx-migrate-{args.source}-{args.destination}.sqlite"
    return "".join(char if char.isalnum() or char in ".-_" else "_" for char in name)


async def _cleanup(manager: StorageManager, args: argparse.Namespace) -> int:
    names = [manager.resolve_alias(args.storage)] if args.storage else manager.names
    for name in names:
        removed = await manager.get(name).cleanup(args.older_than)
        print(f"{name}: removed {removed} stale leftover{'' if removed == 1 else 's'}")
    return 0


_COMMANDS = {
    "put": _put,
    "get": _get,
    "ls": _ls,
    "info": _info,
    "rm": _rm,
    "cp": _cp,
    "cleanup": _cleanup,
    "url": _url,
    "migrate": _migrate,
}


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, not {port}")
    return port


def _size(value: str) -> int:
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {value!r}") from None
    if size < 0:
        raise argparse.ArgumentTypeError("a size must not be negative")
    return size


_DESCRIPTION = "Store, fetch, list and serve files from the shell."
_EPILOG = (
    "Storages come from --config FILE (dotted depot.* keys in an .ini or .toml file), "
    "else from DEPOTX_<NAME>__<OPTION> environment variables, else the embedded default: "
    f"local storage under {DEFAULT_STORAGE_PATH} (or --storage-path)."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depotx", description=_DESCRIPTION, epilog=_EPILOG)
    parser.add_argument("--config", help="an .ini or .toml file of depot.* settings")
    parser.add_argument(
        "--storage-path",
        help=f"folder of the embedded local storage (default: {DEFAULT_STORAGE_PATH})",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    put = commands.add_parser("put", help="store files; prints each one's storage/fileid path")
    put.add_argument("files", nargs="+", help="files to store ('-' reads standard input)")
    put.add_argument("--storage", help="storage or alias (default: the default storage)")
    put.add_argument("--filename", help="filename to record instead of the file's own")
    put.add_argument("--content-type", help="content type to record instead of detecting it")
    put.add_argument(
        "--id", metavar="KEY", help="store at this key (uploads/2026/report.pdf); fails if taken"
    )
    put.add_argument(
        "--force", action="store_true", help="with --id: replace the file if the key is taken"
    )

    get = commands.add_parser("get", help="write a stored file to standard output or a file")
    get.add_argument("path", help="storage/fileid (or a file id in the default storage)")
    get.add_argument(
        "-o",
        "--output",
        help="output file or folder ('-': standard output); in a folder the file gets its "
        "stored filename, made safe",
    )
    get.add_argument("-f", "--force", action="store_true", help="overwrite an existing file")

    ls = commands.add_parser(
        "ls", help="list the files of a storage, in order; STORAGE/PREFIX lists under a prefix"
    )
    ls.add_argument(
        "storage",
        nargs="?",
        help="storage or alias, optionally with a key prefix: avatars/uploads/2026/ "
        "(default: the default storage)",
    )
    ls.add_argument("-l", "--long", action="store_true", help="size, date, type and filename")
    ls.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="list every key below the prefix instead of showing folders once",
    )

    info = commands.add_parser("info", help="print a stored file's metadata as JSON")
    info.add_argument("path", help="storage/fileid")

    rm = commands.add_parser("rm", help="delete stored files (missing files are not an error)")
    rm.add_argument("paths", nargs="+", help="storage/fileid paths")

    cp = commands.add_parser("cp", help="copy a stored file into another storage")
    cp.add_argument("path", help="storage/fileid to copy")
    cp.add_argument("storage", help="target storage or alias")

    url = commands.add_parser(
        "url",
        help="print a file's URL; --expires makes it a signed URL that expires",
        description="Print a file's URL under the mountpoint (or its public URL). With "
        "--expires it is signed with the configured secret (depot.secret_key, "
        "DEPOTX_SECRET_KEY) and stops working after that long; files of a private "
        "storage only have signed URLs.",
    )
    url.add_argument("path", help="storage/fileid (or a file id in the default storage)")
    url.add_argument("--expires", type=_duration, metavar="DURATION", help="e.g. 900, 15m, 1h, 7d")
    url.add_argument("--download", action="store_true", help="serve it as an attachment")
    url.add_argument("--filename", help="serve it under this name")

    migrate_cmd = commands.add_parser(
        "migrate",
        help="copy every file of one storage to another, keeping ids (resumable)",
        description="Copy every file of SOURCE to DESTINATION, keeping ids, filenames, "
        "types, metadata and dates. Streamed, concurrent, resumable: a journal records "
        "what is done, so running the same command again skips it and retries failures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    migrate_cmd.add_argument("source", help="storage or alias to copy from")
    migrate_cmd.add_argument("destination", help="storage or alias to copy to")
    migrate_cmd.add_argument("--prefix", default="", help="only ids under this key prefix")
    migrate_cmd.add_argument(
        "--ids", metavar="FILE", help="only the ids listed in FILE, one a line ('-': stdin)"
    )
    migrate_cmd.add_argument(
        "--concurrency",
        type=int,
        help="files copied at once (default: 4 between local and memory storages, else 8)",
    )
    migrate_cmd.add_argument(
        "--verify", action="store_true", help="re-read every copy and compare its SHA-256"
    )
    migrate_cmd.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files with other content at the destination",
    )
    migrate_cmd.add_argument(
        "--delete-source",
        action="store_true",
        help="delete each source file once its copy is verified (needs --verify)",
    )
    migrate_cmd.add_argument(
        "--journal",
        metavar="PATH",
        help="the SQLite journal (default: .depotx-migrate-SOURCE-DESTINATION.sqlite here)",
    )
    migrate_cmd.add_argument(
        "--dry-run", action="store_true", help="list what would be copied, copy nothing"
    )
    migrate_cmd.add_argument("--json", action="store_true", help="a JSON summary on stdout")

    cleanup = commands.add_parser(
        "cleanup", help="remove what crashed or killed uploads left behind"
    )
    cleanup.add_argument("storage", nargs="?", help="storage or alias (default: every storage)")
    cleanup.add_argument(
        "--older-than",
        type=float,
        metavar="SECONDS",
        help="only leftovers at least this old (default: each storage's temp_max_age, 1 day)",
    )

    serve = commands.add_parser(
        "serve",
        help="serve an upload page and the files over HTTP",
        description="Serve an upload page and the files over HTTP. It has no authentication: "
        "bind it to 127.0.0.1 (the default) or a private network, never the open internet.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve.add_argument("--port", type=_port, default=8000, help="port to bind (0: any free one)")
    serve.add_argument(
        "--max-upload-size", type=_size, help="largest upload accepted, in bytes (none: no limit)"
    )
    serve.add_argument(
        "--log-level", default="info", choices=LOG_LEVELS, type=str.lower, help="log level"
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name the server answers to (repeatable); it always answers to "
        "--host, localhost, 127.0.0.1 and ::1",
    )
    serve.add_argument(
        "--tus-staging",
        metavar="DIR",
        help="folder keeping unfinished resumable (tus) uploads, kept across restarts "
        "(default: $XDG_CACHE_HOME/depotx/tus)",
    )
    return parser


async def _run(manager: StorageManager, args: argparse.Namespace) -> int:
    async with manager:
        return await _COMMANDS[args.command](manager, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        manager = build_manager(args.config, args.storage_path)
        if args.command == "serve":
            from .server import serve

            staging = None if args.tus_staging is None else LocalFileStorage(args.tus_staging)
            serve(
                manager,
                host=args.host,
                port=args.port,
                max_upload_size=args.max_upload_size,
                log_level=args.log_level,
                allowed_hosts=args.allowed_host,
                tus_staging=staging,
            )
            return 0
        return asyncio.run(_run(manager, args))
    except (DepotError, OSError) as exc:
        print(f"depotx: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # A migration stopped here resumes from its journal when run again.
        print("depotx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
