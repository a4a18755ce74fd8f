"""Faithful explanations: typed evidence read from the model's own score decomposition, and reasons.

Every recommended item's evidence terms carry contributions that sum to its score (the model's
p_u . f_i is linear in the history items and the query; the cross term is attributed to them by exact
integrated gradients, and CLS(0, f_i) joins the item's own "popularity" term - no unnamed remainder).
Disliked history items (a rating below the user's mean minus a margin, or a negative event) weigh 0 in
a rating-aware model; in any model they are never cited as support (a model that is not rating-aware
still counts them, and the evidence says how much). Reasons are rendered from the evidence only, in
English or Chinese, naming the top 1-3
pieces; with ``counterfactual=True`` each item also carries a verified counterfactual
(:mod:`lucidrec.explain.counterfactual`) and its sentence, and its reason tells the same story: it names every
item the what-if removes (its decisive set, :func:`decisive_sets`), and an item rated below the user's
mean that the what-if needs is named for what it is ("your 3-star rating of X, below your average,
weighs most here: without it, ..."), never as support.
"""

from __future__ import annotations

import numpy as np

from lucidrec.history_inputs import QUERY_LIKE_EVENT, state_inputs, unrated_rating

#: History items listed one by one; the rest are summed into one "history_other" term.
MAX_CITED = 5
#: The largest set of history items a reason cites as decisive (what a reason can name).
DECISIVE_MAX = 3
#: Decisive sets are searched for the first this-many items of a list (each search re-scores the catalog
#: a few times; a k=1000 list would pay that a thousand times). Later items cite their largest parts.
DECISIVE_ITEMS = 20
#: Batched verification rounds of the decisive search (each re-scores the catalog for every pending
#: item's next candidate sets). Most decisive sets are found in the first two.
DECISIVE_ROUNDS = 2

_ZH_NUM = {1: "一", 2: "二", 3: "三", 4: "四", 5: "五"}


def constraint_label(c: dict, lang: str = "en") -> str:
    """Human-readable form of one query constraint: 'Comedy', 'not Romance', '1990-1999', 'Comedy or Drama'."""
    t, v = c["type"], c["value"]
    if t == "range":  # a numeric field with its unit: "price at most $30"
        from lucidrec.query import range_label

        return range_label(c, lang)
    if t == "year":
        return f"{v[0]}-{v[1]}" if lang == "en" else f"{v[0]}-{v[1]}年"
    # Chinese names come from the catalogue's vocabulary file (the parser puts them on the constraint);
    # a value it does not name is shown as the catalogue names it.
    shown = c.get("display_zh", v) if lang == "zh" else v
    if t == "exclude_genre":
        return f"not {v}" if lang == "en" else f"非{shown}"
    if t == "genre_any":
        return " or ".join(v) if lang == "en" else "或".join(shown)
    if t == "genre_mode":
        return "any of the genres" if lang == "en" else "任一类型"
    if t == "soft":  # read by the language model, with its strength: "3D Printing Filament (read from ..., 0.81)"
        if c.get("like"):  # what the item named in "like ..." is
            names = v if isinstance(v, list) else [v]
            shown_l = shown if isinstance(shown, list) else [shown]
            need = c.get("min_shared", len(names))
            if lang == "en":
                some = "" if need >= len(names) else f"{need} of "
                return f"{some}{' & '.join(names)} (like {c['like']})"
            some = "" if need >= len(names) else f"其中{need}项"
            return f"{'、'.join(shown_l)}{some}（与《{c['like']}》同类）"
        if isinstance(v, list):  # several values read together: items holding them all
            v, shown = " & ".join(v), "、".join(shown if isinstance(shown, list) else [shown])
        w = c.get("within")
        if lang == "en":
            among = f"; {w['holding']} of the {w['nearest']} nearest {w['value']}" if w else ""
            return f"{v} (read from your request, {c['strength']:.2f}{among})"
        among = f"；最相近的{w['nearest']}件{w['value']}中有{w['holding']}件属于此类" if w else ""
        return f"{shown}（据您的描述理解，{c['strength']:.2f}{among}）"
    return shown


