"""Session events that make file columns follow the transaction.

- Assignment: content becomes a :class:`PendingFile`; a path string is checked
  at once (a malformed one fails where it was written).
- ``before_flush``: pending content is validated and stored, and the old value
  of replaced, cleared or deleted rows is noted for deletion, unless another
  row still references the same file (a path assigned from another row is
  shared: it is deleted only when the last row lets go of it).
- Commit: the noted files are deleted, only after the database committed.
  Rollback, or a session closed without commit: the files stored during the
  transaction are deleted (savepoints included).

SQLAlchemy's events are synchronous. Under an ``AsyncSession`` they run inside
the greenlet of ``greenlet_spawn``, where ``await_only`` runs depotx's async
storage calls on the session's own event loop. Per-session state lives in
``session.info``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import logging
import weakref
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import String, and_, cast, event, inspect, literal, not_, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Mapper, Session, SessionTransaction
from sqlalchemy.orm import object_session as _object_session
from sqlalchemy.util import await_only
from sqlalchemy.util.concurrency import in_greenlet

from .._exceptions import StoredFileNotFoundError
from .._ids import split_path
from .._manager import StorageManager
from ..storages.base import utcnow
from ._attached import AttachedFile
from ._sqlalchemy_store import (
    COLUMN_KEY,
    TABLE_KEY,
    Stored,
    adopt_path,
    adopt_token,
    store_content,
)
from ._sqlalchemy_types import AsyncSessionRequiredError, FileType, PendingFile

__all__ = ["delete_orphans"]

logger = logging.getLogger("depotx.ext.sqlalchemy")

_T = TypeVar("_T")
_INFO_KEY = "depotx.sqlalchemy"
# Set while the flush writes the stored value back, so the set listener lets it through.
_writing_back: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "depotx_writing_back", default=False
)


@dataclass(frozen=True)
class _FileColumn:
    key: str
    type: FileType
    table: str
    column: str


@dataclass
class _SessionState:
    #: (manager, path) of files stored in this transaction: deleted unless it commits.
    stored: list[tuple[StorageManager, str]] = field(default_factory=list)
    #: (manager, path) of files the transaction replaced or removed: deleted once it commits.
    doomed: list[tuple[StorageManager, str]] = field(default_factory=list)
    #: For each open savepoint, the lengths of the lists when it began.
    marks: dict[SessionTransaction, tuple[int, int]] = field(default_factory=dict)


def _state(session: Session) -> _SessionState:
    state = session.info.get(_INFO_KEY)
    if state is None:
        state = session.info[_INFO_KEY] = _SessionState()
    return state


_columns_cache: weakref.WeakKeyDictionary[Mapper[Any], tuple[_FileColumn, ...]] = (
    weakref.WeakKeyDictionary()
)


def _file_columns(mapper: Mapper[Any]) -> tuple[_FileColumn, ...]:
    cached = _columns_cache.get(mapper)
    if cached is None:
        found = []
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if isinstance(column.type, FileType):
                table = getattr(getattr(column, "table", None), "name", None)
                found.append(
                    _FileColumn(
                        key=prop.key,
                        type=column.type,
                        table=table or str(mapper.local_table),
                        column=getattr(column, "name", None) or prop.key,
                    )
                )
        cached = _columns_cache[mapper] = tuple(found)
    return cached


# -- running async storage calls from the synchronous events ----------------------------


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` from an event: on the session's loop under an AsyncSession.

    A sync Session has no loop of its own: the coroutine then gets a short-lived
    one (in a worker thread if this thread already runs a loop). Only deletions
    and the lookup of an assigned path take that path; content is never stored
    from a sync Session.
    """
    if in_greenlet():
        return await_only(coro)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _delete_paths(files: Iterable[tuple[StorageManager, str]], why: str) -> None:
    """Delete files after the database decided; a failure is logged, never raised.

    The transaction's outcome is final by now, so an exception here could only
    mislead the caller into thinking it failed. ``delete_orphans`` sweeps what
    is left.
    """
    for manager, path in files:
        try:
            storage_name, file_id = split_path(path)
            await manager.get(storage_name).delete(file_id)
        except Exception:
            logger.warning("could not delete %s (%s)", path, why, exc_info=True)


# -- assignment ------------------------------------------------------------------------


def _in_sync_session(target: object) -> bool:
    session = _object_session(target)
    if session is None:
        return False
    try:
        from sqlalchemy.ext.asyncio import async_session
    except ImportError:  # no greenlet: there can be no AsyncSession
        return True
    return async_session(session) is None


