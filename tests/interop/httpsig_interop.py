#!/usr/bin/env python3
"""RFC 9421 interop with an independent implementation (PyPI http-message-signatures).

  httpsig_interop.py sign   ALG PRIVATE_KEY.pem KEYID MESSAGE.json   -> prints the fields it added (JSON)
  httpsig_interop.py verify ALG PUBLIC_KEY.pem  KEYID MESSAGE.json   -> exit 0 if the signature verifies

MESSAGE.json: {"method": "POST", "url": "http://…", "headers": [[name, value], …], "body": base64}
"""
import base64
import datetime
import json
import sys

import requests
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, MappingKeyResolver, algorithms

ALGS = {
    "ed25519": algorithms.ED25519,
    "ecdsa-p256-sha256": algorithms.ECDSA_P256_SHA256,
}
TAG = "aims-interop"
COMPONENTS = ("@method", "@authority", "@path", "@query", "content-type", "content-digest")


def prepared(msg):
    body = base64.b64decode(msg["body"])
    req = requests.Request(msg["method"], msg["url"], data=body).prepare()
    req.headers.clear()
    for name, value in msg["headers"]:
        req.headers[name] = value
    return req, body


def main():
    mode, alg, key_file, keyid, msg_file = sys.argv[1:6]
    msg = json.load(open(msg_file))
    req, body = prepared(msg)
    key = open(key_file, "rb").read()
    if mode == "sign":
        signer = HTTPMessageSigner(
            signature_algorithm=ALGS[alg],
            key_resolver=MappingKeyResolver(public_keys={}, private_keys={keyid: key}),
        )
        signer.sign(
            req,
            key_id=keyid,
            created=datetime.datetime.now(datetime.timezone.utc),
            nonce="py-" + base64.urlsafe_b64encode(datetime.datetime.now().isoformat().encode()).decode(),
            label="py",
            tag=TAG,
            covered_component_ids=COMPONENTS,
            body=body,
        )
        print(json.dumps({k: req.headers[k] for k in ("Signature-Input", "Signature", "Content-Digest")}))
    else:
        verifier = HTTPMessageVerifier(
            signature_algorithm=ALGS[alg],
            key_resolver=MappingKeyResolver(public_keys={keyid: key}, private_keys={}),
        )
        try:
            verifier.verify(req, expect_tag=TAG, require_components=COMPONENTS, body=body)
        except Exception as e:  # any failure is a rejection
            print(f"REJECTED: {type(e).__name__}: {e}")
            sys.exit(1)
        print("VERIFIED")


if __name__ == "__main__":
    main()
