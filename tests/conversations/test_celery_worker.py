"""An async reply made by a real Celery worker process, through Redis, against the test database."""

import os
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection

from agencyhub.celery import app as celery_app
from billing.models import UsageRecord
from conversations.models import Message
from tests.conversations.conftest import post_message

pytestmark = pytest.mark.slow


@pytest.fixture
def worker(transactional_db):
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
    }
    celery_app.control.purge()
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "agencyhub", "worker", "--pool=solo", "--without-mingle", "--without-gossip",
         "--loglevel=WARNING", "-Q", "celery"],
        env=env, cwd=settings.BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        yield process
    finally:
        celery_app.conf.task_always_eager = eager
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_for(predicate, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_real_worker_makes_the_async_reply(worker, api_client, conversation_id, simulator):
    response = post_message(api_client, conversation_id, "worker, please", mode="async")
    assert response.status_code == 202
    reply_id = response.json()["id"]
    done = _wait_for(lambda: Message.objects.get(pk=reply_id).status in ("completed", "failed"))
    if not done:
        worker.terminate()
        pytest.fail(f"the worker did not finish the reply: {worker.communicate(timeout=20)[0]!r}")
    reply = Message.objects.get(pk=reply_id)
    assert reply.status == "completed" and reply.content.endswith("worker, please")
    assert UsageRecord.objects.filter(message_id=reply_id).count() == 1
    assert len(simulator.requests()) == 1
