"""The server-less default broker: kombu's filesystem transport, with messages published atomically.

kombu 5.7's filesystem `_put` creates the message file, then locks and writes it; `_get` moves and reads
files without taking that (advisory) lock. A worker polling while another process publishes can read the
file while it is still empty, and json.loads("") kills its consumer ("Unrecoverable error"). Writing
under a name `_get` skips and renaming it into place in the same folder makes a message appear whole.
"""

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        # Same name as kombu's, so ordering by name still means ordering by publish time.
        final = os.path.join(self.data_folder_out, f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg")
        partial = final + ".part"  # `_get` takes only names whose suffix after the first dot is "<queue>.msg"
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def transport_for(broker_url: str) -> str | None:
    """Celery's `broker_transport` for a broker URL: ours for filesystem://, else the URL's scheme decides."""
    return "em_site.broker:Transport" if broker_url.startswith("filesystem://") else None
