"""A tiny web dyno: answers with a greeting and which dyno served it."""
import http.server
import json
import os
import signal
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "message": os.environ.get("GREETING", "Hello from Dyno"),
            "dyno": os.environ.get("DYNO"),
            "path": self.path,
            "request_id": self.headers.get("X-Request-Id"),
        }).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("%s %s" % (self.command, self.path), flush=True)


def main():
    port = int(os.environ["PORT"])
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("listening on port %d as %s" % (port, os.environ.get("DYNO")), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
