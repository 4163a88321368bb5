"""Shared fixtures. The suite runs against the real PostgreSQL and Redis of this machine
(DATABASE_URL / CELERY_BROKER_URL set by `make test`); it refuses to start without them."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection, connections
from django.test import Client, override_settings
from django.urls import reverse

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def pytest_sessionstart(session):
    from django.conf import settings

    if settings.VAR_DIR.resolve() == (ROOT / "var").resolve():
        # The checkout's var/ holds a developer's database, broker and collected static files (whose manifest
        # switches the settings to hashed file names): tests that read it pass or fail by what was run before.
        pytest.exit("The suite runs on a var directory of its own: set EM_VAR_DIR to an empty directory "
                    "(make test gives it a fresh one).", returncode=3)
    if settings.STATIC_COLLECTED:
        # A collected tree anywhere else (an EM_VAR_DIR or STATIC_ROOT reused after `collectstatic`) does the same.
        pytest.exit(f"Static files are collected at {settings.STATIC_ROOT}: the suite serves the app folders' own "
                    "files. Point EM_VAR_DIR at an empty directory and leave STATIC_ROOT unset.", returncode=3)
    if os.environ.get("EM_REQUIRE_SERVICES", "1") != "1":
        return
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.exit("Tests must run against PostgreSQL: set DATABASE_URL (make test does).", returncode=3)
    if not _reachable("127.0.0.1", 5432):
        pytest.exit("PostgreSQL is not reachable on 127.0.0.1:5432.", returncode=3)
    if not _reachable("127.0.0.1", 6379):
        pytest.exit("Redis is not reachable on 127.0.0.1:6379.", returncode=3)


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    """Django's own advice for test suites: the production hasher (PBKDF2, a million rounds) costs 0.2-0.4 s of
    CPU per user made or password checked, and the suite makes about a thousand users. Processes the tests
    start (workers, `manage.py`, the embedded app) keep the real hasher for the users they make themselves."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True, scope="session")
def _flush_by_delete():
    """Each transactional test (a live server, real workers) ends with Django's flush, which empties all ~50
    tables with one TRUNCATE: 0.2-0.5 s on PostgreSQL (new files for every table and index, whatever they hold),
    about 40 s of the suite. DELETE empties the few rows a test leaves in 0.01-0.03 s. The foreign keys are
    checked when the transaction commits, with every table empty; neither form resets the sequences.
    The content types and permissions stay: the flush's post_migrate signal would insert the same rows again
    (0.07-0.13 s), and no test makes its own."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush
    remade_by_post_migrate = {"django_content_type", "auth_permission"}

    def delete(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or not tables:
            return truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        emptied = [table for table in tables if table not in remade_by_post_migrate]
        # Table names come from Django's own model registry, quoted.
        return ["SET CONSTRAINTS ALL DEFERRED", *(f"DELETE FROM {self.quote_name(table)}" for table in emptied)]  # noqa: S608

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "sql_flush", delete)
        yield


@pytest.fixture(autouse=True)
def _xdist_group_is_honoured(request):
    """Tests that start worker or server processes (Celery workers, llama.cpp, gunicorn, a private PostgreSQL or
    Redis) share the xdist group `processes`, so one runs at a time: nothing they share would break side by side
    (each xdist worker has its own databases), but on 2 cores they only compete for the CPU. Measured on the full
    suite: 8 min 47 s with the group, 9 min 39 s without it.
    pytest-xdist marks a group by rewriting each item's node id; pytest 9.2 keeps node ids elsewhere and xdist
    3.8 then ignored the group without a word. Fail loudly instead of running such tests side by side."""
    grouped = request.node.get_closest_marker("xdist_group")
    if grouped and getattr(request.config.option, "loadgroup", False) and "@" not in request.node.nodeid:
        pytest.fail("pytest-xdist ignored this test's xdist_group mark, so it may run beside tests it must not "
                    "overlap: this pytest and pytest-xdist do not work together (see the pins in pyproject.toml).")


def make_user(username: str, *roles: str, **extra) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, **extra)
    for role in roles:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def alice(db) -> User:
    """A researcher."""
    return make_user("alice", "researcher")


@pytest.fixture
def bob(db) -> User:
    """An auditor."""
    return make_user("bob", "auditor")


@pytest.fixture
def carol(db) -> User:
    """A second auditor."""
    return make_user("carol", "auditor")


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(client, bob):
    client.force_login(bob)
    return client


def token_client(user: User):
    """An API client that sends `user`'s token, as a script would."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def open_next(client, queue) -> str:
    """Ask the queue for the auditor's next item (a POST, as the page's button does); returns where it leads."""
    response = client.post(reverse("annotate-next", args=[queue.pk]))
    assert response.status_code == 302
    return response["Location"]


