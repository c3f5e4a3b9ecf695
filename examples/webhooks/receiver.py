#!/usr/bin/env python3
"""A small API server that receives Switchboard webhooks.

Switchboard POSTs each webhook subscription's events to its callback URL as a
JSON array, in order, signed with the header

    X-Switchboard-Signature: base64(HMAC-SHA1(AuthToken, callback URL + raw body))

(standard base64 with padding, as Twilio encodes its signatures). This server:

- refuses a request whose signature does not match with 403 (and prints why on
  stderr), so nobody but the router can feed it events;
- answers 200 to a verified batch, which acknowledges it (anything else makes the
  router retry with backoff);
- drops events it has already seen (delivery is at-least-once: a retried batch
  comes again, with the same event ids);
- prints one line per new verified event on stdout:
  ``<id> <type> <call_sid or -> <data as JSON>``.

With ``--subscribe`` it also makes its own webhook subscription through the
control channel (``POST /v1/Accounts/{sid}/Clients/{client}/Subscriptions`` with
``callback=``) once it listens, and removes it again on Ctrl-C.

Python 3 standard library only. Run ``python3 receiver.py --help``.
"""

import argparse
import base64
import collections
import hashlib
import hmac
import http.server
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

# A webhook request carries at most `webhook.max_batch` events of at most 64 KiB.
MAX_BODY = 16 * 1024 * 1024
# How many event ids are remembered for deduplication.
SEEN_IDS = 100_000


def expected_signature(token, url, body):
    """X-Switchboard-Signature for `body` posted to `url`."""
    mac = hmac.new(token.encode(), url.encode() + body, hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


class Seen:
    """The ids of the last SEEN_IDS events, oldest forgotten first."""

    def __init__(self, size):
        self.size = size
        self.ids = collections.OrderedDict()
        self.lock = threading.Lock()

    def first_time(self, event_id):
        with self.lock:
            if event_id in self.ids:
                return False
            self.ids[event_id] = None
            if len(self.ids) > self.size:
                self.ids.popitem(last=False)
            return True


def log(message):
    print(message, file=sys.stderr, flush=True)


def make_handler(token, public_url, seen):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "switchboard-webhook-example"

        def do_POST(self):
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit() or int(length) > MAX_BODY:
                return self.answer(411 if length is None else 413, "bad length")
            body = self.rfile.read(int(length))
            # The router signs the callback URL exactly as it was subscribed: this
            # server's public URL followed by the path (and query) it was given.
            url = public_url + self.path
            given = self.headers.get("X-Switchboard-Signature", "")
            if not hmac.compare_digest(given.encode(), expected_signature(token, url, body).encode()):
                log(f"refused {self.path} from {self.client_address[0]}: bad signature")
                return self.answer(403, "bad signature")
            try:
                events = json.loads(body)
                if not isinstance(events, list):
                    raise ValueError("not a JSON array")
            except ValueError as error:
                log(f"refused {self.path}: {error}")
                return self.answer(400, "expected a JSON array of events")
            for event in events:
                if not isinstance(event, dict) or not isinstance(event.get("id"), str):
                    continue
                if not seen.first_time(event["id"]):
                    continue  # a retry of a batch already handled
                data = json.dumps(event.get("data", {}), separators=(",", ":"), sort_keys=True)
                print(f"{event['id']} {event.get('type')} {event.get('call_sid') or '-'} {data}", flush=True)
            self.answer(200, "ok")

        def answer(self, status, text):
            body = (text + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass  # one line per event on stdout is the output; refusals go to stderr

    return Handler


def control_request(args, method, path, form=None):
    """A control-channel request with the account's Basic credentials; the JSON answer."""
    url = args.url.rstrip("/") + path
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    credentials = base64.b64encode(f"{args.account}:{args.token}".encode()).decode()
    request.add_header("Authorization", "Basic " + credentials)
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
        return json.loads(text) if text else None


def subscribe(args, callback):
    """Creates the webhook subscription; returns its path for the DELETE on exit."""
    form = [("callback", callback)]
    if args.types:
        form.append(("types", args.types))
    for clause in args.where:
        form.append(("where", clause))
    path = f"/v1/Accounts/{args.account}/Clients/{args.client}/Subscriptions"
    try:
        sub = control_request(args, "POST", path, form)
    except urllib.error.HTTPError as error:
        sys.exit(f"subscribing failed: {error.code} {error.read().decode(errors='replace')}")
    except OSError as error:
        sys.exit(f"subscribing failed: cannot reach {args.url}: {error}")
    log(f"subscribed {sub['sid']} (client {args.client}, callback {callback})")
    return f"{path}/{sub['sid']}"


def main():
    parser = argparse.ArgumentParser(description="Receive and verify Switchboard webhooks.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "9000")),
                        help="port to listen on; 0 picks a free one (default 9000, env PORT)")
    parser.add_argument("--public-url", default=os.environ.get("PUBLIC_URL"),
                        help="this server's base URL as the router reaches it "
                             "(default http://HOST:PORT); the callback is this + /hook")
    parser.add_argument("--token", default=os.environ.get("SWITCHBOARD_TOKEN"),
                        help="the account's auth token (env SWITCHBOARD_TOKEN; prefer it: flags show in ps)")
    parser.add_argument("--subscribe", action="store_true",
                        help="make this server's webhook subscription at start, remove it on Ctrl-C")
    parser.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL", "http://127.0.0.1:8080"),
                        help="with --subscribe: the Switchboard server (env SWITCHBOARD_URL)")
    parser.add_argument("--account", default=os.environ.get("SWITCHBOARD_ACCOUNT"),
                        help="with --subscribe: the account sid (env SWITCHBOARD_ACCOUNT)")
    parser.add_argument("--client", default="webhook-example",
                        help="with --subscribe: the client id that holds the subscription")
    parser.add_argument("--types", help="with --subscribe: event types, e.g. 'call.*,gather.end'")
    parser.add_argument("--where", action="append", default=[], metavar="CLAUSE",
                        help="with --subscribe: a filter clause, e.g. 'data.duration>60' (repeatable)")
    args = parser.parse_args()
    if not args.token:
        parser.error("the auth token is required: --token or SWITCHBOARD_TOKEN")
    if args.subscribe and not args.account:
        parser.error("--subscribe needs the account: --account or SWITCHBOARD_ACCOUNT")

    httpd = http.server.ThreadingHTTPServer((args.host, args.port), None)
    port = httpd.server_address[1]
    public_url = (args.public_url or f"http://{args.host}:{port}").rstrip("/")
    httpd.RequestHandlerClass = make_handler(args.token, public_url, Seen(SEEN_IDS))
    log(f"listening on http://{args.host}:{port}, callback URL {public_url}/hook")

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    subscription = None
    try:
        if args.subscribe:
            # The server listens already (bound above), so the first delivery finds it.
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
            subscription = subscribe(args, public_url + "/hook")
            threading.Event().wait()
        else:
            httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if subscription:
            try:
                control_request(args, "DELETE", subscription)
                log(f"removed {subscription.rsplit('/', 1)[1]}")
            except (OSError, urllib.error.HTTPError) as error:
                log(f"could not remove the subscription: {error}")


if __name__ == "__main__":
    main()
