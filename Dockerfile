# One image for web, worker and beat (the command differs per docker-compose service).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN SECRET_KEY=build-only DEBUG=false ALLOWED_HOSTS=build python manage.py collectstatic --no-input -v 0
RUN useradd --system --home /app switchyard && mkdir -p /app/var && chown switchyard /app/var
USER switchyard
EXPOSE 8000
ENTRYPOINT ["bin/docker-entrypoint"]
# The web app and the gateway under uvicorn, as bin/run serves them (bin/web: WEB_WORKERS processes,
# DATABASE_POOL_SIZE PostgreSQL connections each).
CMD ["bin/web", "--host", "0.0.0.0", "--port", "8000"]
