"""Receiving uploads: each byte written once, straight into a storage.

Two ways in: :func:`receive_upload` streams a ``multipart/form-data`` request
into a storage, and :class:`TusApp` takes resumable uploads (tus 1.0.0).
"""

from ._multipart import ReceivedFile, ReceivedUpload, receive_upload
from ._tus import TusApp, TusUpload

__all__ = ["ReceivedFile", "ReceivedUpload", "TusApp", "TusUpload", "receive_upload"]
