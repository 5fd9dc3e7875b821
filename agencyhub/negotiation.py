from rest_framework.negotiation import DefaultContentNegotiation


class LenientContentNegotiation(DefaultContentNegotiation):
    """Never 406: streaming clients send `Accept: text/event-stream`, which the SSE views answer themselves;
    anything else we cannot match gets JSON rather than an error."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Exception:  # noqa: BLE001 - NotAcceptable
            return renderers[0], renderers[0].media_type
