"""Build the documentation site, serve it on 127.0.0.1 and render pages in headless Chromium as PNG screenshots.

    python scripts/screenshot_docs.py --out /tmp/sslzoo_shots [--chromium chromium]

Writes ``home.png`` (the home page), ``create_model.png`` (the API page at ``create_model``), ``cli.png`` (the command
line reference at ``sslzoo knn``), ``search.png`` (the search box with a query) and ``guide.png`` (a guide with
highlighted code). Needs the ``[docs]`` extra and Chromium (Debian: ``apt-get install chromium``); touches no network
but the loopback address it serves on.
"""

from __future__ import annotations

import argparse
import functools
import html
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = {  # screenshot name -> path on the site
    "home": "",
    "create_model": "api/sslzoo/#sslzoo.models.create_model",
    "cli": "cli/#sslzoo-knn",
    "search": "?q=checksum",
    "guide": "quickstart/",
}


def build(site: Path) -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d",
                    str(site)], check=True, cwd=REPO, env=env)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """The site, plus ``/__shot__?url=PATH``: the page in a full-window frame, whose load event (when headless Chromium
    takes the screenshot) waits ``WAIT_S`` seconds of real time for an image: time for Material's search worker to
    index the site and answer the query (with ``--virtual-time-budget`` it was still "initializing" in the picture),
    and for the frame to scroll to its anchor (a top-level page scrolled to an anchor comes out blank)."""

    WAIT_S = 20.0  # on a busy 2-core machine the search index took more than 6 s

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/__wait__"):
            time.sleep(self.WAIT_S)
            return self._reply(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif")
        if self.path.startswith("/__shot__?url="):
            target = html.escape(urllib.parse.unquote(self.path.split("=", 1)[1]), quote=True)
            page = (f'<!doctype html><html><body style="margin:0">'
                    f'<iframe src="/{target}" style="border:0;width:100vw;height:100vh;display:block"></iframe>'
                    f'<img src="/__wait__" alt="" style="display:none"></body></html>')
            return self._reply(page.encode(), "text/html")
        return super().do_GET()

    def _reply(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_Handler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def screenshot(chromium: str, url: str, png: Path, size: str) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={size}",
                        f"--screenshot={png}", url], check=True, capture_output=True, timeout=180)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs_screenshots", help="folder for the PNG files")
    p.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    p.add_argument("--size", default="1400,1000", help="window width,height in pixels")
    p.add_argument("--wait", type=float, default=_Handler.WAIT_S, help="seconds each page gets before its picture")
    p.add_argument("--site", help="an already built site folder (default: build one in a temporary folder)")
    args = p.parse_args(argv)
    out = Path(args.out)
    _Handler.WAIT_S = args.wait
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(args.site) if args.site else Path(tmp) / "site"
        if not args.site:
            build(site)
        server = serve(site)
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}/"
            for name, path in PAGES.items():
                screenshot(args.chromium, f"{base}__shot__?url={urllib.parse.quote(path, safe='')}", out / f"{name}.png",
                           args.size)
                print(f"{out / f'{name}.png'}: {base + path}")
        finally:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
