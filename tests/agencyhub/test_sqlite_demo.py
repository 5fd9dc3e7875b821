"""`make run` serves the demo on SQLite with no Redis: the chat engine must work there too (its PostgreSQL-only
one-statement writes have an ORM fallback). Runs the real commands in a subprocess with that environment."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO_KEY = "ahk_sqlite-demo-key-for-the-test-0123456789"

CHAT = f"""
import json
from django.test import Client
client = Client(HTTP_AUTHORIZATION="Bearer {DEMO_KEY}")
out = {{}}
plain = client.post("/v1/chat/completions", {{"model": "auto", "messages": [{{"role": "user", "content": "hello"}}]}},
                    content_type="application/json")
out["plain"] = [plain.status_code, plain.json()]
streamed = client.post("/v1/chat/completions", {{"model": "auto", "stream": True,
                       "messages": [{{"role": "user", "content": "hello"}}]}}, content_type="application/json")
out["stream"] = [streamed.status_code, b"".join(streamed.streaming_content).decode()]
conversation = client.post("/api/v1/conversations", {{}}, content_type="application/json").json()["id"]
for mode in ("sync", "async"):
    posted = client.post(f"/api/v1/conversations/{{conversation}}/messages", {{"content": "hi", "mode": mode}},
                         content_type="application/json")
    out[mode] = [posted.status_code, posted.json()]
    out[mode + "_after"] = client.get(f"/api/v1/messages/{{posted.json()['id']}}").json()
from billing.models import UsageRecord
out["ledger_rows"] = UsageRecord.objects.count()
print("RESULT " + json.dumps(out))
"""


def test_the_demo_on_sqlite_answers_chats_through_every_entry_point(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}", DEMO_API_KEY=DEMO_KEY,
               ALLOWED_HOSTS="testserver", CELERY_TASK_ALWAYS_EAGER="true")

    def manage(*args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    manage("migrate", "--noinput")
    manage("seed_demo")
    out = json.loads(manage("shell", "-c", CHAT).split("RESULT ", 1)[1])
    assert out["plain"][0] == 200 and out["plain"][1]["choices"][0]["message"]["content"]
    assert out["stream"][0] == 200 and out["stream"][1].rstrip().endswith("data: [DONE]")
    assert out["sync"][0] == 201 and out["sync"][1]["status"] == "completed"
    assert out["async"][0] == 202 and out["async_after"]["status"] == "completed"  # tasks run in-process here
    assert out["ledger_rows"] == 4