@pytest.fixture
def fast_retries(settings):
    """Retries of the call engine without waiting: back-off of 10–20 ms, three attempts."""
    settings.GENERATION_BACKOFF_SECONDS = 0.01
    settings.GENERATION_BACKOFF_MAX_SECONDS = 0.02
    settings.GENERATION_MAX_ATTEMPTS = 3


def xdist_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


REDIS_DBS_PER_WORKER = {"broker": 0, "cache": 1}


def fresh_redis_url(use: str) -> str:
    """A Redis database of this xdist worker's own for `use` (a key of REDIS_DBS_PER_WORKER), flushed: each
    worker has two, counted from EM_TEST_REDIS_DB_BASE (1: worker gw0 has 1 and 2, gw1 3 and 4, ...)."""
    import redis

    base = int(os.environ.get("EM_TEST_REDIS_DB_BASE", "1"))
    url = f"redis://127.0.0.1:6379/{base + len(REDIS_DBS_PER_WORKER) * xdist_index() + REDIS_DBS_PER_WORKER[use]}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def redis_broker_url() -> str:
    return fresh_redis_url("broker")


class WorkerProcess:
    """A real `celery worker` process against the test database and a broker of the test's choosing."""

    def __init__(self, broker_url: str, env: dict | None = None, concurrency: int = 16, beat: bool = False):
        from django.conf import settings
        from django.db import connection

        db = connection.settings_dict
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "CELERY_BROKER_URL": broker_url,
            **(env or {}),
        }
        self.args = [
            sys.executable, "-m", "celery", "-A", "em_site", "worker", "-P", "threads",
            "-c", str(concurrency), "--without-gossip", "--without-mingle", "-l", "WARNING",
        ] + (["-B", "-s", str(settings.VAR_DIR / f"beat-test-{xdist_index()}")] if beat else [])
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env)
        return self

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 15) -> bool:
        """SIGTERM (a warm shutdown), then kill -9 after `timeout` s. Whether the worker stopped by itself."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # Celery's SIGUSR1 handler prints every thread's stack: the test's captured output then says
                # where the worker was stuck.
                self.proc.send_signal(signal.SIGUSR1)
                time.sleep(2)
                self.kill9()
                return False
        return True


class RedisServer:
    """A real redis-server of the test's own on a free port, for tests that stop and restart the broker:
    restarting the machine's shared Redis would break whatever the other test processes are doing."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
        )
        wait_until(self.answers, timeout=20, message=f"redis-server on port {self.port}")
        return self

    def kill9(self) -> None:
        """Crash it: everything queued or unacknowledged is gone (no persistence)."""
        self.proc.kill()
        self.proc.wait(10)

    def answers(self) -> bool:
        import redis

        try:
            return redis.Redis(port=self.port, socket_timeout=1).ping()
        except redis.ConnectionError:
            return False


@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    if server.proc.poll() is None:
        server.kill9()


def set_celery_options(**options) -> None:
    """Change this process's Celery configuration. The app reads Django's settings under the CELERY namespace,
    and Celery (5.6) then looks every option up by its namespaced name: one set by its plain name is ignored."""
    from em_site.celery import app

    app.conf.update({f"CELERY_{name.upper()}": value for name, value in options.items()})


@contextmanager
def reports_computed_here() -> Iterator[list]:
    """Reports (judging.reports) enqueued in the block are computed in this process when it ends, by the task's own
    code (Celery's eager mode: the task runs where it is sent, without broker or worker), for tests that start no
    worker. Yields the tasks sent (callbacks)."""
    from django.test import TestCase

    from em_site.celery import app

    eager = app.conf.task_always_eager
    set_celery_options(task_always_eager=True)
    try:
        with TestCase.captureOnCommitCallbacks(execute=True) as sent:
            yield sent
    finally:
        set_celery_options(task_always_eager=eager)


def computed(client, url: str, data: dict | None = None, **extra):
    """The page once the reports it shows are computed: asked once (which enqueues what it lacks, computed here
    as a worker would), then asked again and returned."""
    with reports_computed_here():
        first = client.get(url, data, **extra)
    assert first.status_code == 200, first.status_code
    return client.get(url, data, **extra)


