"""Screenshots of every page at desktop (1280 px) and phone (390 px) width, from a fresh database.

    .venv/bin/python bench/screenshots.py [--out var/screenshots]

It makes a new SQLite database under OUT/state (whatever DATABASE_URL says: the pictures must
not depend on someone's data), fills it with tests/e2e/demo_pages.py's month of long content,
serves the app with `manage.py runserver` (DEBUG off, static files through WhiteNoise, as
`bin/run` does), and drives headless Chromium (Playwright, /usr/bin/chromium or $CHROMIUM) over
every page as staff, plus the login page and the metrics page a non-staff member gets. It writes
OUT/<page>-desktop.png and OUT/<page>-phone.png (full pages) and says, per page, whether anything
is wider than the phone's screen. The images are not committed: var/ is ignored.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "var" / "screenshots"))
    args = parser.parse_args()
    out = Path(args.out).resolve()
    state = out / "state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    for old in out.glob("*.png"):
        old.unlink()

    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "DEBUG")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": f"sqlite:///{state / 'db.sqlite3'}",
        "SWITCHYARD_VAR_DIR": str(state),
        "STATIC_ROOT": str(state / "static"),
    }
    os.environ.update(env)
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "DEBUG"):
        os.environ.pop(name, None)

    import django

    django.setup()
    from django.core.management import call_command

    from tests.e2e.demo_pages import MEMBER, MEMBER_PASSWORD, STAFF, STAFF_PASSWORD, demo_fill, demo_urls

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    pages = demo_urls(demo_fill())

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(state / "server.log").open("w"),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/healthz")
        problems = _shoot(base, out, pages, (STAFF, STAFF_PASSWORD), (MEMBER, MEMBER_PASSWORD))
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"{len(list(out.glob('*.png')))} screenshots in {out}")
    for line in problems:
        print("wider than the phone:", line)
    return 1 if problems else 0


def _shoot(base: str, out: Path, pages: list[tuple[str, str]], staff: tuple[str, str], member: tuple[str, str]):
    from playwright.sync_api import sync_playwright

    from tests.e2e.demo_pages import CHROMIUM_ARGS, OVERFLOW_JS

    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for width_name, (width, height) in WIDTHS.items():
            visits = [("login", "/login/", None), ("admin-login", "/admin/login/", None)]
            visits += [(name, path, staff) for name, path in pages]
            visits.append(("metrics-not-staff", "/metrics/", member))
            contexts = {}
            for name, path, who in visits:
                if who not in contexts:
                    contexts[who] = browser.new_context(base_url=base, viewport={"width": width, "height": height})
                    if who is not None:
                        _log_in(contexts[who].new_page(), *who)
                page = contexts[who].new_page()
                page.goto(path)
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out / f"{name}-{width_name}.png"), full_page=True)
                if width_name == "phone":
                    found = page.evaluate(OVERFLOW_JS)
                    if found["scrollWidth"] > width or found["wide"]:
                        problems.append(f"{name}: page {found['scrollWidth']} px, {found['wide'][:5]}")
                page.close()
            for context in contexts.values():
                context.close()
        browser.close()
    return problems


def _log_in(page, username: str, password: str) -> None:
    page.goto("/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")
    page.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own loopback server
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


if __name__ == "__main__":
    sys.exit(main())
