"""Optional LLM rewriter: turns evidence into fluent prose through any OpenAI-compatible chat endpoint,
and keeps the prose only if it invents nothing.

Configured from the environment (``LUCIDREC_LLM_BASE_URL``, ``LUCIDREC_LLM_MODEL``,
``LUCIDREC_LLM_API_KEY``) or explicitly. Every number in the generated text must be one the evidence
holds (ratings, similarities, years in cited titles, counts), and every catalog title it names must be
a title the evidence cites; otherwise — or when the endpoint errs, times out or answers nonsense — the
template reason is returned. Templates stay the default: small local models tried on this task invented
facts in most outputs.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}\)\s*$")


def _title_variants(title: str) -> set[str]:
    """'Usual Suspects, The (1995)' -> {'Usual Suspects, The (1995)', 'Usual Suspects, The', 'The Usual Suspects'}."""
    base = _YEAR_SUFFIX.sub("", title).strip()
    out = {title, base}
    for art in ("The", "A", "An", "Il", "La", "Le", "Les", "L'"):
        suffix = f", {art}"
        if base.endswith(suffix):
            out.add(f"{art} {base[: -len(suffix)]}")
    return {t for t in out if len(t) >= 4}


@dataclass
class RewriteResult:
    text: str
    source: str  # "llm" or "template"
    detail: str = ""  # why the template was used, when it was


class LLMRewriter:
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 8.0,
        catalog_titles: list[str] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self._catalog_patterns: list[tuple[re.Pattern, str]] = []
        if catalog_titles:
            self.set_catalog(catalog_titles)

    @classmethod
    def from_env(cls, catalog_titles: list[str] | None = None) -> "LLMRewriter | None":
        url, model = os.environ.get("LUCIDREC_LLM_BASE_URL"), os.environ.get("LUCIDREC_LLM_MODEL")
        if not url or not model:
            return None
        return cls(
            url,
            model,
            os.environ.get("LUCIDREC_LLM_API_KEY"),
            float(os.environ.get("LUCIDREC_LLM_TIMEOUT", "8")),
            catalog_titles,
        )

    def ensure_catalog(self, titles) -> None:
        """Use ``titles`` as the catalog to check against unless one was given already."""
        if not self._catalog_patterns:
            self.set_catalog(list(titles))

    def set_catalog(self, titles: list[str]):
        pats = []
        for t in titles:
            for v in _title_variants(str(t)):
                pats.append((re.compile(r"(?<!\w)" + re.escape(v) + r"(?!\w)"), str(t)))
        self._catalog_patterns = pats

    # ------------------------------------------------------------------ the call
    def _chat(self, messages: list[dict]) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0.2, "max_tokens": 200}).encode()
        req = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}),
            },
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - user-configured endpoint
            payload = json.loads(resp.read().decode("utf-8"))
        content = payload["choices"][0]["message"]["content"]
        if not isinstance(content, str) or not content.strip():
            raise ValueError("empty completion")
        return content.strip()

    def rewrite(self, title: str, evidence: list[dict], template: str, lang: str = "en") -> RewriteResult:
        facts = [e for e in evidence if e["kind"] in ("history", "query", "attribute")]
        language = "Chinese" if lang == "zh" else "English"
        messages = [
            {
                "role": "system",
                "content": (
                    f"You write one or two short, friendly sentences in {language} explaining a recommendation. "
                    "Use only the facts given. Do not mention any other title, number, person or attribute."
                ),
            },
            {
                "role": "user",
                "content": json.dumps({"recommended": title, "facts": facts, "draft": template}, ensure_ascii=False),
            },
        ]
        try:
            text = self._chat(messages)
        except (urllib.error.URLError, TimeoutError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
            return RewriteResult(template, "template", f"endpoint failed: {type(e).__name__}")
        problem = self.check(text, title, evidence)
        if problem:
            return RewriteResult(template, "template", problem)
        return RewriteResult(text, "llm")

    # ------------------------------------------------------------------ the check
    def check(self, text: str, title: str, evidence: list[dict]) -> str | None:
        """None when every number and catalog title in ``text`` is backed by the evidence, else why not."""
        allowed_titles = {title} | {e["title"] for e in evidence if e.get("title")}
        allowed_numbers: set[float] = set()
        for e in evidence:
            for key in ("rating", "similarity", "count"):
                if e.get(key) is not None:
                    v = float(e[key])
                    # half-up rounding as people round (Python's round(0.85, 1) gives 0.8)
                    half_up = {float(Decimal(str(v)).quantize(Decimal(q), ROUND_HALF_UP)) for q in ("0.01", "0.1", "1")}
                    allowed_numbers |= {round(v, 2), round(v, 1), round(v)} | half_up
                    if key == "similarity":
                        allowed_numbers.add(round(v * 100))  # "85%"
            if e.get("action", "").startswith("rated "):
                allowed_numbers.add(float(e["action"].split(" ", 1)[1]))
        for t in allowed_titles:
            allowed_numbers |= {float(n) for n in _NUMBER.findall(t)}
        for e in evidence:
            if e["kind"] == "query":
                allowed_numbers |= {float(n) for n in _NUMBER.findall(e["text"])}
            if e["kind"] == "constraint":  # year bounds the item meets ("from 1990-1999")
                for c in e["met"] + e["missed"]:
                    if c["type"] == "year":
                        allowed_numbers |= {float(y) for y in c["value"]}
        stripped = text
        for t in sorted(allowed_titles, key=len, reverse=True):
            for v in sorted(_title_variants(t), key=len, reverse=True):
                stripped = stripped.replace(v, " ")
        for n in _NUMBER.findall(stripped):
            if round(float(n), 2) not in allowed_numbers:
                return f"number {n} is not in the evidence"
        for pat, full in self._catalog_patterns:
            if full not in allowed_titles and pat.search(stripped):
                return f"title '{full}' is not in the evidence"
        return None
