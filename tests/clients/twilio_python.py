"""Drives Switchboard's call router with Twilio's official Python helper library.

Run by tests/integration/helper_library.rs with SWITCHBOARD_BASE, ACCOUNT_SID and
AUTH_TOKEN set; exits non-zero (with the failing step) if the library cannot use the
server as it uses Twilio.
"""

import json
import os
import sys

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

base = os.environ["SWITCHBOARD_BASE"]
sid = os.environ["ACCOUNT_SID"]
token = os.environ["AUTH_TOKEN"]
number = os.environ["PHONE_NUMBER"]

client = Client(sid, token)
client.api.base_url = base

results = {}

created = client.incoming_phone_numbers.create(
    phone_number=number, voice_url="http://127.0.0.1:9/voice", friendly_name="helper library"
)
assert created.sid.startswith("PN"), created.sid
assert created.phone_number == number
results["number"] = created.sid
listed = client.incoming_phone_numbers.list(limit=20)
assert any(n.sid == created.sid for n in listed), [n.sid for n in listed]

call = client.calls.create(
    to="+14155550199",
    from_=number,
    twiml='<Response><Pause length="30"/></Response>',
)
assert call.sid.startswith("CA"), call.sid
assert call.direction == "outbound-api", call.direction
fetched = client.calls(call.sid).fetch()
assert fetched.sid == call.sid
assert fetched.status in ("queued", "ringing", "in-progress"), fetched.status
assert fetched.date_created is not None, "date_created parses as a date"
updated = client.calls(call.sid).update(status="completed")
assert updated.sid == call.sid
results["call"] = call.sid
calls = client.calls.list(limit=5)
assert any(c.sid == call.sid for c in calls)

message = client.messages.create(to="+14155550199", from_=number, body="hello from the helper library")
assert message.sid.startswith("SM"), message.sid
assert message.body == "hello from the helper library"
results["message"] = message.sid

try:
    client.calls.create(to="not-a-number", from_=number, url="http://127.0.0.1:9/x")
    sys.exit("an invalid To was accepted")
except TwilioRestException as error:
    assert error.status == 400, error.status
    assert error.code == 21211, error.code
    results["error_code"] = error.code

try:
    client.calls("CA" + "0" * 32).fetch()
    sys.exit("an unknown call was found")
except TwilioRestException as error:
    assert error.status == 404, error.status
    assert error.code == 20404, error.code

print(json.dumps(results))
