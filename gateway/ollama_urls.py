"""The Ollama-compatible endpoints, mounted at /api/ (project/urls.py) as an Ollama host serves them:
no trailing slash, beside the REST API's /api/v1/."""

from django.urls import path

from gateway import ollama_views

urlpatterns = [
    path("chat", ollama_views.chat, name="ollama-chat"),
    path("generate", ollama_views.generate, name="ollama-generate"),
    path("embed", ollama_views.embed, name="ollama-embed"),
    path("tags", ollama_views.tags, name="ollama-tags"),
    path("show", ollama_views.show, name="ollama-show"),
    path("version", ollama_views.version, name="ollama-version"),
    path("ps", ollama_views.running, name="ollama-ps"),
]
