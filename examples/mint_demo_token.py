#!/usr/bin/env python3
"""Mints an ES256 token for examples/llm-streaming.yaml, signed with the DEMO key
examples/llm-demo-signing-key.pem (public half: examples/llm-demo-jwks.json). The key is in the
repository on purpose, for trying the example: never trust it anywhere else.

  python3 examples/mint_demo_token.py [subject] [seconds]    # prints the token
"""

import base64
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_to_raw(der):
    """An ECDSA-Sig-Value (DER) as JOSE's r || s, 32 bytes each."""
    assert der[0] == 0x30
    i = 2
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\x00").rjust(32, b"\x00")
        i += 2 + n
    return out


def main():
    subject = sys.argv[1] if len(sys.argv) > 1 else "demo-user"
    lifetime = int(sys.argv[2]) if len(sys.argv) > 2 else 3600
    now = int(time.time())
    header = {"alg": "ES256", "typ": "JWT", "kid": "demo-1"}
    claims = {"iss": "https://idp.example", "aud": "llm-gateway", "sub": subject,
              "iat": now, "exp": now + lifetime}
    signing_input = (b64url(json.dumps(header).encode()) + "." +
                     b64url(json.dumps(claims).encode())).encode()
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign",
                          os.path.join(HERE, "llm-demo-signing-key.pem")],
                         input=signing_input, capture_output=True, check=True).stdout
    print(signing_input.decode() + "." + b64url(der_to_raw(der)))


if __name__ == "__main__":
    main()
