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
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
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
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(REPO / "mkdocs.yml"), "-d",
                    str(site)], check=True, cwd=REPO, env=env)


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None  # quiet
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def screenshot(chromium: str, url: str, png: Path, size: str) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={size}", "--virtual-time-budget=8000",
                        f"--screenshot={png}", url], check=True, capture_output=True, timeout=180)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs_screenshots", help="folder for the PNG files")
    p.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    p.add_argument("--size", default="1400,1000", help="window width,height in pixels")
    p.add_argument("--site", help="an already built site folder (default: build one in a temporary folder)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(args.site) if args.site else Path(tmp) / "site"
        if not args.site:
            build(site)
        server = serve(site)
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}/"
            for name, path in PAGES.items():
                screenshot(args.chromium, base + path, out / f"{name}.png", args.size)
                print(f"{out / f'{name}.png'}: {base + path}")
        finally:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
