"""gcp-storage-emulator, patched to do what GCS does where the stock emulator does not.

Run as ``python -m tests.backends._gcs_emulator --port N --data DIR``. The stock
emulator (measured in ``shared/notes/emulators.md``) answers 200 to every
precondition and does the unconditional thing, so create-only races, replace
preconditions and reads pinned to a generation could not be shown against it.
This launcher wraps its handlers, in one process, to honour what the GCS
documentation specifies, and nothing more:

- ``ifGenerationMatch`` (``0``: the object must not exist) and
  ``ifGenerationNotMatch`` on uploads (simple, multipart and resumable: checked
  when the session starts and again when its last byte arrives), downloads,
  metadata reads, deletes and compose (``x-goog-if-generation-match`` on the XML
  API); a failed one answers ``412 conditionNotMet``;
- ``generation=<g>`` on reads: ``404`` when it is not the live generation (a
  bucket without versioning keeps no other);
- ``sourceObjects[].objectPreconditions.ifGenerationMatch`` on compose;
- ``x-goog-generation``, ``x-goog-metageneration``, ``x-goog-stored-content-length``
  and ``x-goog-hash`` (the whole object's, ranged or not) on object downloads, and
  the stored ``Content-Disposition``;
- ranges ``bytes=-N`` (the last N bytes) and ``416`` for a start past the end;
- ``x-goog-content-length-range`` on XML ``PUT`` (the header a signed upload URL
  may require): a body outside it is refused with ``400``;
- ``maxResults`` and ``pageToken`` on listings;
- a request whose body is cut before its ``Content-Length`` stores nothing (the
  stock emulator stored the part it got);
- a listen backlog of 128 (5 reset a third of 100 concurrent connections);
- a resumable chunk appended to what the session holds (the stock emulator read
  and rewrote the whole upload for every chunk, and read it again to count it:
  quadratic in the number of chunks, which GCS is not);
- a finished resumable upload's bytes moved into place, not read and written again,
  and a ranged download reading only its range (GCS does neither extra pass: with
  them a chunked upload wrote every byte twice, and each ranged read read the whole
  object, which a one-request upload or read did not);
- object bytes kept on disk under a hash of the name: the stock emulator wrote
  them at the name itself, so ``a`` and ``a/b`` (a file and a folder) could not
  both exist, and ``a\\b`` overwrote ``a/b``.

The server stays single-threaded, so each request is handled whole before the
next: the checks above are atomic with the writes they guard, as on GCS.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import socketserver
import sys
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlparse

from gcp_storage_emulator import server
from gcp_storage_emulator.exceptions import BadRequest, NotFound
from gcp_storage_emulator.handlers import objects
from gcp_storage_emulator.storage import RESUMABLE_DIR, Storage

Handler = Any

#: Resumable session id -> (bucket, object name, the preconditions it started with).
_SESSIONS: dict[str, tuple[str, str, dict[str, int]]] = {}


class _CutBody(Exception):
    """The client sent fewer bytes than its ``Content-Length`` said."""


def _error(response: Any, status: HTTPStatus, reason: str, message: str) -> None:
    response.status = status
    response.json(
        {
            "error": {
                "code": status.value,
                "message": message,
                "errors": [{"domain": "global", "reason": reason, "message": message}],
            }
        }
    )


def _live_generation(storage: Any, bucket: str, name: str) -> int | None:
    try:
        return int(storage.get_file_obj(bucket, name)["generation"])
    except NotFound:
        return None


def _conditions(request: Any, prefix: str = "if") -> dict[str, int]:
    """The ``ifGeneration(Not)Match`` of a request: query parameters or XML API headers."""
    found: dict[str, int] = {}
    for key, header in (
        ("GenerationMatch", "x-goog-if-generation-match"),
        ("GenerationNotMatch", "x-goog-if-generation-not-match"),
    ):
        value = request.query.get(f"{prefix}{key}", [None])[0] or request.get_header(header)
        if value is not None:
            found[key] = int(value)
    return found


def _holds(conditions: dict[str, int], live: int | None) -> bool:
    want = conditions.get("GenerationMatch")
    if want is not None and (live is not None if want == 0 else live != want):
        return False
    unwanted = conditions.get("GenerationNotMatch")
    return not (unwanted is not None and live == unwanted)


def _check(response: Any, storage: Any, bucket: str, name: str, conditions: dict[str, int]) -> bool:
    if conditions and not _holds(conditions, _live_generation(storage, bucket, name)):
        _error(
            response,
            HTTPStatus.PRECONDITION_FAILED,
            "conditionNotMet",
            "At least one of the pre-conditions you specified did not hold.",
        )
        return False
    return True


def _upload_name(request: Any) -> str | None:
    if "name" in request.query:
        return str(request.query["name"][0])
    data = request.data
    if isinstance(data, dict):
        meta = data.get("meta", data)
        if isinstance(meta, dict) and meta.get("name"):
            return str(meta["name"])
    return None


def insert(original: Handler) -> Handler:
    def handle(request: Any, response: Any, storage: Any) -> None:
        if "upload_id" in request.query:
            upload_partial(objects.upload_partial)(request, response, storage)
            return
        bucket = request.params["bucket_name"]
        name = _upload_name(request)
        conditions = _conditions(request)
        if name is not None and not _check(response, storage, bucket, name, conditions):
            return
        original(request, response, storage)
        location = response._headers.get("Location")
        if location and name is not None:
            upload_id = parse_qs(urlparse(location).query)["upload_id"][0]
            _SESSIONS[upload_id] = (bucket, name, conditions)

    return handle


_FINAL = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+)")


def upload_partial(original: Handler) -> Handler:
    def handle(request: Any, response: Any, storage: Any) -> None:
        upload_id = request.query["upload_id"][0]
        session = _SESSIONS.get(upload_id)
        final = _FINAL.fullmatch((request.get_header("Content-Range") or "").strip())
        if session is not None and final is not None:
            bucket, name, conditions = session
            if not _check(response, storage, bucket, name, conditions):
                request.data  # noqa: B018 - read the body, so the connection stays in step
                return
        original(request, response, storage)
        if response.status == HTTPStatus.OK:
            _SESSIONS.pop(upload_id, None)

    return handle


def _range(request: Any, response: Any, size: int) -> bool:
    """Rewrite a suffix range to the absolute one; answer 416 for one past the end."""
    handler = request._request_handler
    value = handler.headers.get("Range")
    if not value:
        return True
    suffix = re.fullmatch(r"\s*bytes=-(\d+)\s*", value)
    if suffix:
        start = max(0, size - int(suffix.group(1)))
        handler.headers.replace_header("Range", f"bytes={start}-")
        value = f"bytes={start}-"
    start_match = re.fullmatch(r"\s*bytes=(\d+)-\d*\s*", value)
    if start_match and int(start_match.group(1)) >= size:
        response.status = HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE
        response["Content-Range"] = f"bytes */{size}"
        return False
    return True


def read(original: Handler, *, media: bool) -> Handler:
    """A metadata read (JSON) or a download (``alt=media``, the XML API, public URLs)."""

    def handle(request: Any, response: Any, storage: Any) -> None:
        bucket = request.params["bucket_name"]
        name = request.params["object_id"]
        try:
            obj = storage.get_file_obj(bucket, name)
        except NotFound:
            original(request, response, storage)  # the emulator's own 404
            return
        live = int(obj["generation"])
        wanted = request.query.get("generation", [None])[0]
        if wanted is not None and int(wanted) != live:
            _error(response, HTTPStatus.NOT_FOUND, "notFound", f"No such object: {bucket}/{name}")
            return
        if not _check(response, storage, bucket, name, _conditions(request)):
            return
        downloading = media or request.query.get("alt", [None])[0] == "media"
        if downloading and not _range(request, response, int(obj["size"])):
            return
        if not (downloading and _ranged_download(request, response, storage, obj)):
            original(request, response, storage)
        if downloading and response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
            response["x-goog-generation"] = str(live)
            response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))
            response["x-goog-stored-content-length"] = str(obj["size"])
            # The whole object's hashes, on ranged answers too.
            response["X-Goog-Hash"] = f"crc32c={obj['crc32c']},md5={obj['md5Hash']}"
            if obj.get("contentDisposition") and "Content-Disposition" not in response._headers:
                response["Content-Disposition"] = obj["contentDisposition"]

    return handle


def delete(original: Handler) -> Handler:
    def handle(request: Any, response: Any, storage: Any) -> None:
        bucket = request.params["bucket_name"]
        name = request.params["object_id"]
        if _check(response, storage, bucket, name, _conditions(request)):
            original(request, response, storage)

    return handle


def compose(original: Handler) -> Handler:
    def handle(request: Any, response: Any, storage: Any) -> None:
        bucket = request.params["bucket_name"]
        if not _check(response, storage, bucket, request.params["object_id"], _conditions(request)):
            return
        for source in request.data.get("sourceObjects", ()):
            wanted = (source.get("objectPreconditions") or {}).get("ifGenerationMatch")
            if wanted is not None and not _check(
                response, storage, bucket, source["name"], {"GenerationMatch": int(wanted)}
            ):
                return
        original(request, response, storage)

    return handle


def xml_upload(original: Handler) -> Handler:
    def handle(request: Any, response: Any, storage: Any) -> None:
        bucket = request.params["bucket_name"]
        name = request.params["object_id"]
        limits = request.get_header("x-goog-content-length-range")
        size = len(request.data or b"")
        if limits:
            low, high = (int(part) for part in limits.split(","))
            if not low <= size <= high:
                _error(
                    response,
                    HTTPStatus.BAD_REQUEST,
                    "EntityTooLarge" if size > high else "EntityTooSmall",
                    f"Your proposed upload is {size} bytes, outside {limits}",
                )
                return
        if not _check(response, storage, bucket, name, _conditions(request)):
            return
        if request.data is None:
            request._data = b""  # an empty PUT is an empty object, not a crash
        original(request, response, storage)

    return handle


def ls(original: Handler) -> Handler:
    def handle(request: Any, response: Any, storage: Any) -> None:
        original(request, response, storage)
        limit = request.query.get("maxResults", [None])[0]
        if response.status != HTTPStatus.OK or limit is None:
            return
        import json

        listing = json.loads(response._content)
        entries = sorted(
            [(item["name"], "item", item) for item in listing.get("items") or ()]
            + [(prefix, "prefix", prefix) for prefix in listing.get("prefixes") or ()]
        )
        after = request.query.get("pageToken", [""])[0]
        entries = [entry for entry in entries if entry[0] > after]
        page, rest = entries[: int(limit)], entries[int(limit) :]
        result: dict[str, Any] = {
            "kind": "storage#objects",
            "items": [entry[2] for entry in page if entry[1] == "item"],
            "prefixes": [entry[2] for entry in page if entry[1] == "prefix"],
        }
        if rest:
            result["nextPageToken"] = page[-1][0]
        response.json(result)

    return handle


def _read_whole_body(original: Handler) -> Handler:
    def read(request_handler: Any) -> bytes | None:
        length = request_handler.headers.get("Content-Length")
        if length:
            data = request_handler.rfile.read(int(length))
            if len(data) != int(length):
                raise _CutBody(f"got {len(data)} of {length} bytes")
            return bytes(data)
        return original(request_handler)  # type: ignore[no-any-return]

    return read


def _object_path(self: Any, bucket_name: str, file_name: str) -> str:
    return f"{bucket_name}/{hashlib.sha256(file_name.encode()).hexdigest()}"


def _session_path(self: Any, file_id: str) -> Any:
    return self._store._disk_path(self._object_path(RESUMABLE_DIR, self.safe_id(file_id)))


def _received(self: Any, file_id: str) -> int:
    path = _session_path(self, file_id)
    return path.stat().st_size if path.exists() else 0


def _append(
    self: Any,
    file_id: str,
    content: bytes | None,
    total_size: int | None = None,
    expected_start: int | None = None,
) -> bytes | None:
    """The stock method's contract (the whole content once complete, else ``None``),
    without rewriting the whole upload on every chunk."""
    path = _session_path(self, file_id)
    size = _received(self, file_id)
    if expected_start is not None and expected_start != size:
        raise BadRequest(f"Invalid Content-Range start: expected {size}, got {expected_start}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        handle.write(content or b"")
    size += len(content or b"")
    if total_size is None or size < total_size:
        return None
    return path.read_bytes()[:total_size]  # type: ignore[no-any-return]


_stock_create_file = Storage.create_file


def _create_file(
    self: Any,
    bucket_name: str,
    file_name: str,
    content: bytes,
    file_obj: dict[str, Any],
    file_id: str | None = None,
) -> None:
    session = _session_path(self, file_id) if file_id else None
    if session is None or not session.exists() or session.stat().st_size != len(content):
        _stock_create_file(self, bucket_name, file_name, content, file_obj, file_id)
        return
    if bucket_name not in self.buckets:
        raise NotFound
    target = self._store._disk_path(self._object_path(bucket_name, file_name))
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(session, target)
    self.objects.setdefault(bucket_name, {})[file_name] = file_obj
    self.delete_resumable_file_obj(file_id)
    self._write_config_to_file()


def _ranged_download(request: Any, response: Any, storage: Any, obj: dict[str, Any]) -> bool:
    """Serve ``bytes=a-b`` / ``bytes=a-`` from the object's file, reading just that range."""
    match = re.fullmatch(r"\s*bytes=(\d+)-(\d*)\s*", request.get_header("Range") or "")
    if match is None:
        return False
    path = storage._store._disk_path(
        storage._object_path(request.params["bucket_name"], request.params["object_id"])
    )
    size = int(obj["size"])
    start = int(match.group(1))
    end = min(size - 1, int(match.group(2))) if match.group(2) else size - 1
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(end - start + 1)
    response.status = HTTPStatus.PARTIAL_CONTENT
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    for key, value in (obj.get("metadata") or {}).items():
        if value is not None:
            response[f"x-goog-meta-{key}"] = str(value)
    if "response-content-disposition" in request.query:
        response["Content-Disposition"] = request.query["response-content-disposition"][0]
    response.write_file(data, content_type=obj.get("contentType"))
    return True


