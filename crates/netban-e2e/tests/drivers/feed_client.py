"""A firewall pulling a netban feed, the way PAN-OS, FortiGate or pfSense do: GET over HTTPS
with the validators of the copy it holds (If-None-Match, If-Modified-Since), keeping the copy
on 304. Standard library only.

usage: feed_client.py URL CA_FILE STATE_DIR [TOKEN]
Prints one JSON object: status, etag, and the lines of the list it now holds.
"""

import json
import os
import ssl
import sys
import urllib.error
import urllib.request

url, ca_file, state = sys.argv[1], sys.argv[2], sys.argv[3]
token = sys.argv[4] if len(sys.argv) > 4 else None
os.makedirs(state, exist_ok=True)
held_path = os.path.join(state, "list.txt")
meta_path = os.path.join(state, "validators.json")
meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}

headers = {"User-Agent": "firewall-sim/1.0"}
if token:
    headers["Authorization"] = "Bearer " + token
if "etag" in meta:
    headers["If-None-Match"] = meta["etag"]
if "last_modified" in meta:
    headers["If-Modified-Since"] = meta["last_modified"]

context = ssl.create_default_context(cafile=ca_file)
request = urllib.request.Request(url, headers=headers)
try:
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        status = response.status
        body = response.read()
        with open(held_path, "wb") as f:
            f.write(body)
        meta = {
            "etag": response.headers["ETag"],
            "last_modified": response.headers["Last-Modified"],
        }
        json.dump(meta, open(meta_path, "w"))
except urllib.error.HTTPError as error:
    status = error.code
    if status != 304:
        print(json.dumps({"status": status, "etag": None, "lines": []}))
        sys.exit(0)

lines = open(held_path).read().splitlines() if os.path.exists(held_path) else []
print(json.dumps({"status": status, "etag": meta.get("etag"), "lines": lines}))