def _on_set(target: object, value: Any, oldvalue: Any, initiator: Any) -> Any:
    if value is None or isinstance(value, PendingFile) or _writing_back.get():
        return value
    if isinstance(value, AttachedFile) and value == oldvalue:
        return value
    if isinstance(value, str):
        if "/" not in value and value.count(".") == 1:
            return PendingFile(token=value)  # a direct upload's token: finalized at flush
        split_path(value)  # a malformed path fails here, not at flush
        return PendingFile(path=value)
    if _in_sync_session(target):
        raise AsyncSessionRequiredError()
    return PendingFile(content=value)


@event.listens_for(Mapper, "mapper_configured")
def _instrument(mapper: Mapper[Any], class_: type) -> None:
    for column in _file_columns(mapper):
        prop = mapper.get_property(column.key)
        if prop.parent is mapper:  # inherited attributes got the listener with propagate
            event.listen(getattr(class_, column.key), "set", _on_set, retval=True, propagate=True)


# -- flush -----------------------------------------------------------------------------


def _committed_value(session: Session, obj: object, key: str) -> Any:
    """The value the database holds for ``obj.key`` before this flush."""
    history = inspect(obj).attrs[key].history
    if history.deleted:
        return history.deleted[0]
    if history.unchanged:
        return history.unchanged[0]
    state = inspect(obj)
    if state.key is None:  # pending: nothing in the database yet
        return None
    # Assigned over an expired (unloaded) value: ask the database.
    mapper = state.mapper
    cls = mapper.class_
    criteria = [
        getattr(cls, mapper.get_property_by_column(col).key) == value
        for col, value in zip(mapper.primary_key, state.identity or (), strict=True)
    ]
    with session.no_autoflush:
        return session.execute(select(getattr(cls, key)).where(*criteria)).scalar_one_or_none()


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, flush_context: Any, instances: Any) -> None:
    state = _state(session)
    mark = (len(state.stored), len(state.doomed))
    try:
        _flush_files(session, state)
    except BaseException:
        # Nothing of a failed flush may outlive it: undo this flush's stores.
        undo = state.stored[mark[0] :]
        del state.stored[mark[0] :]
        del state.doomed[mark[1] :]
        if undo:
            _run(_delete_paths(undo, "flush failed"))
        raise


def _referenced_elsewhere(session: Session, obj: object, path: str) -> bool:
    """Whether a row other than ``obj``'s, in any file column of its registry, holds ``path``.

    Values are JSON, so the test is a ``LIKE`` on their text: a false match can
    only keep a file alive (``delete_orphans`` sweeps it later), never delete
    one that is still used.
    """
    # As JSON text the path may be stored escaped (\\u00e9, \\/) or not (PostgreSQL's
    # jsonb): both spellings are looked for.
    spellings = {json.dumps(path), json.dumps(path, ensure_ascii=False)}
    patterns = [
        "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        for text in spellings
    ]
    own = inspect(obj)
    for mapper in own.mapper.registry.mappers:
        columns = _file_columns(mapper)
        if not columns:
            continue
        table_columns = [getattr(mapper.class_, column.key) for column in columns]
        matches = or_(
            *(
                cast(c, String).like(pattern, escape="\\")
                for c in table_columns
                for pattern in patterns
            )
        )
        condition = matches
        if mapper.local_table is own.mapper.local_table and own.identity is not None:
            this_row = and_(
                *(col == value for col, value in zip(mapper.primary_key, own.identity, strict=True))
            )
            condition = and_(matches, not_(this_row))
        with session.no_autoflush:
            found = session.execute(select(literal(1)).where(condition).limit(1)).first()
        if found is not None:
            return True
    return False


def _doom(
    session: Session, state: _SessionState, obj: object, column: _FileColumn, old: Any
) -> None:
    """Note ``old``'s files for deletion at commit, those no other row references."""
    if not isinstance(old, AttachedFile):
        return
    for path in old.all_paths():
        if _referenced_elsewhere(session, obj, path):
            logger.info("keeping %s: another row still references it", path)
            continue
        state.doomed.append((column.type.manager, path))


