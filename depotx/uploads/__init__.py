"""Receiving uploads: each byte written once, straight into a storage."""

from ._multipart import ReceivedFile, ReceivedUpload, receive_upload

__all__ = ["ReceivedFile", "ReceivedUpload", "receive_upload"]
