"""Multipart uploads (datasets, model imports), streamed to disk under their own cap."""

from __future__ import annotations

import io
from pathlib import Path

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from service.datasets import ReceivedUpload
from service.errors import MalformedRequest, PayloadTooLarge

MULTIPART = "multipart/form-data"
# Werkzeug applies this to its parse buffer too (one 64 KiB read plus what it has not yet
# searched for a boundary), so it must stay well above the read size.
MAX_TEXT_FIELD_BYTES = 1024 * 1024
MAX_FORM_PARTS = 64
# What is read from the request at a time, under werkzeug's 64 KiB reads: gunicorn copies
# what it has read ahead (up to 1 MiB) on every read, so smaller reads cost more copying.
READ_SIZE = 1024 * 1024


class MultipartUpload:
    """A multipart body, streamed to disk when the service asks for it.

    The app-wide body cap (KERAS_SERVICE_MAX_BODY_BYTES) is for JSON; an upload has its own
    cap (`setting` names it: KERAS_SERVICE_MAX_DATASET_BYTES, ..._MAX_IMPORT_BYTES), enforced
    while reading, so an endless body stops at the cap. Files go straight to disk through
    werkzeug's parser, chunk by chunk.
    """

    def __init__(self, flask_request, max_bytes: int, setting: str):
        self.request = flask_request
        self.max_bytes = max_bytes
        self.setting = setting
        self.content_length = flask_request.content_length

    def receive(self, new_part) -> ReceivedUpload:
        if self.content_length is not None and self.content_length > self.max_bytes:
            raise self._too_large()
        self.request.max_content_length = self.max_bytes
        parser = FormDataParser(stream_factory=new_part, max_form_memory_size=MAX_TEXT_FIELD_BYTES,
                                max_form_parts=MAX_FORM_PARTS, silent=False)
        counted = _CountingReader(self.request.stream)
        try:
            _, form, files = parser.parse(io.BufferedReader(counted, READ_SIZE),
                                          self.request.mimetype, self.content_length,
                                          self.request.mimetype_params)
        except RequestEntityTooLarge:
            if counted.count >= self.max_bytes:
                raise self._too_large() from None
            # werkzeug's parse buffer holds what it has not yet split into parts.
            raise PayloadTooLarge(f"A text field of the form is larger than "
                                  f"{MAX_TEXT_FIELD_BYTES:,} bytes, no part boundary comes "
                                  f"within that many bytes, or the form has more than "
                                  f"{MAX_FORM_PARTS} parts; send data as files.") from None
        except ValueError as error:
            raise MalformedRequest(f"The multipart body cannot be parsed: {error}.") from None
        if None in form or None in files:
            raise MalformedRequest("A part of the multipart body has no name; expected "
                                   "Content-Disposition: form-data; name=\"...\" on each.")
        return ReceivedUpload(
            fields={key: form.getlist(key) for key in form},
            files=[(key, Path(upload.stream.name)) for key, upload in files.items(multi=True)])

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The upload is larger than the cap of {self.max_bytes:,} bytes "
                               f"({self.setting}).")


class _CountingReader(io.RawIOBase):
    """The request stream, counting what was read (to tell which cap a 413 hit)."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        buffer[:len(data)] = data
        self.count += len(data)
        return len(data)
