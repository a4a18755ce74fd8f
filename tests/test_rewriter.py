"""The optional LLM rewriter against a real local HTTP server speaking the OpenAI chat format."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lucidrec.rewriter import LLMRewriter

EVIDENCE = [
    {
        "kind": "history",
        "item_id": "12",
        "title": "Usual Suspects, The (1995)",
        "action": "rated 5",
        "rating": 5.0,
        "similarity": 0.85,
        "contribution": 1.93,
    },
    {"kind": "query", "text": "dark crime thriller", "contribution": 1.4},
    {"kind": "popularity", "contribution": 0.21},
    {"kind": "attribute", "name": "genre", "shared": ["Crime", "Thriller"]},
]
TITLE = "L.A. Confidential (1997)"
TEMPLATE = "Recommended L.A. Confidential (1997) because you rated Usual Suspects, The (1995) 5 stars."
CATALOG = [TITLE, "Usual Suspects, The (1995)", "Heat (1995)", "Toy Story (1995)"]


class _Handler(BaseHTTPRequestHandler):
    mode = "good"
    seen: list = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        _Handler.seen.append({"body": body, "auth": self.headers.get("Authorization")})
        mode = _Handler.mode
        if mode == "slow":
            time.sleep(1.5)
        if mode == "error":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")
            return
        texts = {
            "good": "Since you gave The Usual Suspects 5 stars, L.A. Confidential (1997) is a natural next "
            "pick: the two are 0.85 similar and both are crime thrillers.",
            "invented_number": "You rated The Usual Suspects 5 stars; the films are 97% alike.",
            "invented_title": "Fans of Heat and The Usual Suspects love L.A. Confidential.",
            "slow": "too late",
        }
        if mode == "garbage":
            payload = b"not json at all"
        else:
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": texts[mode]}}]}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)
        except BrokenPipeError:  # the client gave up (the timeout test): expected
            pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def _rewriter(url, timeout=5.0):
    return LLMRewriter(url, "test-model", api_key="sk-test", timeout=timeout, catalog_titles=CATALOG)


def test_good_answer_is_used_and_request_is_openai_shaped(server):
    _Handler.mode = "good"
    _Handler.seen.clear()
    r = _rewriter(server).rewrite(TITLE, EVIDENCE, TEMPLATE)
    assert r.source == "llm", r.detail
    assert "0.85" in r.text
    req = _Handler.seen[-1]
    assert req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "test-model"
    assert req["body"]["messages"][0]["role"] == "system"


@pytest.mark.parametrize("mode,why", [("invented_number", "number 97"), ("invented_title", "Heat")])
def test_invented_facts_fall_back_to_template(server, mode, why):
    _Handler.mode = mode
    r = _rewriter(server).rewrite(TITLE, EVIDENCE, TEMPLATE)
    assert r.source == "template"
    assert r.text == TEMPLATE
    assert why in r.detail


@pytest.mark.parametrize("mode", ["error", "garbage"])
def test_endpoint_errors_fall_back(server, mode):
    _Handler.mode = mode
    r = _rewriter(server).rewrite(TITLE, EVIDENCE, TEMPLATE)
    assert (r.source, r.text) == ("template", TEMPLATE)
    assert "endpoint failed" in r.detail


def test_slow_endpoint_times_out_and_falls_back(server):
    _Handler.mode = "slow"
    t0 = time.perf_counter()
    r = _rewriter(server, timeout=0.3).rewrite(TITLE, EVIDENCE, TEMPLATE)
    assert r.source == "template"
    assert time.perf_counter() - t0 < 1.4


def test_unreachable_endpoint_falls_back():
    r = LLMRewriter("http://127.0.0.1:9/v1", "m", timeout=0.5).rewrite(TITLE, EVIDENCE, TEMPLATE)
    assert r.source == "template"


def test_from_env(monkeypatch):
    monkeypatch.delenv("LUCIDREC_LLM_BASE_URL", raising=False)
    assert LLMRewriter.from_env() is None
    monkeypatch.setenv("LUCIDREC_LLM_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("LUCIDREC_LLM_MODEL", "m")
    assert LLMRewriter.from_env().model == "m"


def test_check_accepts_numbers_from_titles_and_evidence():
    rw = LLMRewriter("http://x", "m", catalog_titles=CATALOG)
    assert rw.check("Like Usual Suspects, The (1995), which you rated 5, it scores 0.85.", TITLE, EVIDENCE) is None
    assert rw.check("It is 0.9 similar.", TITLE, EVIDENCE) is None  # 0.85 rounded to one decimal
    assert rw.check("It is 0.42 similar.", TITLE, EVIDENCE) is not None
