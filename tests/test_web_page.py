"""The web page, end to end in headless Chromium (Debian's ``chromium`` package, driven by Playwright).

A real uvicorn server on loopback serves a tiny model. The test types a query and checks that cards with
reasons appear, then likes an item and checks that the next results change, and switches to Chinese.

Set ``LUCIDREC_WEB_MODEL=models/ml100k`` and ``LUCIDREC_SCREENSHOT=docs/service-page.png`` to take the
README's screenshot with a real model.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
playwright_api = pytest.importorskip("playwright.sync_api")
import uvicorn  # noqa: E402

from lucidrec.service.app import ServiceSettings, create_app  # noqa: E402

CHROMIUM = Path(os.environ.get("LUCIDREC_CHROMIUM", "/usr/bin/chromium"))
KEY = "web-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from test_service import tiny_service_model

    model_dir = Path(os.environ.get("LUCIDREC_WEB_MODEL") or tiny_service_model(tmp_path_factory))
    app = create_app(
        # public_reads: the page picks a stored user before any key is pasted (reads are keyed by default).
        ServiceSettings(
            model_dir=model_dir, db_path=tmp_path_factory.mktemp("web") / "f.db", api_keys=[KEY], public_reads=True
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(600):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", app
    srv.should_exit = True
    th.join(timeout=20)


@pytest.fixture(scope="module")
def page(server):
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the web page test needs Debian's chromium. Fix: apt-get install -y chromium "
            "(.ci/run does this), or set LUCIDREC_CHROMIUM to a Chromium binary."
        )
    with playwright_api.sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        yield pg
        browser.close()
        assert not errors, errors


def _card_ids(page) -> list[str]:
    return page.eval_on_selector_all("#results .card", "cs => cs.map(c => c.dataset.itemId)")


def _a_user(app) -> str:
    store = app.state.store
    return next(u for u, n in store.users(50) if n >= 5)


def test_typed_query_shows_cards_with_reasons(page, server):
    base, _ = server
    page.goto(base + "/")
    page.fill("#query", "something with spaceships and lasers")
    page.press("#query", "Enter")
    page.wait_for_selector("#results .card")
    cards = page.query_selector_all("#results .card")
    assert len(cards) == 10
    for c in cards:
        assert c.query_selector(".title").inner_text().strip()
        assert len(c.query_selector(".reason").inner_text().strip()) > 20
        assert c.query_selector(".like") is not None
    # Every card has an evidence bar with at least one segment (the contributions).
    assert page.eval_on_selector_all("#results .card .bar .seg", "s => s.length") >= 10
    parsed = page.query_selector("#parsed")
    assert parsed.is_visible() and "spaceships" in parsed.inner_text()


def test_like_without_key_asks_for_one_then_liking_changes_results(page, server):
    base, app = server
    user = _a_user(app)
    page.goto(base + "/")
    page.evaluate("localStorage.clear()")
    n_rows = len(app.state.store.history(user))
    page.fill("#user", user)
    page.click("#go")
    page.wait_for_selector("#results .card")
    before = _card_ids(page)
    page.click("#results .card:first-child .like")
    page.wait_for_function("document.getElementById('status').className === 'error'")
    assert "key" in page.inner_text("#status").lower()
    assert len(app.state.store.history(user)) == n_rows  # nothing was written

    page.fill("#apikey", KEY)
    page.click("#results .card:first-child .like")
    page.wait_for_function(
        "(liked) => ![...document.querySelectorAll('#results .card')].some(c => c.dataset.itemId === liked)",
        arg=before[0],
    )
    after = _card_ids(page)
    assert after != before and before[0] not in after
    rows = app.state.store.history(user)
    assert rows[-1].item == before[0] and rows[-1].event == "liked"


def test_language_switch_renders_chinese(page, server):
    base, app = server
    page.goto(base + "/")
    page.fill("#user", _a_user(app))
    page.click("#lang-zh")
    page.click("#go")
    page.wait_for_selector("#results .card .reason")
    reason = page.inner_text("#results .card:first-child .reason")
    assert any("\u4e00" <= ch <= "\u9fff" for ch in reason)
    assert page.inner_text("#go") == "推荐"
    page.click("#lang-en")
    page.wait_for_function("document.getElementById('go').textContent === 'Recommend'")


def test_screenshot_for_the_readme(page, server):
    """Only when LUCIDREC_SCREENSHOT names a file: a query plus a user's history, in English."""
    target = os.environ.get("LUCIDREC_SCREENSHOT")
    if not target:
        return
    base, app = server
    page.goto(base + "/")
    page.fill("#user", os.environ.get("LUCIDREC_SCREENSHOT_USER") or _a_user(app))
    page.fill("#query", os.environ.get("LUCIDREC_SCREENSHOT_QUERY", "a dark crime thriller from the 90s"))
    page.select_option("#k", "5")
    page.click("#go")
    page.wait_for_selector("#results .card")
    page.wait_for_timeout(300)
    page.screenshot(path=target, full_page=True)
