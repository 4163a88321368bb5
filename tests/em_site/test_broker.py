"""The server-less default broker: a worker that polls while another process publishes must only ever
see whole messages (kombu's own filesystem transport lets it read a half-written, even empty, file)."""

import threading

from kombu import Connection

from em_site.broker import transport_for

MESSAGES = 300
BODY = "x" * 200_000  # large enough that a write takes a while, as a prompt with 256 examples does


def connect(folder) -> Connection:
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "polling_interval": 0.001}
    return Connection("filesystem://", transport=transport_for("filesystem://"), transport_options=options)


def test_a_consumer_polling_during_publishing_receives_every_message_whole(tmp_path):
    def publish():
        with connect(tmp_path) as connection:
            queue = connection.SimpleQueue("slots")
            for n in range(MESSAGES):
                queue.put({"n": n, "body": BODY})

    publisher = threading.Thread(target=publish)
    publisher.start()
    received = []
    with connect(tmp_path) as connection:
        queue = connection.SimpleQueue("slots")
        while len(received) < MESSAGES:
            message = queue.get(timeout=30)
            assert message.payload["body"] == BODY
            received.append(message.payload["n"])
            message.ack()
    publisher.join()
    assert sorted(received) == list(range(MESSAGES))
    assert not list(tmp_path.iterdir()), "a message or a partial file was left behind"
