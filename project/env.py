"""Reading settings from the environment; any value may come from a file named by NAME_FILE."""

import os
import secrets
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env(name: str, default: str = "") -> str:
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        return Path(file_name).read_text().strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = env(name, "").strip().lower()
    if name not in os.environ and f"{name}_FILE" not in os.environ:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = env(name, "")
    return int(raw) if raw.strip() else default


def env_float(name: str, default: float) -> float:
    raw = env(name, "")
    return float(raw) if raw.strip() else default


def env_list(name: str, default: list[str]) -> list[str]:
    raw = env(name, "")
    if not raw.strip():
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


# The SECRET_KEY in .env.example: a deployment that copied it without changing it must not start.
PLACEHOLDER_SECRET_KEYS = frozenset({"change-me-to-a-long-random-string"})


def secret_key_kept(path: Path) -> str:
    """The key stored at `path`, generated there (readable by its owner only) on first use.

    Every process on the machine (web server, worker) reads the same file; the first writes it
    under a temporary name and links it into place, so two starting at once agree on one key.
    """
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(50) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process was first: use its key
        finally:
            temporary.unlink()
    return path.read_text().strip()
