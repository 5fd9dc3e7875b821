"""Print a fresh .env for local runs (random secrets, never committed), or just a Fernet key."""

import secrets
import sys

from cryptography.fernet import Fernet

if "--fernet-key" in sys.argv:
    print(Fernet.generate_key().decode())
else:
    print(f"SECRET_KEY={secrets.token_urlsafe(50)}")
    print(f"FIELD_ENCRYPTION_KEYS={Fernet.generate_key().decode()}")
    # seed_demo makes these the demo's admin password and API key, so a second `make run` prints the same ones.
    print(f"DEMO_ADMIN_PASSWORD={secrets.token_urlsafe(12)}")
    print(f"DEMO_API_KEY=ahk_{secrets.token_urlsafe(32)}")
