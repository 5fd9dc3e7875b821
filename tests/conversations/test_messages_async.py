import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from billing.models import UsageRecord
from conversations.callbacks import callback_schedule
from conversations.models import Message
from conversations.tasks import generate_reply
from conversations.webhooks import SIGNATURE_HEADER, verify
from tests.conversations.conftest import post_message


class Received(list):
    """The callbacks a test receiver got; `answers`: the statuses of its next answers (then 204)."""

    answers: list[int]

    def __init__(self):
        super().__init__()
        self.answers = []


@pytest.fixture
def callback_server(settings):
    settings.CALLBACK_ALLOW_PRIVATE_HOSTS = True  # the receiver is on loopback
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"headers": dict(self.headers), "body": body})
            self.send_response(received.answers.pop(0) if received.answers else 204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_async_answers_202_and_the_reply_can_be_polled(api_client, conversation_id, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_message(api_client, conversation_id, "later please", mode="async")
    assert response.status_code == 202
    reply_id = response.json()["id"]
    assert response["Location"] == f"/api/v1/messages/{reply_id}"
    polled = api_client.get(f"/api/v1/messages/{reply_id}").json()
    assert polled["status"] == "completed" and polled["content"].endswith("later please")


def test_a_failed_async_reply_shows_what_a_sync_call_would_have_been_told(api_client, conversation_id, simulator,
                                                                          django_capture_on_commit_callbacks):
    simulator.add_fault(fault="bad_request")
    sync = post_message(api_client, conversation_id, "refuse me", mode="sync")
    with django_capture_on_commit_callbacks(execute=True):
        reply_id = post_message(api_client, conversation_id, "refuse me too", mode="async").json()["id"]

    polled = api_client.get(f"/api/v1/messages/{reply_id}").json()
    assert polled["status"] == "failed"
    assert polled["error"] == {"code": sync.json()["error"]["code"], "message": sync.json()["error"]["message"]}
    assert "provider refused" in polled["error"]["message"] and "candidate" not in polled["error"]["message"]


def test_async_posts_a_signed_callback(api_client, policy, callback_server, django_capture_on_commit_callbacks, tenant):
    url, received = callback_server
    conversation = api_client.post("/api/v1/conversations", {"callback_url": url}, format="json").json()
    with django_capture_on_commit_callbacks(execute=True):
        reply_id = post_message(api_client, conversation["id"], "call me back", mode="async").json()["id"]
    assert len(received) == 1
    body = received[0]["body"]
    payload = json.loads(body)
    assert payload["event"] == "message.completed" and payload["message"]["id"] == reply_id
    signature = next(v for k, v in received[0]["headers"].items() if k.lower() == SIGNATURE_HEADER.lower())
    tenant.refresh_from_db()
    assert verify(tenant.webhook_secret, body, signature)
    assert not verify("wrong-secret", body, signature)


def test_a_redelivered_task_makes_no_second_reply_or_ledger_row(api_client, conversation_id, simulator):
    response = post_message(api_client, conversation_id, "once only", mode="async")  # on_commit not run: still queued
    reply_id = response.json()["id"]
    assert Message.objects.get(pk=reply_id).status == "queued"
    assert generate_reply.apply(args=[reply_id]).get() == "completed"
    assert generate_reply.apply(args=[reply_id]).get() == "completed"  # redelivery
    assert len(simulator.requests()) == 1
    assert UsageRecord.objects.filter(message_id=reply_id).count() == 1


def test_a_task_for_a_deleted_message_returns_quietly(db):
    assert generate_reply.apply(args=["00000000-0000-0000-0000-000000000000"]).get() is None


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "http://127.0.0.1:9000/hook", "http://localhost/hook", "http://169.254.169.254/latest",
            "http://10.1.2.3/hook", "http://[::1]/hook", "https://[::ffff:127.0.0.1]/hook"],
)
def test_a_callback_url_must_be_public_http(api_client, policy, url):
    response = api_client.post("/api/v1/conversations", {"callback_url": url}, format="json")
    assert response.status_code == 400 and response.json()["error"]["message"].startswith("callback_url:")