def point_app_at(broker_url: str, transport_options: dict | None = None) -> None:
    """Make this process send tasks to another broker. Celery prefers the CELERY_BROKER_URL environment
    variable over `broker_url`, so the write URL is set explicitly. Celery and kombu cache connection and
    producer pools (kombu per broker URL), so all are dropped: closed pools would refuse every send."""
    from kombu import pools

    from em_site.broker import transport_for
    from em_site.celery import app

    set_celery_options(broker_url=broker_url, broker_write_url=broker_url, broker_read_url=broker_url,
                       broker_transport=transport_for(broker_url))
    if transport_options is not None:
        set_celery_options(broker_transport_options=transport_options)
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def celery_worker_factory(transactional_db, redis_broker_url):
    """Start real worker processes; the test process sends to the same broker. Killed at teardown."""
    from em_site.celery import app

    workers: list[WorkerProcess] = []
    old = app.conf.broker_url, app.conf.broker_transport_options
    point_app_at(redis_broker_url)

    def start(**kwargs) -> WorkerProcess:
        worker = WorkerProcess(kwargs.pop("broker_url", redis_broker_url), **kwargs).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    point_app_at(*old)


def wait_until(predicate, timeout: float = 60, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def in_threads(*calls: Callable[[], object], together: bool = False, timeout: float = 120) -> list:
    """Run each call in a thread of its own and return their results in order, once all have ended. Each thread
    closes its own database connection (it would outlive the test database). The first exception of any call is
    raised here, and a call still running after `timeout` seconds fails the test (its thread, a daemon, cannot keep
    the suite from ending). `together`: the calls wait for each other at a barrier, so that they race."""
    barrier = threading.Barrier(len(calls)) if together else None
    results: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], object]) -> None:
        try:
            if barrier:
                barrier.wait(timeout)
            results[index] = call()
        except BaseException as exc:  # noqa: BLE001 - raised in the test's own thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index, call), daemon=True) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    still = sum(thread.is_alive() for thread in threads)
    assert not still, f"{still} of {len(threads)} threads still running after {timeout}s"
    if errors:
        raise errors[0]
    return results


def free_port() -> int:
    """A free port below Linux's ephemeral range (32768+), so outgoing connections made by other tests
    in the meantime cannot take it before our server binds it."""
    import random

    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def serving(command: list[str], port: int, what: str, env: dict | None = None) -> Iterator[str]:
    """A local OpenAI-compatible server process (`command`, listening on `port`): its base URL once its /models
    answers, the process stopped afterwards (for a fixture to `yield from`)."""
    from transcripts.local_model import wait_for_server

    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_server(f"{url}/models", proc, what)
    except RuntimeError:
        proc.kill()
        raise
    yield url
    proc.terminate()
    proc.wait(15)


@pytest.fixture(scope="session")
def local_llm_url() -> Iterator[str]:
    """The real llama.cpp server with SmolLM2, started once per test process."""
    from transcripts.local_model import server_command, server_env

    port = free_port()
    yield from serving(server_command(port=port), port, "The local llama.cpp server", server_env())


@pytest.fixture(autouse=True)
def _restore_migration_data(request):
    """Transactional tests (live_server, real workers) end with a flush that also deletes the rows data
    migrations made: the role groups and the default taxonomy. Every database test starts with them."""
    names = set(request.fixturenames)
    for fixture in ("transactional_db", "live_server", "db"):
        if fixture in names:
            request.getfixturevalue("transactional_db" if fixture == "live_server" else fixture)
            break
    else:
        return
    from judging.annotation.default_taxonomy import load_default_taxonomy
    from judging.models import PersonaCategory, Taxonomy

    for role in ("auditor", "researcher", "admin"):
        Group.objects.get_or_create(name=role)
    load_default_taxonomy(Taxonomy, PersonaCategory)


LAPTOP = {"width": 1366, "height": 768}  # the screen the pages are designed for (docs/ui.md)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


