import os

from celery import Celery, Task
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")


class DatabaseTask(Task):
    """A worker keeps its database connection across tasks (CELERY_DB_REUSE_MAX). Before each task,
    drop it when it broke (a database restart) or outlived CONN_MAX_AGE, as Django does per request."""

    def before_start(self, task_id, args, kwargs) -> None:
        close_old_connections()


app = Celery("switchyard", task_cls=DatabaseTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
