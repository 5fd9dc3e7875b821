from django.urls import path

from conversations.api import usage, views

urlpatterns = [
    path("conversations", views.ConversationListCreate.as_view(), name="conversation-create"),
    path("conversations/<str:conversation_id>", views.ConversationDetail.as_view(), name="conversation-detail"),
    path("conversations/<str:conversation_id>/messages", views.MessageCreate.as_view(), name="message-create"),
    path("messages/<str:message_id>", views.MessageDetail.as_view(), name="message-detail"),
    path("messages/<str:message_id>/feedback", views.FeedbackCreate.as_view(), name="message-feedback"),
    path("usage", usage.UsageView.as_view(), name="usage"),
]
