from django.urls import path

from gateway import views

urlpatterns = [
    path("models", views.models, name="gateway-models"),
    path("models/<path:model>", views.model, name="gateway-model"),  # names may hold "/" or ":"
    path("chat/completions", views.chat_completions, name="gateway-chat-completions"),
    path("embeddings", views.embeddings, name="gateway-embeddings"),
]