def _flush_files(session: Session, state: _SessionState) -> None:
    can_store = in_greenlet()
    for obj in list(session.deleted):
        for column in _file_columns(inspect(obj).mapper):
            _doom(session, state, obj, column, _committed_value(session, obj, column.key))
    for obj in [*session.new, *session.dirty]:
        insp = inspect(obj)
        for column in _file_columns(insp.mapper):
            history = insp.attrs[column.key].history
            if not history.added:
                continue
            new = history.added[0]
            old = _committed_value(session, obj, column.key) if insp.key is not None else None
            if isinstance(new, PendingFile):
                stored = _store(column, new, can_store)
                state.stored.extend((column.type.manager, p) for p in stored.created)
                token = _writing_back.set(True)
                try:
                    setattr(obj, column.key, stored.value)
                finally:
                    _writing_back.reset(token)
                new = stored.value
            if isinstance(old, AttachedFile) and old != new:
                _doom(session, state, obj, column, old)


def _store(column: _FileColumn, pending: PendingFile, can_store: bool) -> Stored:
    if pending.token is not None:
        # Finalized at flush, then checked like any stored file; a rollback (or a
        # rule it breaks) deletes the finalized file again.
        return _run(
            adopt_token(column.type, pending.token, table=column.table, column=column.column)
        )
    if pending.path is not None:
        # Under a sync Session the lookup runs on a short-lived loop, as deletions
        # do: the value gets its filename, type and size, and the column's rules
        # are checked, whichever Session assigned the path.
        return _run(adopt_path(column.type, pending.path, table=column.table, column=column.column))
    if not can_store:
        raise AsyncSessionRequiredError()
    return await_only(
        store_content(column.type, pending.content, table=column.table, column=column.column)
    )


# -- transaction end -----------------------------------------------------------------------


@event.listens_for(Session, "after_transaction_create")
def _after_transaction_create(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        state = _state(session)
        state.marks[transaction] = (len(state.stored), len(state.doomed))


@event.listens_for(Session, "after_soft_rollback")
def _after_soft_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    if not previous_transaction.nested:
        return  # the root transaction is handled when it ends
    state = _state(session)
    mark = state.marks.pop(previous_transaction, None)
    if mark is None:
        return
    undo = state.stored[mark[0] :]
    del state.stored[mark[0] :]
    del state.doomed[mark[1] :]
    if undo:
        _run(_delete_paths(undo, "savepoint rolled back"))


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    state = _state(session)
    doomed = list(state.doomed)
    state.stored.clear()
    state.doomed.clear()
    if doomed:
        _run(_delete_paths(doomed, "replaced or removed by a committed transaction"))


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return
    # The root ended without after_commit having taken the lists: rolled back or closed.
    state = _state(session)
    undo = list(state.stored)
    state.stored.clear()
    state.doomed.clear()
    state.marks.clear()
    if undo:
        _run(_delete_paths(undo, "transaction rolled back"))


# -- bulk statements --------------------------------------------------------------------------


async def delete_orphans(
    session: Any,
    column: InstrumentedAttribute[Any],
    *,
    older_than: timedelta = timedelta(hours=1),
) -> list[str]:
    """Delete files this column stored that no row references any more; return their paths.

    For what the session events cannot see: bulk ``delete()``/``update()``
    statements, raw SQL, a crash between commit and cleanup. Only files in the
    column's storage carrying this column's marker (written when the column
    stored them) are candidates, and only when older than ``older_than``, so
    uploads of transactions still in progress are left alone. ``session`` is
    an ``AsyncSession`` or a sync ``Session``.
    """
    prop = column.property
    file_column = next((c for c in _file_columns(prop.parent) if c.key == prop.key), None)
    if file_column is None:
        raise TypeError(f"{column} is not a FileType or ImageType column")
    statement = select(column).where(column.is_not(None))
    result = session.execute(statement)
    if asyncio.iscoroutine(result):
        result = await result
    referenced: set[str] = set()
    for value in result.scalars():
        if isinstance(value, AttachedFile):
            referenced.update(value.all_paths())
    name, storage = file_column.type.resolve_storage()
    cutoff = utcnow() - older_than
    candidates = [fid async for fid in storage.list() if f"{name}/{fid}" not in referenced]
    deleted: list[str] = []
    for file_id in candidates:
        try:
            stored = await storage.get(file_id)
        except StoredFileNotFoundError:
            continue  # deleted meanwhile
        async with stored:
            ours = (
                stored.metadata.get(TABLE_KEY) == file_column.table
                and stored.metadata.get(COLUMN_KEY) == file_column.column
            )
            old_enough = stored.last_modified <= cutoff
        if ours and old_enough:
            await storage.delete(file_id)
            deleted.append(f"{name}/{file_id}")
    return deleted
