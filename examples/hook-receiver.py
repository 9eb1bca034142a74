"""A blocking hook of social-link served by an app's backend in Python (standard library only).

It checks the Standard Webhooks signature, refuses sign-ins from banned devices, and gives each user a plan
claim. Run: SOCIAL_LINK_HOOK_SECRET=whsec_... python3 examples/hook-receiver.py 8787, then start social-link with
SOCIAL_LINK_HOOK_BEFORE_SIGN_IN_URL=http://127.0.0.1:8787/ and the same SOCIAL_LINK_HOOK_SECRET.
"""
import base64, hashlib, hmac, json, os, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = base64.b64decode(os.environ["SOCIAL_LINK_HOOK_SECRET"].removeprefix("whsec_"))
BANNED_DEVICES = {"BannedPhone/1.0"}


def signed(headers, body):
    """Standard Webhooks: v1,base64(HMAC-SHA256(secret, id.timestamp.body)), a timestamp within 5 minutes."""
    stamp = headers.get("webhook-timestamp", "0")
    mac = hmac.new(SECRET, f"{headers.get('webhook-id')}.{stamp}.".encode() + body, hashlib.sha256)
    expected = "v1," + base64.b64encode(mac.digest()).decode()
    fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
    return fresh and any(hmac.compare_digest(expected, s) for s in headers.get("webhook-signature", "").split())


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        if not signed(self.headers, body):
            return self.send_error(401)
        data = json.loads(body)["data"]
        if data["client"]["user_agent"] in BANNED_DEVICES:
            verdict = {"decision": "refuse", "code": "banned_device", "message": "This device is blocked"}
        else:
            verdict = {"decision": "allow", "claims": {"plan": "pro" if data["user"] else "trial"}}
        answer = json.dumps(verdict).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(sys.argv[1])), Hook).serve_forever()
