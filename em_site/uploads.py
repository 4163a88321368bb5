"""An upload larger than IMPORT_MAX_BYTES is not stored: the form then refuses it by its size, with the limit."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler


class SizeLimitedUploadHandler(FileUploadHandler):
    """First in FILE_UPLOAD_HANDLERS. Past the limit it hands no more data to the handlers after it (memory,
    temporary file), so an oversized upload never fills the disk; at the end it gives the form an empty file
    that keeps the real size, and the form's size check (transcripts.importing.refuse_oversized) says why."""

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if start + len(raw_data) > settings.IMPORT_MAX_BYTES:
            return None
        return raw_data

    def file_complete(self, file_size: int) -> SimpleUploadedFile | None:
        if file_size <= settings.IMPORT_MAX_BYTES:
            return None  # the next handler's file is complete
        refused = SimpleUploadedFile(self.file_name, b"", self.content_type)
        refused.size = file_size
        return refused
