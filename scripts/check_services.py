"""Before the suite: are PostgreSQL and Redis reachable? One line each, no stack trace."""

import os
import sys
from urllib.parse import urlparse

import psycopg
import redis

problems = []
db_url = os.environ["DATABASE_URL"]
parsed = urlparse(db_url)
try:
    psycopg.connect(
        host=parsed.hostname or "127.0.0.1", port=parsed.port or 5432, user=parsed.username or "postgres",
        password=parsed.password, dbname="postgres", connect_timeout=3,
    ).close()
except Exception as exc:  # noqa: BLE001
    problems.append(
        f"PostgreSQL is not reachable at {parsed.hostname}:{parsed.port or 5432} ({type(exc).__name__}); "
        f"start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start  (or set DATABASE_URL)"
    )
redis_url = os.environ["REDIS_URL"]
try:
    redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
except Exception as exc:  # noqa: BLE001
    problems.append(
        f"Redis is not reachable at {redis_url} ({type(exc).__name__}); "
        "start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379  (or set REDIS_URL)"
    )
for line in problems:
    print(line, file=sys.stderr)
sys.exit(1 if problems else 0)
