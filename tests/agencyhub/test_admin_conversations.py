"""Transcripts: read-only, each reply with the model that answered, its cost, the route reason and every attempt."""

import pytest
from django.utils.html import escape

from conversations.models import Message
from tests.agencyhub.admin_fixtures import finance_client  # noqa: F401
from tests.chat_fixtures import post_message

pytestmark = pytest.mark.django_db


def test_it_shows_a_transcript_with_model_cost_route_and_attempts(admin_client, api_client, conversation_id, simulator):
    simulator.add_fault(provider="anthropic", fault="overloaded", count=1)
    assert post_message(api_client, conversation_id, "Where is my order?").status_code == 201
    reply = Message.objects.get(role="assistant")

    html = admin_client.get(f"/admin/conversations/conversation/{conversation_id}/change/").content.decode()

    assert "Where is my order?" in html and reply.content in html
    assert "gpt-4o-mini" in html and escape(reply.route_reason) in html and str(reply.cost) in html
    assert "<b>overloaded</b>" in html and "<b>ok</b>" in html  # the failed attempt, then the one that answered
    assert 'name="_save"' not in html  # read-only


def test_it_lists_feedback_and_messages_for_finance(finance_client, api_client, conversation_id):
    reply_id = post_message(api_client, conversation_id, "Hi").json()["id"]
    assert api_client.post(f"/api/v1/messages/{reply_id}/feedback", {"rating": -1, "comment": "too slow"}, format="json").status_code in (200, 201)

    assert "too slow" in finance_client.get("/admin/conversations/feedback/").content.decode()
    messages = finance_client.get("/admin/conversations/message/?failed=no")
    assert messages.status_code == 200 and messages.context["cl"].result_count == 2


def test_a_message_shows_its_images_as_links_or_summaries_never_the_data(admin_client, api_client, conversation_id):
    data = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    images = ["https://example.com/shot.png", {"url": f"data:image/png;base64,{data}"}]
    assert post_message(api_client, conversation_id, "See these", images=images).status_code == 201
    user = Message.objects.get(role="user")

    html = admin_client.get(f"/admin/conversations/message/{user.pk}/change/").content.decode()

    assert '<a href="https://example.com/shot.png" rel="noreferrer">' in html
    assert "image/png, 96 base64 characters, SHA-256" in html and data not in html
