#!/usr/bin/env python3
"""A TwiML IVR application for Switchboard's call router (or Twilio).

Point a number's VoiceUrl at http://127.0.0.1:5000/voice. Each call then goes:

  /voice      a menu: <Gather numDigits="1" action="/menu"> with a <Say>
  /menu       routes on the key pressed (the Digits parameter):
                1  sales:   <Say>, then <Dial><Conference>sales</Conference></Dial>
                2  support: <Say>, then <Record action="/recorded">
                else        <Redirect> back to the menu
  /recorded   thanks the caller and hangs up

If nobody presses a key, the menu is read again, twice at most, then the app
says goodbye and hangs up.

Every request must carry a valid X-Twilio-Signature, computed as Twilio does:
base64(HMAC-SHA1(AuthToken, full URL + each POST parameter sorted by name, name
then value)). A request without one is refused with 403, so only the router
holding the account's token can drive the app.

Python 3 standard library only. Run ``python3 ivr.py --help``.
"""

import argparse
import base64
import hashlib
import hmac
import http.server
import os
import sys
import urllib.parse
from xml.sax.saxutils import escape

# A Twilio webhook is a short form; anything bigger is not one.
MAX_BODY = 64 * 1024
# How many times the menu is read when nobody presses a key.
MENU_TRIES = 3


def twilio_signature(token, url, params):
    """X-Twilio-Signature of a request to `url` with POST parameters `params`."""
    data = url + "".join(name + value for name, value in sorted(params, key=lambda p: p[0]))
    mac = hmac.new(token.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def twiml(*verbs):
    return '<?xml version="1.0" encoding="UTF-8"?>\n<Response>' + "".join(verbs) + "</Response>\n"


def say(text):
    return f"<Say>{escape(text)}</Say>"


def menu(tries):
    """The main menu; `tries` counts how many times it was read already."""
    if tries >= MENU_TRIES:
        return twiml(say("We did not hear from you. Goodbye!"), "<Hangup/>")
    return twiml(
        '<Gather numDigits="1" action="/menu" timeout="10">',
        say("Thanks for calling Switchboard. For sales, press 1. For support, press 2."),
        "</Gather>",
        # Only reached when the Gather timed out without a key.
        f"<Redirect>/voice?tries={tries + 1}</Redirect>",
    )


def route(path, params):
    """The TwiML for one request."""
    if path == "/voice":
        tries = params.get("tries", "0")
        return menu(int(tries) if tries.isdigit() else 0)
    if path == "/menu":
        digit = params.get("Digits", "")
        if digit == "1":
            return twiml(say("Connecting you to sales."),
                         "<Dial><Conference>sales</Conference></Dial>")
        if digit == "2":
            return twiml(say("Please leave a message for support after the beep."),
                         '<Record maxLength="30" action="/recorded"/>')
        return twiml(say("Sorry, that is not an option."), "<Redirect>/voice</Redirect>")
    if path == "/recorded":
        return twiml(say("Thank you. Support will call you back. Goodbye!"), "<Hangup/>")
    return None


def make_handler(token, public_url):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "switchboard-ivr-example"

        def do_GET(self):
            # GET (VoiceMethod=GET): the parameters are in the query, which the
            # signature covers as part of the URL.
            self.handle_call(params=[])

        def do_POST(self):
            length = self.headers.get("Content-Length", "")
            if not length.isdigit() or int(length) > MAX_BODY:
                return self.answer(413, "text/plain", "bad length\n")
            body = self.rfile.read(int(length)).decode("utf-8", errors="replace")
            self.handle_call(params=urllib.parse.parse_qsl(body, keep_blank_values=True))

        def handle_call(self, params):
            url = public_url + self.path
            given = self.headers.get("X-Twilio-Signature", "")
            expected = twilio_signature(token, url, params)
            path, _, query = self.path.partition("?")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                print(f"{self.command} {path} refused: bad signature", flush=True)
                return self.answer(403, "text/plain", "bad signature\n")
            values = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
            values.update(params)
            document = route(path, values)
            if document is None:
                return self.answer(404, "text/plain", "not found\n")
            shown = " ".join(f"{k}={values[k]}" for k in ("CallSid", "From", "Digits") if values.get(k))
            print(f"{self.command} {path} signature ok {shown}", flush=True)
            self.answer(200, "text/xml; charset=utf-8", document)

        def answer(self, status, content_type, text):
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass  # one line per request is printed above

    return Handler


def main():
    parser = argparse.ArgumentParser(description="A TwiML IVR: a menu, sales and support.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")),
                        help="port to listen on; 0 picks a free one (default 5000, env PORT)")
    parser.add_argument("--public-url", default=os.environ.get("PUBLIC_URL"),
                        help="this app's base URL as the router reaches it, which the "
                             "signature covers (default http://HOST:PORT)")
    parser.add_argument("--token", default=os.environ.get("SWITCHBOARD_TOKEN"),
                        help="the account's auth token (env SWITCHBOARD_TOKEN; prefer it: flags show in ps)")
    args = parser.parse_args()
    if not args.token:
        parser.error("the auth token is required: --token or SWITCHBOARD_TOKEN")

    httpd = http.server.ThreadingHTTPServer((args.host, args.port), None)
    port = httpd.server_address[1]
    public_url = (args.public_url or f"http://{args.host}:{port}").rstrip("/")
    httpd.RequestHandlerClass = make_handler(args.token, public_url)
    print(f"IVR listening on http://{args.host}:{port}, VoiceUrl {public_url}/voice",
          file=sys.stderr, flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
