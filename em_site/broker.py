"""The server-less default broker: kombu's filesystem transport, with every file it writes published atomically.

kombu 5.7's filesystem transport creates a file, then locks and writes it: the message files (`_put`) and
the exchange's binding table (`_queue_bind`). Readers (`_get`, `get_table`) can open such a file while it is
still empty, and json.loads("") kills the consumer ("Unrecoverable error") or the publisher. Two processes
binding at once can also truncate each other's table. Here each file is written under a name no reader
looks at and renamed into place in the same folder, so readers see the old file or the new one, whole.
"""

import os
import uuid
from pathlib import Path
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


def _write_atomically(path: Path, data: object) -> None:
    partial = path.with_name(path.name + ".part")  # `_get` takes only names ending "<queue>.msg"
    try:
        partial.write_bytes(str_to_bytes(dumps(data)))
        os.replace(partial, path)
    except OSError as exc:
        raise ChannelError(f"Cannot write {str(path)!r}") from exc


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        # Same name as kombu's, so ordering by name still means ordering by publish time.
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        _write_atomically(Path(self.data_folder_out) / name, payload)

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        table_file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        # Writers of a table take turns on a lock file of its own; readers never wait, the rename keeps them safe.
        with open(table_file.with_name(table_file.name + ".lock"), "wb") as turn:
            filesystem.lock(turn, filesystem.LOCK_EX)
            try:
                table = self.get_table(exchange)
                if binding not in table:
                    _write_atomically(table_file, [binding, *table])
            finally:
                filesystem.unlock(turn)


class Transport(filesystem.Transport):
    Channel = Channel


def is_serverless(broker_url: str) -> bool:
    """True for the embedded default: messages are files under var/, no broker server runs."""
    return broker_url.startswith("filesystem://")


def serverless_options(broker_dir: Path) -> dict:
    """Celery's transport options for the server-less broker kept under `broker_dir`; creates its folders."""
    for sub in ("queue", "processed", "control"):
        (broker_dir / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(broker_dir / "queue"),
        "data_folder_out": str(broker_dir / "queue"),
        "processed_folder": str(broker_dir / "processed"),
        "control_folder": str(broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }


def transport_for(broker_url: str) -> str | None:
    """Celery's `broker_transport` for a broker URL: ours for filesystem://, else the URL's scheme decides."""
    return "em_site.broker:Transport" if is_serverless(broker_url) else None
