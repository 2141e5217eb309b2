"""Whether the Hugging Face hub is used now: not with ``HF_HUB_OFFLINE``, nor when one short request gets no answer.

Without a network, ``huggingface_hub`` spends half a minute in timeouts and retries before it gives up. One HEAD
request to the endpoint (``HF_ENDPOINT``, through the proxy the environment names), bounded by
:data:`CHECK_TIMEOUT_S` whole (name lookup included), answers the question first, once per process; an unreachable
hub is then treated as offline: the local caches only, and a message that says how to work without a network.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from typing import Optional

CHECK_TIMEOUT_S = 3.0
DEFAULT_ENDPOINT = "https://huggingface.co"
OFFLINE_HINT = ("Without a network, fetch the weights once where there is one (`sslzoo download NAME`, then copy"
                " HF_HOME's hub cache or $SSLZOO_HUB) and set HF_HUB_OFFLINE=1 to use only local files.")
_answers: dict[str, bool] = {}


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _answers_in_time(url: str, timeout: float) -> bool:
    answered: list[bool] = []

    def ask() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            answered.append(True)
        except urllib.error.HTTPError:  # any HTTP status is an answer
            answered.append(True)
        except (OSError, ValueError):  # no route, refused, timed out, unknown host, not a URL
            pass

    thread = threading.Thread(target=ask, daemon=True)  # a name lookup has no timeout of its own
    thread.start()
    thread.join(timeout)
    return bool(answered)


def offline_reason(timeout: float = CHECK_TIMEOUT_S) -> Optional[str]:
    """None when the hub is used now; else why not (``HF_HUB_OFFLINE``, or the endpoint gave no answer)."""
    if hf_offline():
        return "HF_HUB_OFFLINE is set"
    url = endpoint()
    if url not in _answers:
        _answers[url] = _answers_in_time(url, timeout)
    return None if _answers[url] else f"{url} gave no answer within {timeout:g} s"
