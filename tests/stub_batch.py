"""An OpenAI Batch API stub that tests run on 127.0.0.1: `/v1/files` (upload with purpose "batch", content),
`/v1/batches` (create with metadata, retrieve, list newest first), output and error files in OpenAI's JSONL
format, and plain `/v1/chat/completions` for requests made directly.

A batch is `in_progress` until `complete_after` seconds after it was created, then it runs every line through
`line(custom_id, body, n)` (n counts batch lines from 1), which returns a `Line`: an answer (status 200), an
error (any other status: the line goes to the error file), or `missing` (not run: the batch ends `expired`).
`pause` holds the reply of the first request of a kind ("upload", "create", "download") for that many seconds,
so that a test can kill the worker waiting for it; `fail` answers the first request of a kind with that HTTP
status instead; `seen` lists each kind as it arrives. `forge(batch)` returns lines (bytes, JSON or not) added to a
batch's output file after its own: what a forged or corrupted file would hold. `open_ids` records, at each
batch's creation, the custom_ids of every batch still in progress (what the provider's queue held).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.stub_openai import completion


@dataclass
class Line:
    status: int = 200
    body: dict = field(default_factory=dict)
    missing: bool = False


def answer_with_cache(custom_id: str, body: dict, n: int) -> Line:
    """A reply naming its request, 1,000 prompt tokens of which 800 cached."""
    return Line(body=completion(f"batch reply {custom_id}", prompt_tokens=1000, completion_tokens=50,
                                cached_tokens=800))


class StubBatchAPI:
    def __init__(self, line: Callable[[str, dict, int], Line] = answer_with_cache, *, complete_after: float = 0.5,
                 pause: dict[str, float] | None = None, fail: dict[str, int] | None = None,
                 direct: Callable[[dict], dict] | None = None,
                 forge: Callable[[dict], list[bytes]] | None = None):
        self.line, self.complete_after = line, complete_after
        self.pause, self.fail = dict(pause or {}), dict(fail or {})
        self.direct = direct or (lambda request: completion("direct reply"))
        self.forge = forge or (lambda batch: [])
        self.open_ids: list[list[str]] = []
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}  # id → the Batch object, plus "_custom_ids"
        self.seen: list[str] = []
        self.direct_requests: list[dict] = []
        self.lines = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubBatchAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # What the tests look at ---------------------------------------------------------------------------------

    def submitted_ids(self) -> list[str]:
        """Every custom_id of every batch created, in order (one twice: the same request submitted twice)."""
        return [custom_id for batch in self.batches.values() for custom_id in batch["_custom_ids"]]

    def count(self, kind: str) -> int:
        return self.seen.count(kind)

    # The API --------------------------------------------------------------------------------------------------

    def _arrived(self, kind: str) -> None:
        with self._lock:
            self.seen.append(kind)
            first = self.seen.count(kind) == 1
        if first and self.pause.get(kind):
            time.sleep(self.pause[kind])

    def _upload(self, content_type: str, data: bytes) -> dict:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + data)
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        content = parts["file"].get_payload(decode=True)
        purpose = parts["purpose"].get_payload(decode=True).decode()
        assert purpose == "batch", purpose
        with self._lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = content
        self._arrived("upload")
        return {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": parts["file"].get_filename(), "purpose": "batch", "status": "processed"}

    def _create(self, request: dict) -> dict:
        lines = [json.loads(line) for line in self.files[request["input_file_id"]].splitlines() if line.strip()]
        with self._lock:
            batch_id = f"batch_{len(self.batches) + 1}"
            self.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": request["endpoint"], "errors": None,
                "input_file_id": request["input_file_id"], "completion_window": request["completion_window"],
                "status": "in_progress", "output_file_id": None, "error_file_id": None,
                "created_at": int(time.time()), "metadata": request.get("metadata"),
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "_custom_ids": [line["custom_id"] for line in lines], "_lines": lines, "_at": time.monotonic(),
            }
            for other in self.batches.values():  # finish what is due, to see what the queue holds
                if other["status"] == "in_progress" and time.monotonic() - other["_at"] >= self.complete_after:
                    self._finish(other)
            self.open_ids.append([custom_id for other in self.batches.values() if other["status"] == "in_progress"
                                  for custom_id in other["_custom_ids"]])
        self._arrived("create")
        return self._public(batch_id)

    def _public(self, batch_id: str) -> dict:
        with self._lock:
            batch = self.batches[batch_id]
            if batch["status"] == "in_progress" and time.monotonic() - batch["_at"] >= self.complete_after:
                self._finish(batch)
            return {key: value for key, value in batch.items() if not key.startswith("_")}

    def _finish(self, batch: dict) -> None:
        output, errors, missing = [], [], False
        for line in batch["_lines"]:
            self.lines += 1
            result = self.line(line["custom_id"], line["body"], self.lines)
            if result.missing:
                missing = True
                continue
            record = {"id": f"batch_req_{self.lines}", "custom_id": line["custom_id"], "error": None,
                      "response": {"status_code": result.status, "request_id": f"req_{self.lines}",
                                   "body": result.body}}
            (output if result.status == 200 else errors).append(json.dumps(record).encode())
        answered = len(output)
        output += self.forge(batch)
        for name, records in (("output_file_id", output), ("error_file_id", errors)):
            if records:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = b"\n".join(records)
                batch[name] = file_id
        batch["status"] = "expired" if missing else "completed"
        batch["request_counts"] = {"total": len(batch["_lines"]), "completed": answered, "failed": len(errors)}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                if path.startswith("/v1/files/") and path.endswith("/content"):
                    file_id = path.split("/")[3]
                    stub._arrived("download")
                    return self._send(200, stub.files[file_id], "application/octet-stream")
                if path == "/v1/batches":
                    with stub._lock:
                        ids = list(reversed(stub.batches))
                    data = [stub._public(batch_id) for batch_id in ids]
                    return self._json({"object": "list", "data": data, "has_more": False,
                                       "first_id": ids[0] if ids else None, "last_id": ids[-1] if ids else None})
                if path.startswith("/v1/batches/"):
                    stub._arrived("poll")
                    return self._json(stub._public(path.split("/")[3]))
                self._json({"error": {"message": f"no route {path}"}}, 404)

            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                kind = {"/v1/files": "upload", "/v1/batches": "create"}.get(self.path)
                if kind and stub.fail.get(kind):
                    status = stub.fail.pop(kind)
                    stub.seen.append(f"failed {kind}")
                    return self._json({"error": {"message": f"stub {kind} failure", "type": "server_error"}}, status)
                try:
                    if self.path == "/v1/files":
                        return self._json(stub._upload(self.headers["Content-Type"], data))
                    if self.path == "/v1/batches":
                        return self._json(stub._create(json.loads(data)))
                    if self.path == "/v1/chat/completions":
                        request = json.loads(data)
                        stub.direct_requests.append(request)
                        return self._json(stub.direct(request))
                    self._json({"error": {"message": f"no route {self.path}"}}, 404)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _json(self, body: dict, status: int = 200):
                self._send(status, json.dumps(body).encode(), "application/json")

            def _send(self, status: int, payload: bytes, content_type: str):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the worker was killed while it waited

        return Handler
