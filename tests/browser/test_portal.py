"""The vendor portal in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) against a ``webhookd run`` process and a real
receiver on loopback.

A vendor logs in with a portal token, adds an endpoint, sees an event it published
delivered, replays it, reveals its secret in the verification snippets and makes an
API key; another vendor's token then sees none of it; the operator sees every vendor.
Each page is saved as a screenshot under ``build/screenshots/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import daemon_config
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from processes import WEBHOOKD, clean_environ, serving, write_config
from webhookd.embedded import free_port

ADMIN = "browser-admin-token"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
WAIT_S = 15


class Hooks:
    """What the receiver got: (event id, headers, body) per request, answered 200."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()

    def of(self, event_id: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(headers, body) for got, headers, body in self.received if got == event_id]

    def count(self, event_id: str) -> int:
        return len(self.of(event_id))


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, Hooks]]:
    hooks = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {name.lower(): value for name, value in self.headers.items()}
            with hooks.lock:
                hooks.received.append((headers.get("x-event-id", ""), headers, body))
            self.send_response(500 if self.path == "/fail" else 200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", hooks
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def config(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    port = free_port()
    return write_config(
        tmp_path_factory.mktemp("portal") / "webhookd.toml",
        daemon_config(
            redis_url, prefix, admin={"listen": f"127.0.0.1:{port}", "token": ADMIN},
            quotas={"default_plan": "basic", "limiter_prefix": f"{prefix}:rl"},
            log={"level": "error"},
        ),
    )  # fmt: skip


def cli(config: Path, *args: str) -> str:
    result = subprocess.run(
        [WEBHOOKD, "--config", str(config), *args],
        capture_output=True, text=True, env=clean_environ(), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def portal_url(config: Path) -> Iterator[str]:
    """``webhookd run`` with this config; the portal's URL once it answers."""
    listen = next(line for line in config.read_text().splitlines() if "listen" in line)
    base = "http://" + listen.split('"')[1]
    with serving([WEBHOOKD, "--config", str(config), "run"], base, clean_environ()):
        yield f"{base}/portal/"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        pytest.fail(
            f"the browser tests need Debian's chromium and chromium-driver; missing {missing} "
            "(scripts/test installs them: apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Portal:
    """The portal as a user drives it: pages by hash, forms, buttons, waits."""

    def __init__(self, driver: WebDriver, url: str) -> None:
        self.driver = driver
        self.url = url
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def wait(self, check: Callable[[WebDriver], Any], what: str) -> Any:
        return WebDriverWait(self.driver, WAIT_S).until(check, f"waited for {what}")

    def find(self, css: str) -> WebElement:
        return self.wait(lambda d: d.find_element(By.CSS_SELECTOR, css), css)

    def text_of(self, css: str) -> str:
        """The rendered text of every match, read in one step (the page re-renders)."""
        script = "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText)"
        return "\n".join(self.driver.execute_script(script, css))

    def log_in(self, token: str, landing: str) -> None:
        self.driver.get(self.url)
        self.driver.execute_script("sessionStorage.clear()")
        self.driver.get(self.url + "#/")
        self.driver.refresh()
        self.find("#token").send_keys(token)
        self.find("form button[type=submit]").click()
        self.find(f'section[data-page="{landing}"]')

    def open(self, page: str, section: str) -> None:
        self.driver.get(f"{self.url}#/{page}")
        self.find(f'section[data-page="{section}"]')

    def fill(self, form_of: str, values: dict[str, str]) -> None:
        """Fill the form inside the section titled ``form_of`` and submit it."""
        form = self.find(f'[data-page="{form_of}"] form')
        for name, value in values.items():
            box = form.find_element(By.NAME, name)
            box.clear()
            box.send_keys(value)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    def button(self, within: str, label: str) -> None:
        scope = self.find(within)

        def labelled(_: WebDriver) -> WebElement | None:
            buttons = scope.find_elements(By.TAG_NAME, "button")
            return next((b for b in buttons if b.text == label), None)

        self.wait(labelled, f"button {label}").click()

    def flash(self, contains: str) -> str:
        return str(self.wait(lambda d: contains in (t := self.text_of("#flash")) and t, contains))

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def snippets_verify(portal: Portal, headers: dict[str, str], body: bytes, tmp_path: Path) -> None:
    """The verification snippets, as the portal shows them with the revealed secret,
    accept a delivery the receiver got."""
    python = portal.text_of("#python-snippet")
    script = f"request_body = {body!r}\nrequest_headers = {headers!r}\n{python}\nprint(payload)"
    checked = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert checked.returncode == 0 and "ord_1" in checked.stdout, checked.stderr
    (tmp_path / "body.json").write_bytes(body)
    shell = subprocess.run(
        ["bash", "-c", portal.text_of("#shell-snippet")], cwd=tmp_path, capture_output=True,
        text=True, env={"PATH": os.environ["PATH"], "X_TIMESTAMP": headers["x-timestamp"]},
    )  # fmt: skip
    assert shell.stdout.strip() in headers["x-signature"].split(","), shell.stderr
    if shutil.which("node") is None:
        print("node is not installed: the Node.js snippet was not run")
        return
    given = f"const headers = {json.dumps(headers)};\nconst rawBody = {json.dumps(body.decode())};"
    node = f"{given}\n{portal.text_of('#node-snippet')}\nprocess.exit(ok ? 0 : 1);"
    assert subprocess.run(["node", "-e", node], capture_output=True).returncode == 0


def test_a_vendor_uses_the_portal_and_another_sees_none_of_it(
    browser: WebDriver, portal_url: str, config: Path, receiver: tuple[str, Hooks], tmp_path: Path
) -> None:
    hook_url, hooks = receiver
    portal = Portal(browser, portal_url)
    mine, theirs = cli(config, "portal", "token", "v_1"), cli(config, "portal", "token", "v_2")

    portal.log_in(mine, "Endpoints")
    assert "vendor v_1" in portal.text_of("#who")
    portal.fill("Add an endpoint", {"url": hook_url, "events": "order.*"})
    secret = portal.find("#shown-once .secret").text
    assert secret.startswith("whsec_")
    [row] = browser.find_elements(By.CSS_SELECTOR, "tr[data-endpoint]")
    endpoint_id = row.get_attribute("data-endpoint")
    assert hook_url in row.text and "order.*" in row.text
    endpoint_row = f'tr[data-endpoint="{endpoint_id}"]'
    portal.button(endpoint_row, "Disable")
    portal.wait(lambda d: "disabled" in portal.text_of(endpoint_row), "the endpoint disabled")
    portal.button(endpoint_row, "Enable")
    portal.wait(lambda d: "enabled" in portal.text_of(endpoint_row), "the endpoint enabled")
    portal.button(endpoint_row, "Edit")
    portal.fill(f"Edit {endpoint_id}", {"events": "order.*, payment.captured",
                                        "retry_schedule": "1, 2"})  # fmt: skip
    portal.wait(lambda d: "payment.captured" in portal.text_of(endpoint_row), "the edit")
    assert "1, 2" in portal.text_of(endpoint_row)
    portal.button(endpoint_row, "Rotate secret")
    portal.wait(lambda d: portal.text_of("#shown-once .secret") not in ("", secret), "a new secret")
    secret = portal.text_of("#shown-once .secret")
    assert secret.startswith("whsec_")
    portal.shot("endpoints")

    event_id = cli(config, "publish", "order.created", "--vendor", "v_1",
                   "--data", json.dumps({"order_id": "ord_1"}))  # fmt: skip
    portal.wait(lambda d: hooks.count(event_id) == 1, "the delivery")
    recent = f'#recent tr[data-event="{event_id}"]'

    def appeared(_: WebDriver) -> bool:
        portal.open("deliveries", "Deliveries")
        return "delivered" in portal.text_of(recent)

    portal.wait(appeared, "the delivery in the recent deliveries")
    row_text = portal.text_of(recent)
    assert endpoint_id in row_text and "order.created" in row_text and "200" in row_text
    portal.shot("deliveries")
    portal.button(recent, "Replay")
    portal.flash(f"Replayed {event_id} to 1 endpoint")
    portal.wait(lambda d: hooks.count(event_id) == 2, "the replayed delivery")
    portal.fill("Deliveries", {"endpoint_id": endpoint_id})  # filtered by endpoint and outcome
    portal.wait(lambda d: "endpoint_id=" in d.current_url, "the filter in the address")
    portal.find(recent)
    portal.fill("Find an event", {"event_id": event_id})
    portal.wait(lambda d: "delivered" in portal.text_of("#event-found"), "the event's deliveries")
    portal.fill("Recover", {"endpoint_id": endpoint_id})
    portal.flash("Recovered 0 deliveries")

    portal.open("endpoints", "Endpoints")
    portal.button(endpoint_row, "Send test")
    portal.wait(lambda d: "200" in portal.text_of("#test-result"), "the test event's answer")
    assert endpoint_id in portal.text_of("#test-result")

    portal.open("catalog", "Event catalog")
    assert "order.created" in portal.text_of('section[data-page="Event catalog"]')
    portal.button('section[data-page="Verifying signatures"]', "Reveal secret in the snippets")
    portal.wait(lambda d: secret in portal.text_of("pre"), "the secret in the snippets")
    portal.shot("catalog")
    headers, body = hooks.of(event_id)[0]
    snippets_verify(portal, headers, body, tmp_path)

    portal.open("keys", "API keys")
    assert "basic" in portal.text_of('section[data-page="Usage"]')
    portal.button('section[data-page="API keys"]', "Create API key")
    key = portal.find("#key-once .secret").text
    assert key.startswith("mk_live_")
    portal.find("tr[data-key]")
    portal.shot("keys")

    failing = hook_url.rsplit("/", 1)[0] + "/fail"  # answers 500: its deliveries die
    portal.open("endpoints", "Endpoints")
    portal.fill("Add an endpoint", {"url": failing, "events": "inventory.*",
                                    "retry_schedule": "0.1"})  # fmt: skip
    portal.wait(lambda d: failing in portal.text_of("tr[data-endpoint]"), "the failing endpoint")
    dying = cli(config, "publish", "inventory.low_stock", "--vendor", "v_1", "--data", "{}")

    portal.button("header", "Log out")
    portal.log_in(theirs, "Endpoints")
    assert "vendor v_2" in portal.text_of("#who")
    assert browser.find_elements(By.CSS_SELECTOR, "tr[data-endpoint]") == []
    page = browser.page_source
    assert endpoint_id not in page and hook_url not in page
    portal.open("deliveries", "Deliveries")
    assert browser.find_elements(By.CSS_SELECTOR, "#recent tr[data-event]") == []
    portal.fill("Find an event", {"event_id": event_id})
    portal.flash(f"no event {event_id}")
    assert portal.text_of("#event-found") == ""
    portal.open("keys", "API keys")
    assert browser.find_elements(By.CSS_SELECTOR, "tr[data-key]") == []
    assert key not in browser.page_source and secret not in browser.page_source
    portal.shot("other-vendor")

    portal.button("header", "Log out")
    portal.log_in(ADMIN, "Last hour")
    portal.find("svg.chart rect.delivered")
    assert portal.text_of('[data-total="retry_backlog"]').startswith("Retry backlog")
    portal.shot("operator")
    dead_row = "tr[data-dead]"

    def dead_listed(_: WebDriver) -> bool:
        portal.open("dead", "Dead letters")
        return dying in portal.text_of(dead_row)

    portal.wait(dead_listed, "the dead letter")
    portal.shot("dead-letters")
    portal.button('section[data-page="Dead letters"] tbody', "Redrive")
    portal.flash("Redriven")
    portal.open("vendors", "Vendors")
    vendors = portal.text_of('section[data-page="Vendors"] tbody')
    assert "v_1" in vendors and "v_2" not in vendors and "default" in vendors
    portal.shot("vendors")
    for name in ("endpoints", "deliveries", "catalog", "keys", "other-vendor", "operator",
                 "dead-letters", "vendors"):  # fmt: skip
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 1000
    print(f"screenshots in {SCREENSHOTS}")
    # No script error and nothing the Content-Security-Policy had to block, on any page.
    problems = [
        entry["message"]
        for entry in browser.get_log("browser")
        if "Uncaught" in entry["message"] or "Content Security Policy" in entry["message"]
    ]
    assert problems == []


def test_the_portal_refuses_a_made_up_token(browser: WebDriver, portal_url: str) -> None:
    portal = Portal(browser, portal_url)
    browser.get(portal_url)
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    portal.find("#token").send_keys("wpt_made.up")
    portal.find("form button[type=submit]").click()
    portal.flash("not valid")
    assert browser.execute_script("return sessionStorage.length") == 0