#: Implicit events as a past-tense verb ("you bought X"); ratings are only named for rated events.
_EVENT_VERBS = {
    "liked": "liked",
    "like": "liked",
    "click": "clicked",
    "clicked": "clicked",
    "purchase": "bought",
    "purchased": "bought",
    "bought": "bought",
    "buy": "bought",
    "order": "ordered",
    "ordered": "ordered",
    "view": "viewed",
    "viewed": "viewed",
    "interacted": "chose",
    "review": "reviewed",
    "reviewed": "reviewed",
}
#: The same verbs in Chinese, used as "您{verb}过的《X》" ("基于您购买过的《B》").
_ZH_VERBS = {
    "liked": "喜欢",
    "clicked": "点击",
    "bought": "购买",
    "purchased": "购买",
    "ordered": "订购",
    "viewed": "观看",
    "chose": "选择",
    "reviewed": "评价",
}


def _action(entry) -> str:
    if entry.event == QUERY_LIKE_EVENT:
        return "asked for something like"
    if entry.rating is not None and entry.event in ("rated", "rating", "liked"):
        return f"rated {float(entry.rating):g}"
    return _EVENT_VERBS.get(entry.event, entry.event or "liked")


def item_similarity(model, a: int, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of items as the model's item tower sees them (latent + text blocks)."""
    w = model.scorer.w
    # Only the rows asked for: a normalised copy of the whole catalog's vectors was 1.8 GB at 1M items.
    rows = np.concatenate([[a], np.asarray(b, dtype=np.int64)])
    m = np.concatenate([w["F"][rows], w["T"][rows].astype(np.float32)], axis=1)
    m = m / np.clip(np.linalg.norm(m, axis=1, keepdims=True), 1e-12, None)
    return m[1:] @ m[0]


def supporting(model, state, entries) -> np.ndarray:
    """Which history items a reason may cite as support. A rating-aware model says it (``state.liked``: a
    disliked item weighs 0 in every block, so it cannot carry a positive contribution; the mask keeps the
    promise explicit). For a model that is not rating-aware, a rating below the user's own mean (or a
    negative event) keeps the item out of the reasons - no margin: only reading is at stake here, not
    accuracy - though the model still counts it: that share is reported in the evidence as ``low_rated``.
    Ratings are read as the model reads them (implicit data: every interaction alike, so only negative
    events are excluded)."""
    liked = getattr(state, "liked", None)
    if liked is not None and len(liked) == len(entries) and model.scorer.dislike_margin is not None:
        return np.asarray(liked, bool)
    from lucidrec.models.scoring import liked_mask

    _, ratings, _, negative = state_inputs(entries, unrated_rating(model.catalogue.implicit_event))
    return liked_mask(ratings, 0.0, negative)


def build_evidence(
    model,
    state,
    entries,
    item: int,
    query: str | None,
    constraints: list | None = None,
    parts: dict | None = None,
    ok: np.ndarray | None = None,
    decisive: list[int] | None = None,
) -> tuple[list[dict], dict]:
    """Evidence for one item; ``parts`` is its score decomposition and ``ok`` the request's
    :func:`supporting` mask, when already computed. ``decisive``: history positions whose removal was
    verified to drop the item out of the top-k (see :func:`decisive_sets`); they are cited first."""
    if parts is None:
        parts = model.scorer.decompose(state, item)
    evidence: list[dict] = []
    hist_contrib = parts["history"]
    info = {"cited": []}
    if len(entries):
        order = np.argsort(-hist_contrib, kind="stable")
        if ok is None:
            ok = supporting(model, state, entries)
        first = sorted(decisive or [], key=lambda j: -hist_contrib[j])
        support = [j for j in order if hist_contrib[j] > 0 and ok[j] and j not in first]
        # Every decisive item is listed (the reason names them all), whatever MAX_CITED says.
        cited = (first + support)[: max(MAX_CITED, len(first))]
        citation = cited  # the order reasons cite them in: decisive items first
        # Listed largest first; which of them are decisive (cited first by reasons) each entry says.
        cited = sorted(cited, key=lambda j: -hist_contrib[j])
        sims = item_similarity(model, item, np.array([entries[j].item for j in cited], dtype=np.int64)) if cited else []
        target_cats = set(model.catalogue.categories[item])
        for j, sim in zip(cited, sims):
            e = entries[j]
            evidence.append(
                {
                    "kind": "history",
                    "item_id": str(model.catalogue.item_ids[e.item]),
                    "title": str(model.catalogue.titles[e.item]),
                    "action": _action(e),
                    "rating": None if e.rating is None else float(e.rating),
                    "similarity": round(float(sim), 4),
                    "contribution": float(hist_contrib[j]),
                    "shared": sorted(target_cats & set(model.catalogue.categories[e.item])),
                    "decisive": j in first,
                    # Rated below the user's mean (or a negative event): listed only when decisive (the
                    # what-if needs it), and then named for what it is, never as support.
                    "low_rated": not bool(ok[j]),
                }
            )
        info["cited"] = citation
        rest = float(hist_contrib.sum() - hist_contrib[cited].sum()) if cited else float(hist_contrib.sum())
        n_rest = len(entries) - len(cited)
        if n_rest:
            other = {"kind": "history_other", "count": n_rest, "contribution": rest}
            low = np.setdiff1d(np.flatnonzero(~ok), np.asarray(cited, dtype=np.int64))  # those not listed
            if len(low) and hist_contrib[low].sum() > 0:
                # Part of the rest: items the user rated low that still push this item up (a model that is
                # not rating-aware counts what was watched). Never cited as a reason for; told as what it is.
                other["low_rated"] = {"count": int(len(low)), "contribution": float(hist_contrib[low].sum())}
            evidence.append(other)
    if query:
        evidence.append({"kind": "query", "text": query, "contribution": float(parts["query"])})
    # The item's own term: its bias plus CLS(0, f_i), what the cross term gives it for an empty user;
    # the float residual of the attribution (~1e-6) rides along so the evidence sums to the score.
    evidence.append({"kind": "popularity", "contribution": float(parts["bias"] + parts["interaction"])})
    cats = set(model.catalogue.categories[item])
    shared: set[str] = set()
    for j in info["cited"][:3]:
        shared |= cats & set(model.catalogue.categories[entries[j].item])
    if shared:
        # Films have genres; a catalogue with named fields (products: brand, category path) has categories.
        name = "category" if model.catalogue.fields else "genre"
        attr = {"kind": "attribute", "name": name, "shared": sorted(shared)}
        vocab = model.catalogue.vocabulary
        if vocab is not None and vocab.display.get("zh"):
            attr["display_zh"] = [vocab.display_name(g, "zh") for g in attr["shared"]]
        evidence.append(attr)
    info["shared"] = sorted(shared)
    if constraints:
        # Which of the query's hard constraints this item meets (no contribution: they filter, not score).
        met = [c for c, mask in constraints if mask[item]]
        missed = [c for c, mask in constraints if not mask[item]]
        evidence.append({"kind": "constraint", "met": met, "missed": missed})
    return evidence, info


def _significant(evidence: list[dict]) -> tuple[list[dict], dict | None]:
    """The history items and query worth naming: positive and at least a quarter of the largest
    positive term, so a reason never leans on evidence that barely moved the score."""
    hist = [
        e
        for e in evidence
        if e["kind"] == "history" and e["contribution"] > 0 and not e.get("low_rated") and e.get("named", True)
    ]
    query = next((e for e in evidence if e["kind"] == "query" and e["contribution"] > 0), None)
    top = max([e["contribution"] for e in hist] + ([query["contribution"]] if query else []), default=0.0)
    cut = 0.25 * top
    # A decisive item (its removal, with the others of its set, was verified to drop the item out of the
    # top-k) is always named, whatever its size: it is what the recommendation hinges on.
    hist = [e for e in hist if e.get("decisive")] + [
        e for e in hist if not e.get("decisive") and e["contribution"] >= cut
    ]
    hist = hist[:3]
    if query is not None and query["contribution"] < cut:
        query = None
    return hist, query


def _main_popularity(evidence: list[dict]) -> dict | None:
    """The popularity term when it is a main positive part of the score: positive and at least as
    large as every other positive term (each history item, the rest of the history, the query)."""
    pop = next((e for e in evidence if e["kind"] == "popularity"), None)
    if pop is None or pop["contribution"] <= 0:
        return None
    others = [e["contribution"] for e in evidence if e is not pop and e.get("contribution", 0) > 0]
    return pop if pop["contribution"] >= max(others, default=0.0) else None


def render_reason(title: str, evidence: list[dict], lang: str = "en") -> str:
    """A sentence naming the top one to three pieces of evidence, in English or Chinese."""
    hist, query = _significant(evidence)
    pop = _main_popularity(evidence)
    # Only genres shared with the history items the reason actually names.
    named_shared = sorted(set().union(*[set(h.get("shared", [])) for h in hist])) if hist else []
    kind = next((e["name"] for e in evidence if e["kind"] == "attribute"), "genre")
    attr = {"kind": "attribute", "name": kind, "shared": named_shared} if named_shared else None
    query_first = query is not None and (not hist or query["contribution"] >= hist[0]["contribution"])
    cons = next((e for e in evidence if e["kind"] == "constraint"), None)
    low = _significant_low_rated(evidence)
    # The verified decisive set - with counterfactuals, the what-if's own set - by name: exactly the items
    # whose removal was re-scored (every one, also those not named as support above), never "them" for a
    # list that also names other items.
    decisive = [e for e in evidence if e["kind"] == "history" and e.get("decisive")]
    if lang == "zh":
        low_text = f"您评分低于平均的{low['count']}件物品也计入了得分（模型从您的全部历史中学习）。" if low else ""
        return (
            _render_zh(title, hist, query, pop, attr if hist else None, query_first)
            + _decisive_zh(decisive, evidence)
            + low_text
            + _constraint_sentence(cons, "zh")
        )
    low_text = (
        f" Also counted: {low['count']} item{'s' if low['count'] != 1 else ''} you rated below your average"
        " (the model learns from your whole history)."
        if low
        else ""
    )
    return (
        _render_en(title, hist, query, pop, attr, query_first)
        + _decisive_en(decisive, evidence)
        + low_text
        + _constraint_sentence(cons, "en")
    )


def _low_weighs_most(low: list[dict], evidence: list[dict]) -> bool:
    """Whether a low-rated decisive item carries the largest history contribution of all: it beats every
    listed history item and the whole unlisted low-rated share (unlisted liked items never exceed the
    listed ones: they are listed largest first)."""
    top = max(e["contribution"] for e in low)
    listed = [e["contribution"] for e in evidence if e["kind"] == "history"]
    other = next((e for e in evidence if e["kind"] == "history_other"), None)
    unlisted_low = ((other or {}).get("low_rated") or {}).get("contribution", 0.0)
    return top > 0 and top >= max(listed) and top >= unlisted_low


def _low_name_en(e: dict) -> str:
    act = e["action"]
    if act.startswith("rated "):
        stars = act.split(" ", 1)[1]
        return f"your {stars}-star rating of {e['title']}"
    return f"{e['title']} (you {act} it)"  # a negative event: "X (you skipped it)"


def _low_name_zh(e: dict) -> str:
    act = e["action"]
    if act.startswith("rated "):
        try:
            n = int(round(float(act.split(" ", 1)[1])))
            return f"对《{e['title']}》的{_ZH_NUM.get(n, str(n))}星评价"
        except ValueError:
            return f"对《{e['title']}》的评价"
    verb = _ZH_VERBS.get(act)
    return f"{verb}过的《{e['title']}》" if verb else f"标记为“{act}”的《{e['title']}》"


def _decisive_en(decisive: list[dict], evidence: list[dict]) -> str:
    """' Without A and B, it would not make this list.' An item rated below the user's mean that the set
    needs is named for what it is: ' Your 3-star rating of C, below your average, weighs most here: without
    it and A, it would not make this list.' (or 'also counts here' when another item weighs more)."""
    if not decisive:
        return ""
    low = [e for e in decisive if e.get("low_rated")]
    rest = [e["title"] for e in decisive if not e.get("low_rated")]
    if not low:
        return f" Without {_join_en(rest)}, it would not make this list."
    names = _join_en([_low_name_en(e) for e in low])
    note = ", below your average," if all(e.get("rating") is not None for e in low) else ""
    one = len(low) == 1
    if _low_weighs_most(low, evidence):
        weight = "weighs most here" if one else "weigh most here"
    else:
        weight = "also counts here" if one else "also count here"
    without = _join_en(["it" if one else "them", *rest])
    names = "Your" + names[4:] if names.startswith("your ") else names  # a title keeps its own case
    return f" {names}{note} {weight}: without {without}, it would not make this list."


def _decisive_zh(decisive: list[dict], evidence: list[dict]) -> str:
    """The same sentence as :func:`_decisive_en`, in Chinese."""
    if not decisive:
        return ""
    low = [e for e in decisive if e.get("low_rated")]
    rest = "".join(f"《{e['title']}》" for e in decisive if not e.get("low_rated"))
    if not low:
        return f"没有{rest}，它不会进入本次推荐列表。"
    names = "、".join(_low_name_zh(e) for e in low)
    note = "低于您的平均分，但" if all(e.get("rating") is not None for e in low) else ""
    weight = "在这里分量最重" if _low_weighs_most(low, evidence) else "在这里也有分量"
    without = ("它" if len(low) == 1 else "它们") + (f"以及{rest}" if rest else "")
    return f"您{names}{note}{weight}：没有{without}，它不会进入本次推荐列表。"


def _significant_low_rated(evidence: list[dict]) -> dict | None:
    """The low-rated items' positive share, when it outweighs what the reason names (its history items and
    query): a reason that left it out would hide the largest part of the score."""
    other = next((e for e in evidence if e["kind"] == "history_other"), None)
    low = (other or {}).get("low_rated")
    if not low:
        return None
    hist, query = _significant(evidence)
    named = sum(e["contribution"] for e in hist) + (query["contribution"] if query else 0.0)
    return low if low["contribution"] > 0 and low["contribution"] >= named else None


def _constraint_sentence(cons: dict | None, lang: str) -> str:
    if not cons or not (cons["met"] or cons["missed"]):
        return ""
    # Of the soft values (a ladder, most specific first) the item holds, the most specific says it all.
    soft_met = [c for c in cons["met"] if c["type"] == "soft"][:1]
    met = [constraint_label(c, lang) for c in cons["met"] if c["type"] != "soft" or c in soft_met]
    # A soft value the item lacks is no broken promise (it only ranked): the reason claims what it holds.
    missed = [constraint_label(c, lang) for c in cons["missed"] if c["type"] != "soft"]
    if lang == "zh":
        out = f"符合您的要求：{'、'.join(met)}。" if met else ""
        if missed:
            out += f"（符合全部条件的结果不足，此项未满足：{'、'.join(missed)}。）"
        return out
    out = f" It fits your request: {', '.join(met)}." if met else ""
    if missed:
        out += f" (Too few items met every constraint; this one does not meet: {', '.join(missed)}.)"
    return out


def _render_en(title, hist, query, pop, attr, query_first) -> str:
    bits = []
    for k, h in enumerate(hist):
        act = h["action"]
        if act.startswith("rated "):
            stars = act.split(" ", 1)[1]
            what = f"rated {h['title']} {stars} star{'s' if stars != '1' else ''}"
        else:
            what = f"{act} {h['title']}"
        bits.append(what + (f" (similarity {h['similarity']:.2f})" if k == 0 else ""))
    clauses = []
    if bits:
        clauses.append("you " + _join_en(bits))
    if query is not None:
        q = f'it matches "{query["text"]}" in your request'
        clauses.insert(0 if query_first else len(clauses), q)
    if not clauses:
        if pop is not None:
            return f"Recommended {title}: it is popular with many people."
        return f"Recommended {title}: it scored highest among the remaining items."
    reason = f"Recommended {title} because " + "; and ".join(clauses) + "."
    if attr and hist:
        label = "categories" if attr["name"] == "category" else "genres"
        reason += f" Shared {label}: {', '.join(attr['shared'])}."
    return reason


def _join_en(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _render_zh(title, hist, query, pop, attr, query_first=False) -> str:
    name = f"《{title}》"
    bits = []
    for h in hist:
        act = h["action"]
        if act.startswith("rated "):
            try:
                n = int(round(float(act.split(" ", 1)[1])))
                rating = f"{_ZH_NUM.get(n, str(n))}星评价"
            except ValueError:
                rating = "评价"
            bits.append(f"对《{h['title']}》的{rating}")
        elif act == "asked for something like":
            bits.append(f"想看类似《{h['title']}》的作品")
        else:
            verb = _ZH_VERBS.get(act, "喜欢")
            # "购买过的《A》、《B》": one verb for a run of items with the same action.
            same = bits and hist[len(bits) - 1]["action"] == act
            bits.append(f"《{h['title']}》" if same else f"{verb}过的《{h['title']}》")
    parts = []
    if bits:
        parts.append("基于您" + "、".join(bits))
    if query:
        if bits and query_first:
            parts = [f"基于您的需求“{query['text']}”", "以及您" + "、".join(bits)]
        else:
            parts.append(f"以及您的需求“{query['text']}”" if bits else f"基于您的需求“{query['text']}”")
    if not parts:
        if pop is not None:
            return f"推荐{name}：这是一部广受欢迎的作品。"
        return f"推荐{name}：它在其余物品中得分最高。"
    text = f"推荐{name}：" + "，".join(parts) + f"，我们推荐您尝试{name}。"
    if hist:
        text += f"{name}与《{hist[0]['title']}》的相似度为{hist[0]['similarity']:.2f}"
        if attr:
            text += "，同属" + "、".join(attr.get("display_zh", attr["shared"]))
            text += "类别" if attr["name"] == "category" else "类型"
        text += "。"
    return text


def explain_items(
    model,
    state,
    entries,
    top: np.ndarray,
    masked_scores: np.ndarray,
    result: dict,
    lang: str,
    counterfactual: bool,
    constraints: list | None = None,
):
    """Attach evidence, reason (and optionally a counterfactual) to each item of ``result``."""
    parsed = result.get("parsed_query")
    # The query evidence names the text that was embedded (the residual after constraints were parsed out).
    query = parsed["text"] if parsed is not None else None
    from lucidrec.explain.counterfactual import counterfactuals, render_counterfactual

    top = np.asarray(top, dtype=np.int64)
    all_parts = model.scorer.decompose_many(state, top)
    ok = supporting(model, state, entries) if len(entries) else None  # once per request, not per item

    def parts_of(items):
        return model.scorer.decompose_many(state, items)

    # Decisive sets come with counterfactuals, where the caller asked for verified claims and pays for
    # the search (on the concise block a plain reason's largest parts are decisive about as often: PN
    # 0.716 vs 0.723, at a third of the cost - the service explains every request by default).
    # One story per item: the decisive set a reason names is its what-if's set.
    cfs = decisive = None
    if counterfactual:
        cfs = counterfactuals(model, entries, state.query, top, masked_scores, len(top), parts_of)
        cfs, decisive = decisive_sets(model, entries, state.query, top, masked_scores, parts_of, ok, all_parts, cfs)
    for n, (item_out, i, parts) in enumerate(zip(result["items"], top, all_parts)):
        evidence, info = build_evidence(
            model, state, entries, int(i), query or None, constraints, parts, ok, decisive[n] if decisive else None
        )
        item_out["evidence"] = evidence
        item_out["reason"] = render_reason(item_out["title"], evidence, lang)
    if cfs is not None:
        _name_no_more_than_decides(model, state, entries, top, masked_scores, result, lang)
    for n, item_out in enumerate(result["items"]):
        if cfs is not None:
            cf = cfs[n]
            item_out["counterfactual"] = cf
            if cf is not None:
                rated = all(entries[j].rating is not None for j in decisive[n])
                cf["text"] = render_counterfactual(item_out["title"], cf, lang, rated)


def _name_no_more_than_decides(model, state, entries, top, masked_scores, result, lang) -> None:
    """A reason with a verified what-if names its decisive set and, beside it, the largest other supporters.
    Removing all the named items together is then checked by one re-score (all the request's items in one
    batch): where the item would still be in the top-k without them (the others lose too, or a nonlinear
    term such as the transformer's reads the shorter history otherwise), the supporters are left unnamed
    (``named: False`` on their evidence, which still counts them) and the reason names the decisive set
    alone, so what it names is what the recommendation hinges on."""
    from lucidrec.history_inputs import state_inputs, unrated_rating
    from lucidrec.models.scoring import SubsetScorer

    checks = []  # (item position in top, positions of the named history items)
    for n, item_out in enumerate(result["items"]):
        evidence = item_out.get("evidence", [])
        decisive = {e["item_id"] for e in evidence if e["kind"] == "history" and e.get("decisive")}
        if not decisive:
            continue
        hist, _ = _significant(evidence)
        extra = [e for e in hist if e["item_id"] not in decisive]
        if not extra:
            continue
        named = decisive | {e["item_id"] for e in extra}
        ids = model.catalogue.item_ids
        positions = [j for j, e in enumerate(entries) if str(ids[e.item]) in named]
        checks.append((n, positions))
    if not checks:
        return
    keeps = np.ones((len(checks), len(entries)), bool)
    for r, (_, positions) in enumerate(checks):
        keeps[r, positions] = False
    targets = np.array([int(top[n]) for n, _ in checks])
    subsets = SubsetScorer(
        model.scorer, *state_inputs(entries, unrated_rating(model.catalogue.implicit_event)), state.query
    )
    allowed = np.isfinite(masked_scores)
    rows = np.where(allowed[None, :], subsets.scores_around(keeps, targets).astype(np.float64), -np.inf)
    k = len(top)
    for (n, _), row, i in zip(checks, rows, targets):
        if int((row > row[i]).sum()) + 1 > k:
            continue  # without everything it names, the item leaves the top-k: the reason stands
        item_out = result["items"][n]
        # Every supporter outside the decisive set, not only those checked: unnaming the checked ones would
        # let the next-largest supporters step into the reason, and they were never checked with the set.
        for e in item_out["evidence"]:
            if e["kind"] == "history" and not e.get("decisive"):
                e["named"] = False
        item_out["reason"] = render_reason(item_out["title"], item_out["evidence"], lang)


def decisive_sets(model, entries, query_vec, top, masked_scores, parts_of, ok, all_parts, cfs) -> tuple[list, list]:
    """One story per item of ``top``: ``(counterfactuals, decisive)``, where ``decisive[n]`` is the history
    positions of item n's verified what-if - exactly the set the counterfactual removes, so a reason that
    names it and the what-if sentence tell the same story - or None when the item has no what-if.

    ``cfs``: the request's counterfactuals (smallest sets over the whole history, :data:`MAX_SET` items at
    most). For the first :data:`DECISIVE_ITEMS` items whose what-if is missing or not citable as support
    (it needs an item rated below the user's mean, or one that pulls the score down, or more than
    :data:`DECISIVE_MAX` items), a second, cheaper search looks among the items a reason may cite, up to
    :data:`DECISIVE_MAX`; a set it verifies (by re-scoring the full model) that is no larger replaces the
    what-if, so the story is told with liked items where the smallest sets allow it. Otherwise the what-if
    stands: the evidence lists its below-mean items as ``low_rated`` and the reason says what they are."""
    from lucidrec.explain.counterfactual import counterfactuals

    position = {}
    for j, e in enumerate(entries):
        position.setdefault(e.item, j)

    def positions(cf):
        return None if cf is None else [position[model.catalogue.item_idx(iid)] for iid in cf["removed"]]

    def citable(s, parts) -> bool:
        return len(s) <= DECISIVE_MAX and all(ok[j] and parts["history"][j] > 0 for j in s)

    cfs = list(cfs)
    if ok is not None and len(entries) and ok.any():
        heads = zip(top[:DECISIVE_ITEMS], cfs, all_parts)
        todo = [int(i) for i, cf, parts in heads if cf is None or not citable(positions(cf), parts)]
        if todo:
            found = counterfactuals(
                model,
                entries,
                query_vec,
                top,
                masked_scores,
                len(top),
                parts_of,
                only=ok,
                max_set=DECISIVE_MAX,
                items=todo,
                predicted_only=True,
                max_rounds=DECISIVE_ROUNDS,
            )
            cfs = [
                f if f is not None and (cf is None or len(f["removed"]) <= len(cf["removed"])) else cf
                for cf, f in zip(cfs, found)
            ]
    return cfs, [positions(cf) for cf in cfs]


__all__ = [
    "build_evidence",
    "constraint_label",
    "decisive_sets",
    "explain_items",
    "render_reason",
    "supporting",
]
