from django.urls import path

from gateway import views

urlpatterns = [
    path("models", views.models, name="gateway-models"),
    path("chat/completions", views.chat_completions, name="gateway-chat-completions"),
    path("embeddings", views.embeddings, name="gateway-embeddings"),
]
