#!/usr/bin/env python3
"""The API-key client of seed 004, with its signing logic unchanged.

signed_request() below is the seed's example as published; only its two
placeholder constants (KEY_ID, HMAC_SECRET) are filled in from the command
line.  It calls requests.request();
a stand-in `requests` module records that call instead of sending it, so
the test can hand the exact method, path, headers and body to
enrollment.verify_request.  time.time and uuid.uuid4 are left alone except
where a case asks for a skewed clock or a fixed nonce.

usage: seed_client.py KEY_ID HMAC_SECRET_HEX METHOD PATH [BODY] [--skew S] [--nonce N]
prints one JSON object: {"method", "path", "headers", "body_hex"}
"""
import json
import sys
import types

# --- stand-in for the requests package: remember the call -------------------
sent = {}


def _request(method, url, headers=None, data=None):
    sent.update(method=method, url=url, headers=headers, data=data)
    return types.SimpleNamespace(json=lambda: {})


sys.modules["requests"] = types.SimpleNamespace(request=_request)

args = sys.argv[1:]
skew = 0
fixed_nonce = None
if "--skew" in args:
    i = args.index("--skew")
    skew = int(args[i + 1])
    del args[i:i + 2]
if "--nonce" in args:
    i = args.index("--nonce")
    fixed_nonce = args[i + 1]
    del args[i:i + 2]
key_id_arg, secret_arg, method_arg, path_arg = args[:4]
body_arg = args[4].encode() if len(args) > 4 else b""

import time  # noqa: E402
import uuid  # noqa: E402

if skew:
    _real_time = time.time
    time.time = lambda: _real_time() + skew
if fixed_nonce is not None:
    uuid.uuid4 = lambda: fixed_nonce

# --- seed 004, unchanged from here ------------------------------------------
import hmac
import hashlib
import time
import uuid
import requests

# the seed's two placeholder constants, filled in from the command line
KEY_ID = key_id_arg
HMAC_SECRET = bytes.fromhex(secret_arg)

def signed_request(method, path, body=b"", base_url="https://console.example.com:15483"):
    timestamp = str(int(time.time()))
    nonce = str(uuid.uuid4())
    body_hash = hashlib.sha256(body).hexdigest()
    signing_string = f"{method}\n{path}\n{timestamp}\n{nonce}\n{body_hash}"
    signature = hmac.new(HMAC_SECRET, signing_string.encode(), hashlib.sha256).hexdigest()
    headers = {
        "X-Telovix-Key-ID": KEY_ID,
        "X-Telovix-Timestamp": timestamp,
        "X-Telovix-Nonce": nonce,
        "X-Telovix-Signature": f"sha256={signature}",
        "Content-Type": "application/json",
    }
    return requests.request(method, f"{base_url}{path}", headers=headers, data=body)
# --- end of seed 004 ---------------------------------------------------------

signed_request(method_arg, path_arg, body_arg)
base = "https://console.example.com:15483"
print(json.dumps({
    "method": sent["method"],
    "path": sent["url"][len(base):],
    "headers": sent["headers"],
    "body_hex": sent["data"].hex(),
}))
