"""The admin UI end to end in a real headless browser (Chromium driven by Selenium) against
``emdash serve`` in its own process on 127.0.0.1, with the example ``forms`` plugin (admin
page, widget, settings) and ``audit-trail``, sandboxed.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian: ``apt-get install chromium
chromium-driver``; ``.ci/run`` installs them) and selenium (test extras). Without them the
test is skipped locally with the reason, and FAILS in CI (``CI=true``): a browser test that
silently never runs proves nothing.

Every wait is on a condition (an element, a text), never on time; the generous bounds
only turn a hang into a failure. Screenshots of the main pages go to
``.artifacts/admin-screenshots/`` (git-ignored) for a reviewer to look at.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SHOTS = ROOT / ".artifacts" / "admin-screenshots"
TOKEN = "browser-test-token-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 90  # an upper bound that turns a hang into a failure; nothing asserts on time


def _browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser_ready() -> None:
    reason = _browser_missing()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"The admin browser test must run in CI: {reason}", pytrace=False)
    pytest.skip(f"no headless browser here: {reason}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(browser_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    site = tmp_path_factory.mktemp("admin-site")
    (site / "emdash.toml").write_text(
        textwrap.dedent(
            f"""\
            database = "site.db"
            sandbox = true
            api_token = {{ "$env" = "EMDASH_API_TOKEN" }}

            [[plugins]]
            path = "{EXAMPLES / "forms"}"

            [[plugins]]
            path = "{EXAMPLES / "audit-trail"}"
            """
        )
    )
    port = _free_port()
    # This checkout's emdash, whatever the working directory (the site's) puts on sys.path.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "EMDASH_API_TOKEN": TOKEN, "PYTHONPATH": path}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emdash.cli", "serve", "--port", str(port)],
        cwd=site,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    root = f"http://127.0.0.1:{port}"
    base = root + "/_emdash/admin/"
    try:
        deadline = time.monotonic() + WAIT_S
        with httpx.Client(trust_env=False, timeout=10) as client:
            while True:
                try:
                    if client.get(base + "login").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    out, err = proc.communicate()
                    pytest.fail(f"emdash serve did not start:\n{out}\n{err}")
                time.sleep(0.1)
            # One submission through the public route, so the example's table has a row.
            sent = client.post(
                root + "/_emdash/api/plugins/forms/submit",
                json={"form": "contact", "email": "reader@example.com", "message": "Hi <b>"},
            )
            assert sent.status_code == 200, sent.text
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


@pytest.fixture(scope="module")
def driver(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # No proxy from the environment: the browser talks to 127.0.0.1 only.
    options.add_argument("--no-proxy-server")
    web = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield web
    finally:
        web.quit()


def test_admin_in_a_real_browser(server: str, driver: Any) -> None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    SHOTS.mkdir(parents=True, exist_ok=True)
    # A condition may look at the page being left while the next one loads.
    transient = (NoSuchElementException, StaleElementReferenceException)

    def wait(condition: Callable[[Any], Any]) -> Any:
        return WebDriverWait(driver, WAIT_S, ignored_exceptions=transient).until(condition)

    def heading_is(text: str) -> Callable[[Any], bool]:
        return lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith(text)

    def toast_says(text: str) -> Callable[[Any], bool]:
        def check(d: Any) -> bool:
            found = d.find_elements(By.ID, "toast")
            return bool(found) and text in found[0].text

        return check

    def field(label: str) -> Any:
        # Through the label, as a screen reader finds it: proves the label is bound.
        tag = driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']")
        return driver.find_element(By.ID, tag.get_attribute("for"))

    def shot(name: str) -> None:
        driver.save_screenshot(str(SHOTS / f"{name}.png"))

    # Sign in.
    driver.get(server)
    wait(heading_is("Sign in"))
    shot("00-sign-in")
    field("API token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    wait(heading_is("Dashboard"))
    widget = driver.find_element(By.CSS_SELECTOR, "section.widget").text
    assert "Recent submissions" in widget and "reader@example.com" in widget
    shot("01-dashboard")

    # The example's settings page: save a notify address and a retention, see them stored.
    driver.get(server + "plugins")
    wait(heading_is("Plugins"))
    shot("02-plugins")
    driver.find_element(By.CSS_SELECTOR, "a[href$='/plugins/forms/settings']").click()
    wait(heading_is("Forms: settings"))
    address = field("Notify address")
    address.clear()
    address.send_keys("admin@example.com")
    Select(field("Keep submissions for")).select_by_visible_text("30 days")
    driver.find_element(By.XPATH, "//button[normalize-space()='Save settings']").click()
    wait(toast_says("Settings saved"))
    assert field("Notify address").get_attribute("value") == "admin@example.com"
    assert Select(field("Keep submissions for")).first_selected_option.text == "30 days"
    shot("03-settings")

    # The example's page reads the stored setting; its form round-trips with a toast.
    driver.get(server + "plugins")
    driver.find_element(By.LINK_TEXT, "Submissions").click()
    wait(heading_is("Forms: Submissions"))
    main = driver.find_element(By.TAG_NAME, "main").text
    assert "Contact: admin@example.com" in main and "Hi <b>" in main
    # The custom chart: an SVG picture and its numbers as a table, no script.
    chart = driver.find_element(By.CSS_SELECTOR, "figure.bk-chart-custom")
    assert chart.find_elements(By.CSS_SELECTOR, "svg rect")
    assert "contact" in chart.find_element(By.TAG_NAME, "table").text
    # The conditional field stays visible, with its condition as its description.
    note = field("Why")
    described = driver.find_element(By.ID, note.get_attribute("aria-describedby"))
    assert 'Applies when "Reason" is "Other".' in described.text

    # A forged choice (the DOM edited, as a crafted POST would send it) never reaches the
    # plugin: the form comes back with the field marked and an error toast.
    field("Address to block").send_keys("forged@example.com")
    driver.execute_script(
        "const r = arguments[0]; r.value = 'everything'; r.checked = true;",
        field("Spam"),
    )
    driver.find_element(By.XPATH, "//button[normalize-space()='Block address']").click()
    wait(toast_says("Not sent to forms"))
    assert driver.find_elements(By.CSS_SELECTOR, "fieldset[aria-invalid='true']")
    assert "forged@example.com" not in driver.find_element(By.CSS_SELECTOR, "dl.bk-fields").text
    shot("04a-forged-choice-refused")

    field("Address to block").clear()
    field("Address to block").send_keys("spam@example.com")
    field("Other").click()
    driver.find_element(By.XPATH, "//button[normalize-space()='Update form']").click()
    # Re-rendered by the server for the values chosen, without calling the plugin.
    wait(lambda d: "Not with the values" not in d.find_element(By.TAG_NAME, "form").text)
    assert field("Other").is_selected()
    field("Why").send_keys("Sends the same offer daily")
    driver.find_element(By.XPATH, "//button[normalize-space()='Block address']").click()
    wait(toast_says("Blocked spam@example.com (other)"))
    blocked = driver.find_element(By.CSS_SELECTOR, "dl.bk-fields").text
    assert "spam@example.com" in blocked
    shot("04-plugin-page")

    # Disable a plugin; its deactivate hook shows in the audit log.
    driver.get(server + "plugins")
    driver.find_element(By.XPATH, "//button[normalize-space()='Disable Audit trail']").click()
    wait(toast_says("Plugin audit-trail disabled."))
    assert driver.find_elements(By.XPATH, "//button[normalize-space()='Enable Audit trail']")
    driver.get(server + "audit")
    wait(heading_is("Audit log"))
    Select(field("Plugin")).select_by_value("audit-trail")
    Select(field("Kind")).select_by_value("lifecycle")
    driver.find_element(By.XPATH, "//button[normalize-space()='Filter']").click()
    wait(lambda d: "kind=lifecycle" in d.current_url)
    wait(lambda d: "plugin:deactivate" in d.find_element(By.TAG_NAME, "tbody").text)
    rows = driver.find_element(By.TAG_NAME, "tbody").text
    assert "audit-trail" in rows and "lifecycle" in rows
    # The settings save is in the audit log: which keys changed, never a value.
    driver.get(server + "audit?plugin=forms&kind=admin&since=all")
    wait(heading_is("Audit log"))
    rows = driver.find_element(By.TAG_NAME, "tbody").text
    assert "settings: retention_days, notify_email" in rows
    assert "admin@example.com" not in rows
    driver.get(server + "audit?since=all")
    wait(heading_is("Audit log"))
    assert driver.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    shot("05-audit")
    driver.get(server + "providers")
    wait(heading_is("Exclusive hook providers"))
    shot("06-providers")

    # The pages ran under the CSP without a violation (the stylesheet loaded, nothing inline).
    styled = driver.execute_script(
        "return getComputedStyle(document.querySelector('header.top')).display"
    )
    assert styled == "flex"
    problems = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert problems == []

    # Sign out: the admin is closed again.
    driver.find_element(By.XPATH, "//button[normalize-space()='Sign out']").click()
    wait(heading_is("Sign in"))
    driver.get(server + "plugins")
    wait(heading_is("Sign in"))