class ProcessBrowser:
    """Playwright's sync API and Debian's chromium (`playwright install` cannot download here), one of each per
    test process: a launch costs ~1.7 s of CPU (Playwright's driver and the browser), and the suite has ~30
    browser modules.

    The sync API runs its event loop in this thread and marks it as running between its calls. Other tests must
    not see that: Django would treat their ORM calls as async-context code, and asyncio.run would refuse to start.
    So the loop is marked running only while a browser test holds the browser (`chromium`)."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self._manager = sync_playwright()
        self._playwright = self._manager.start()
        self._loop = asyncio.get_running_loop()
        self._browser = None
        asyncio._set_running_loop(None)

    def take(self):
        """The browser, for one test (launched again if it crashed in an earlier one)."""
        asyncio._set_running_loop(self._loop)
        if self._browser is None or not self._browser.is_connected():
            self._browser = self._playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                             args=CHROMIUM_ARGS, headless=True)
        return self._browser

    def give_back(self) -> None:
        """Close the test's contexts (cookies, storage, pages) and its database connections (those it opened
        while the loop ran are its own: see `chromium`), then hide the loop from the tests that follow."""
        for context in self._browser.contexts:
            context.close()
        connections.close_all()
        asyncio._set_running_loop(None)

    def stop(self) -> None:
        asyncio._set_running_loop(self._loop)
        if self._browser is not None and self._browser.is_connected():
            self._browser.close()
        self._manager.__exit__()


@pytest.fixture(scope="session")
def _process_browser() -> Iterator[ProcessBrowser]:
    browser = ProcessBrowser()
    yield browser
    browser.stop()


@pytest.fixture
def chromium(_process_browser, monkeypatch):
    """This process's chromium, for one test. While the test runs, Playwright's loop counts as running in this
    thread, so the test's own ORM calls are allowed as async-context code (`DJANGO_ALLOW_ASYNC_UNSAFE`) and get a
    connection of their own (asgiref keys it by context, not thread), which is closed after the test or it would
    outlive the test database. A test whose own code runs an event loop (asyncio.run) takes this fixture after
    the fixtures that do."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    yield _process_browser.take()
    _process_browser.give_back()


def logged_in_page(browser, live_server, user: User, **context):
    """A new page (in a context of its own, at laptop size unless `context` says otherwise) of `user`, logged in
    by a session cookie rather than the login form. `page.base` is the server's URL; the page's script errors are
    kept in `page.errors`, and its dialogs' messages in `page.dialogs` (each dismissed)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(**{"viewport": LAPTOP, **context})
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    page = context.new_page()
    page.base, page.errors, page.dialogs = live_server.url, [], []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    return page


@pytest.fixture
def page(chromium, live_server, alice):
    """A page of alice, the researcher, logged in on the live server (logged_in_page; downloads accepted)."""
    return logged_in_page(chromium, live_server, alice, accept_downloads=True)


AUDITOR_HOME = r"/annotate/$"  # where an auditor lands after logging in: their queues


def log_in(browser, base: str, username: str, password: str = PASSWORD, *, lands_on: str | None = None):
    """A new page (at laptop size) logged in through the login form, as a person does; waits for the page the login
    leads to (`lands_on`, a regular expression of its URL, when given)."""
    page = browser.new_context(viewport=LAPTOP).new_page()
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.press("input[name=password]", "Enter")
    if lands_on is not None:
        page.wait_for_url(re.compile(lands_on))
    return page


def take_first_item(page, base: str, queue) -> None:
    """Open the queue and take its first item with Enter (claiming is a POST: the page offers a button)."""
    page.goto(f"{base}{reverse('annotate-next', args=[queue.pk])}")
    # Enter on the start button (focused first: under load the press can come before autofocus is applied).
    with page.expect_navigation():
        page.locator("#next-link").press("Enter")


def answer_queue_by_keyboard(page, base: str, queue, answer: Callable[[object], None], *, hidden: str) -> int:
    """An auditor's walk through a queue with keys only, as the workspace is meant to be used: take the first item,
    then until the queue says it is done, `answer(page)` presses the item's keys, Enter submits, and Enter again
    takes the next. `hidden` (what an item shows only once submitted, such as the model) must not be on the page
    before the submit and must be in the reveal after it. Returns how many items were answered."""
    take_first_item(page, base, queue)
    done = 0
    while page.locator("#queue-done").count() == 0:
        page.wait_for_selector("#annotate[data-ready='1']")
        assert hidden not in page.locator("body").inner_text()  # blind before submitting
        answer(page)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        # The keys are bound once the page's script has run (data-ready), not when the button first appears.
        page.wait_for_selector("#annotate[data-submitted='1'][data-ready='1']")
        assert hidden in page.locator("#reveal").inner_text()  # revealed after submitting
        with page.expect_navigation():
            page.keyboard.press("Enter")
        done += 1
    return done


@pytest.fixture(scope="session")
def local_embedder_url() -> Iterator[str]:
    """The real local embedding server (all-MiniLM-L6-v2 from its PyPI wheel, discovery.local_embedder),
    started once per test process."""
    from django.conf import settings

    port = free_port()
    command = [sys.executable, "-m", "discovery.local_embedder", "--port", str(port),
               "--cache", str(settings.VAR_DIR / "models")]
    yield from serving(command, port, "The local embedding server")