def test_a_callback_is_never_posted_to_a_private_address(api_client, conversation_id, callback_server, settings):
    from conversations.models import Conversation
    from conversations.tasks import deliver_callback

    url, received = callback_server
    Conversation.objects.filter(pk=conversation_id).update(callback_url=url)  # e.g. set before the check existed
    reply_id = post_message(api_client, conversation_id, "hello").json()["id"]
    settings.CALLBACK_ALLOW_PRIVATE_HOSTS = False
    assert callback_schedule(reply_id)
    assert deliver_callback.apply(args=[reply_id]).get() == "rejected"
    assert received == []


def test_a_callback_redirect_is_not_followed(api_client, conversation_id, settings):
    from conversations.models import Conversation
    from conversations.tasks import deliver_callback

    settings.CALLBACK_ALLOW_PRIVATE_HOSTS = True
    paths = []

    class Redirecting(BaseHTTPRequestHandler):
        def do_POST(self):
            paths.append(self.path)
            self.send_response(307)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        Conversation.objects.filter(pk=conversation_id).update(callback_url=f"http://127.0.0.1:{server.server_port}/hook")
        reply_id = post_message(api_client, conversation_id, "hello").json()["id"]
        assert callback_schedule(reply_id)
        assert deliver_callback.apply(args=[reply_id]).get() == "rejected"
    finally:
        server.shutdown()
    assert paths == ["/hook"]