def patch() -> None:
    wrappers = {
        objects.insert: insert(objects.insert),
        objects.upload_partial: upload_partial(objects.upload_partial),
        objects.get: read(objects.get, media=False),
        objects.download: read(objects.download, media=True),
        objects.delete: delete(objects.delete),
        objects.compose: compose(objects.compose),
        objects.xml_upload: xml_upload(objects.xml_upload),
        objects.ls: ls(objects.ls),
    }
    for _, methods in server.HANDLERS:
        for method, handler in list(methods.items()):
            if handler in wrappers:
                methods[method] = wrappers[handler]
    # Uploads POSTed without the /upload prefix fall back to objects.insert by name.
    objects.insert = wrappers[objects.insert]
    server._read_raw_data = _read_whole_body(server._read_raw_data)
    socketserver.TCPServer.request_queue_size = 128
    Storage._object_path = _object_path  # type: ignore[method-assign]
    Storage.get_resumable_byte_count = _received  # type: ignore[method-assign]
    Storage.add_to_resumable_upload = _append  # type: ignore[method-assign]
    Storage.create_file = _create_file  # type: ignore[method-assign]
    handle_one = server.RequestHandler.handle_one_request

    def handle_one_request(self: Any) -> None:
        try:
            handle_one(self)
        except _CutBody:
            self.close_connection = True  # nothing stored: the client went away

    server.RequestHandler.handle_one_request = handle_one_request  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", required=True, help="where objects are kept")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    patch()
    emulator = server.create_server("127.0.0.1", args.port, in_memory=False, data_dir=args.data)
    emulator.run()


if __name__ == "__main__":
    main(sys.argv[1:])
