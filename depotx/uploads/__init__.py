"""Receiving uploads: each byte written once, straight into a storage.

Three ways in: :func:`receive_upload` streams a ``multipart/form-data`` request
into a storage, :class:`TusApp` takes resumable uploads (tus 1.0.0), and direct
uploads (``storage.prepare_upload`` → :class:`UploadTicket`) go from the browser
to the bucket, then ``storage.finalize_upload(token)`` makes a file of them.
"""

from ._direct import UploadTicket
from ._multipart import ReceivedFile, ReceivedUpload, receive_upload
from ._tus import TusApp, TusUpload

__all__ = [
    "ReceivedFile",
    "ReceivedUpload",
    "TusApp",
    "TusUpload",
    "UploadTicket",
    "receive_upload",
]