def test_a_broker_that_refuses_the_task_leaves_a_queued_reply_the_sweeper_finishes(api_client, conversation_id, monkeypatch,
                                                                                    django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone
    from kombu.exceptions import OperationalError as BrokerDown

    from conversations.tasks import generate_reply, requeue_stalled_replies

    def refuse(*args, **kwargs):
        raise BrokerDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    with monkeypatch.context() as broker:
        broker.setattr(generate_reply, "delay", refuse)  # Redis down: the broker refuses to take the task
        with django_capture_on_commit_callbacks(execute=True):
            response = post_message(api_client, conversation_id, "while redis is down", mode="async")
    assert response.status_code == 202  # not a 500: the message and its reply are stored
    reply_id = response.json()["id"]
    assert Message.objects.get(pk=reply_id).status == "queued"

    assert requeue_stalled_replies() == 0  # a minute's grace: its task may just be waiting in the queue
    Message.objects.filter(pk=reply_id).update(created_at=timezone.now() - timedelta(minutes=2))
    assert requeue_stalled_replies() == 1  # the broker is back (tests run tasks eagerly)
    assert Message.objects.get(pk=reply_id).status == "completed"
    assert UsageRecord.objects.filter(message_id=reply_id).count() == 1
    assert requeue_stalled_replies() == 0


def test_the_sweeper_takes_over_a_reply_whose_worker_died_once_its_lease_ran_out(api_client, conversation_id, settings):
    from datetime import timedelta

    from django.utils import timezone

    from conversations.tasks import requeue_stalled_replies

    reply_id = post_message(api_client, conversation_id, "worker killed", mode="async").json()["id"]  # its task never ran
    long_ago = timezone.now() - timedelta(seconds=settings.REPLY_LEASE_SECONDS + 5)
    Message.objects.filter(pk=reply_id).update(status="running", started_at=timezone.now(), created_at=long_ago)
    assert requeue_stalled_replies() == 0  # running within its lease: its worker may still be at it
    Message.objects.filter(pk=reply_id).update(started_at=long_ago)  # claimed by a worker killed long ago
    assert requeue_stalled_replies() == 1
    assert Message.objects.get(pk=reply_id).status == "completed"
    assert UsageRecord.objects.filter(message_id=reply_id).count() == 1


# --- callbacks are delivered at least once, whatever fails on the way ------------------------------------------


def _due_now(reply_id) -> None:
    """What waiting does: the next attempt (or a dead sender's lease) falls due."""
    from datetime import timedelta

    from django.utils import timezone

    Message.objects.filter(pk=reply_id).update(callback_next_at=timezone.now() - timedelta(seconds=1))


def _async_reply_with_callback(api_client, url, **capture) -> str:
    conversation = api_client.post("/api/v1/conversations", {"callback_url": url}, format="json").json()
    return post_message(api_client, conversation["id"], "call me back", mode="async").json()["id"]


def test_a_receiver_that_is_down_gets_the_callback_later_with_backoff(api_client, policy, callback_server,
                                                                      django_capture_on_commit_callbacks):
    from conversations.tasks import send_due_callbacks

    url, received = callback_server
    received.answers = [503, 502]
    with django_capture_on_commit_callbacks(execute=True):
        reply_id = _async_reply_with_callback(api_client, url)
    reply = Message.objects.get(pk=reply_id)
    assert len(received) == 1 and reply.callback_delivered_at is None and reply.callback_attempts == 1
    assert send_due_callbacks() == 0  # not due yet: the first retry waits about 30 s
    _due_now(reply_id)
    assert send_due_callbacks() == 1  # tests run tasks eagerly: 502, and the next one is scheduled further out
    first_wait = Message.objects.get(pk=reply_id).callback_next_at
    _due_now(reply_id)
    send_due_callbacks()
    reply = Message.objects.get(pk=reply_id)
    assert len(received) == 3 and reply.callback_delivered_at is not None and reply.callback_next_at is None
    assert reply.callback_attempts == 3 and first_wait is not None
    _due_now(reply_id)  # whatever the schedule says, a delivered callback is never sent again
    Message.objects.filter(pk=reply_id).update(callback_next_at=None)
    assert send_due_callbacks() == 0 and len(received) == 3
    assert all(json.loads(r["body"])["message"]["id"] == reply_id for r in received)


def test_a_sender_killed_mid_post_leaves_the_callback_due_once_its_lease_lapses(api_client, policy, callback_server):
    from conversations.callbacks import callback_claim
    from conversations.tasks import send_due_callbacks

    url, received = callback_server
    reply_id = _async_reply_with_callback(api_client, url)  # on_commit not run: the reply is still queued
    generate_reply.apply(args=[reply_id], kwargs={}).get()  # ...made by a worker, which then queues the callback
    assert len(received) == 1
    Message.objects.filter(pk=reply_id).update(callback_delivered_at=None)  # as if that POST never got its answer...
    _due_now(reply_id)
    assert callback_claim(reply_id)  # ...because this sender claimed it and was SIGKILLed before posting
    assert send_due_callbacks() == 0  # its lease holds: nobody else sends meanwhile
    _due_now(reply_id)  # the lease lapsed
    assert send_due_callbacks() == 1 and len(received) == 2
    assert Message.objects.get(pk=reply_id).callback_delivered_at is not None


def test_a_broker_down_when_the_reply_finishes_still_gets_the_callback_sent(api_client, policy, callback_server, monkeypatch):
    from kombu.exceptions import OperationalError as BrokerDown

    from conversations.tasks import deliver_callback, send_due_callbacks

    url, received = callback_server
    reply_id = _async_reply_with_callback(api_client, url)

    def refuse(*args, **kwargs):
        raise BrokerDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    with monkeypatch.context() as broker:
        broker.setattr(deliver_callback, "delay", refuse)
        assert generate_reply.apply(args=[reply_id]).get() == "completed"  # no error: the callback stays due
        assert received == [] and send_due_callbacks() == 0
    assert send_due_callbacks() == 1 and len(received) == 1  # the broker is back


def test_a_callback_that_keeps_failing_is_given_up_after_the_last_attempt(api_client, policy, callback_server, settings,
                                                                          django_capture_on_commit_callbacks):
    from conversations.tasks import send_due_callbacks

    settings.CALLBACK_MAX_ATTEMPTS = 2
    url, received = callback_server
    received.answers = [503, 503, 503]
    with django_capture_on_commit_callbacks(execute=True):
        reply_id = _async_reply_with_callback(api_client, url)
    _due_now(reply_id)
    send_due_callbacks()
    reply = Message.objects.get(pk=reply_id)
    assert len(received) == 2 and reply.callback_next_at is None and reply.callback_delivered_at is None
    assert send_due_callbacks() == 0
