"""The verification recipes of docs/vendors.md, run as vendors would copy them.

Each tested block is marked ``<!-- vendors-test: NAME -->`` in the page. They are run
with node and openssl against deliveries signed by webhookd, genuine and tampered.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from webhookd.signing import new_secret, new_signing_key, public_key, signature_headers, signer

DOC = Path(__file__).resolve().parents[2] / "docs" / "vendors.md"
BODY = (
    b'{"event":"order.created","event_id":"evt_1-0","timestamp":"2024-05-01T10:34:56.123Z",'
    b'"data":{"order_id":"ord_1","note":"caf\xc3\xa9"}}\n'
)
SECRET = new_secret(b"vendor secret of 32 bytes, long!")
SIGNING_KEY = new_signing_key(b"vendor ed25519 seed of 32 bytes!")


def block(name: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"<!-- vendors-test: {name} -->\n```\w+\n(.*?)```", text, re.DOTALL)
    assert match, f"no block {name} in {DOC}"
    return match.group(1)


def delivery(now: int) -> dict[str, str]:
    headers = signature_headers(
        [b"vendor secret of 32 bytes, long!"], "evt_1-0", now, BODY, [signer(SIGNING_KEY)]
    )
    return {name.lower(): value for name, value in headers}


def entry(headers: dict[str, str], version: str) -> str:
    [found] = [e for e in headers["webhook-signature"].split(" ") if e.startswith(version + ",")]
    return found.partition(",")[2]


needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
needs_shell = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("bash", "openssl", "base64", "od")),
    reason="bash, openssl, base64 and od are needed",
)

NODE_HARNESS = """
const fs = require("node:fs");
const [body, headers, secret] = [fs.readFileSync("body.json"),
  JSON.parse(fs.readFileSync("headers.json")), process.argv[2]];
try {
  console.log(JSON.stringify(verifyWebhook(body, headers, secret)));
} catch (error) {
  console.log("REFUSED " + error.message);
}
"""


@needs_node
@pytest.mark.parametrize("key", ["secret", "public key"])
def test_the_node_recipe_accepts_genuine_and_refuses_tampered(tmp_path: Path, key: str) -> None:
    script = tmp_path / "verify.js"
    script.write_text(block("node") + NODE_HARNESS)
    credential = SECRET if key == "secret" else public_key(signer(SIGNING_KEY))

    def run(body: bytes, headers: dict[str, str]) -> str:
        (tmp_path / "body.json").write_bytes(body)
        (tmp_path / "headers.json").write_text(json.dumps(headers))
        result = subprocess.run(
            ["node", str(script), credential],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout.strip()

    now = int(time.time())
    assert json.loads(run(BODY, delivery(now))) == json.loads(BODY)
    assert run(BODY.replace(b"ord_1", b"ord_2"), delivery(now)) == "REFUSED no valid signature"
    assert run(BODY, delivery(now - 301)) == "REFUSED timestamp outside the tolerance"
    assert run(BODY, {**delivery(now), "webhook-id": "evt_2-0"}) == "REFUSED no valid signature"
    garbled = {**delivery(now), "webhook-signature": "v1a,AAAA v1,%%% v2 nonsense"}
    assert run(BODY, garbled) == "REFUSED no valid signature"


def shell(script: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout.strip()


@needs_shell
def test_the_openssl_recipes_compute_the_delivered_signatures(tmp_path: Path) -> None:
    (tmp_path / "body.json").write_bytes(BODY)
    headers = delivery(int(time.time()))
    env = {
        "WEBHOOK_ID": headers["webhook-id"],
        "WEBHOOK_TIMESTAMP": headers["webhook-timestamp"],
        "WEBHOOK_SECRET": SECRET,
        "X_TIMESTAMP": headers["x-timestamp"],
    }
    assert shell(block("shell-v1"), tmp_path, env) == entry(headers, "v1")
    assert shell(block("shell-x"), tmp_path, env) == headers["x-signature"]
    env["WEBHOOK_SECRET"] = new_secret(b"somebody else's 32-byte secret!!")
    assert shell(block("shell-v1"), tmp_path, env) != entry(headers, "v1")


@needs_shell
def test_the_openssl_ed25519_recipe_verifies_genuine_deliveries_only(tmp_path: Path) -> None:
    (tmp_path / "body.json").write_bytes(BODY)
    headers = delivery(int(time.time()))
    env = {
        "WEBHOOK_ID": headers["webhook-id"],
        "WEBHOOK_TIMESTAMP": headers["webhook-timestamp"],
        "PUBLIC_KEY": public_key(signer(SIGNING_KEY)),
        "SIGNATURE": entry(headers, "v1a"),
    }
    assert shell(block("shell-v1a"), tmp_path, env) == "Signature Verified Successfully"
    (tmp_path / "body.json").write_bytes(BODY.replace(b"ord_1", b"ord_9"))
    assert "Signature Verified Successfully" not in shell(block("shell-v1a"), tmp_path, env)
