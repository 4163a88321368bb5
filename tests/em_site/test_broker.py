"""The server-less default broker: a worker that polls while another process publishes must only ever
see whole messages (kombu's own filesystem transport lets it read a half-written, even empty, file)."""

import multiprocessing

from kombu import Connection

from em_site.broker import serverless_options, transport_for

MESSAGES = 300
BODY = "x" * 200_000  # large enough that a write takes a while, as a prompt with 256 examples does


def connect(tmp_path) -> Connection:
    options = {**serverless_options(tmp_path), "polling_interval": 0.001}
    return Connection("filesystem://", transport=transport_for("filesystem://"), transport_options=options)


def publish(tmp_path) -> None:
    with connect(tmp_path) as connection:
        queue = connection.SimpleQueue("slots")
        for n in range(MESSAGES):
            queue.put({"n": n, "body": BODY})


def test_a_consumer_polling_during_publishing_receives_every_message_whole(tmp_path):
    # A process, as the web process and the worker are: kombu keeps declared bindings per process, so a
    # thread would skip binding the queue (and writing the exchange table) that the other thread declared.
    publisher = multiprocessing.get_context("spawn").Process(target=publish, args=(tmp_path,))
    publisher.start()
    received = []
    with connect(tmp_path) as connection:
        queue = connection.SimpleQueue("slots")
        while len(received) < MESSAGES:
            message = queue.get(timeout=30)
            assert message.payload["body"] == BODY
            received.append(message.payload["n"])
            message.ack()
    publisher.join(30)
    assert publisher.exitcode == 0
    assert sorted(received) == list(range(MESSAGES))
    assert not list((tmp_path / "queue").iterdir()), "a message or a partial file was left behind"
