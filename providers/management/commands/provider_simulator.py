"""manage.py provider_simulator [--host 127.0.0.1] [--port 9100]

Runs the local Anthropic / OpenAI / OpenRouter simulator in the foreground (failover drills, load
tests). Faults are injected over HTTP: POST {url}/_control/faults (see providers/simulator/app.py).
"""

from django.core.management.base import BaseCommand, CommandError

from providers.simulator.server import SimulatorServer


class Command(BaseCommand):
    help = "Run the local provider simulator (Anthropic, OpenAI, OpenRouter wire formats) in the foreground."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9100)
        parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])

    def handle(self, *args, **options):
        server = SimulatorServer(host=options["host"], port=options["port"], log_level=options["log_level"])
        if not 0 <= options["port"] <= 65535:
            raise CommandError(f"--port {options['port']} is not 0-65535")
        try:
            server.bind()  # first, so the URLs printed are the real ones (port 0 = any free port)
        except OSError as exc:
            raise CommandError(f"cannot listen on {options['host']}:{options['port']}: {exc.strerror or exc}") from None
        self.stdout.write(f"Anthropic:  {server.anthropic_base_url}")
        self.stdout.write(f"OpenAI:     {server.openai_base_url}")
        self.stdout.write(f"OpenRouter: {server.openrouter_base_url}")
        self.stdout.write(f"Control:    {server.url}/_control/faults  (Ctrl-C to stop)")
        self.stdout.flush()
        server.serve_forever()
