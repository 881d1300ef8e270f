"""A mock weather API on loopback, for the tests and the demo step (`python -m tests.mock_api CITY`)."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

FORECASTS = {
    "Berlin": {"date": "2026-11-25", "min_c": 1.6, "max_c": 7.2, "condition": "rain", "precip_mm": 3.1},
    "São Paulo": {"date": "2026-11-25", "min_c": 18.5, "max_c": 27.49, "condition": "sunny", "precip_mm": 0.0},
    "Oslo": {"date": "2026-11-25", "min_c": -4.5, "max_c": -0.4, "condition": "snow", "precip_mm": 0.96},
}


class MockWeatherAPI:
    """Serves /forecast?city=NAME. Special cities: Broken (500), Garbage (not JSON),
    Partial (fields missing), Slow (answers after 2 s); unknown cities get 404."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                url = urlparse(self.path)
                city = parse_qs(url.query).get("city", [""])[0]
                outer.requests.append(self.path)
                if url.path != "/forecast":
                    return self._send(404, b'{"error": "no such endpoint"}')
                if city == "Broken":
                    return self._send(500, b'{"error": "internal"}')
                if city == "Garbage":
                    return self._send(200, b"<html>not json</html>")
                if city == "Partial":
                    return self._send(200, json.dumps({"city": city, "days": [{"date": "2026-11-25"}]}).encode())
                if city == "Slow":
                    time.sleep(2)
                if city not in FORECASTS and city != "Slow":
                    return self._send(404, json.dumps({"error": f"unknown city {city}"}).encode())
                day = FORECASTS.get(city, FORECASTS["Berlin"])
                return self._send(200, json.dumps({"city": city, "days": [day]}).encode())

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> MockWeatherAPI:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    from weather_bot.bot import main

    with MockWeatherAPI() as api:
        sys.exit(main(["--city", sys.argv[1] if len(sys.argv) > 1 else "Berlin", "--api", api.url]))
