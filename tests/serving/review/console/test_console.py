"""The reviewer console in a real browser against the real service: sign in, queue, case, decide.

Each test opens its own tab; the cases come from the module's server (see conftest.py). Tests
pick their cases from the live queue, so they do not depend on running in a given order.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.serving.review.console.conftest import (
    ADMIN_KEY,
    ALICE_KEY,
    BACKEND_KEY,
    BOB_KEY,
    CAROL_KEY,
    Server,
    payment,
)

expect.set_options(timeout=10_000)

ROWS = "#queue-rows tr[data-case]"
SLA_TEXT = re.compile(r"^(\d+)m (\d{2})s$")


# --- helpers ----------------------------------------------------------------------------------


@dataclass
class Actions:
    """What a reviewer does with keyboard and mouse, counted (typing the key counts once)."""

    page: Page
    log: list[str] = field(default_factory=list)

    def type(self, text: str, what: str) -> None:
        self.page.keyboard.type(text)
        self.log.append(f"type {what}")

    def press(self, key: str) -> None:
        self.page.keyboard.press(key)
        self.log.append(f"key {key}")

    def click(self, selector: str) -> None:
        self.page.click(selector)
        self.log.append(f"click {selector}")

    def count(self, kind: str) -> int:
        return sum(1 for x in self.log if x.startswith(kind + " "))


def open_console(page: Page) -> None:
    page.goto("/console")
    # The key field has autofocus: a reviewer can type at once, without clicking into it.
    page.wait_for_function("document.activeElement && document.activeElement.id === 'key'")


def sign_in(page: Page, key: str, actions: Actions | None = None) -> None:
    act = actions or Actions(page)
    open_console(page)
    act.type(key, "reviewer key")
    act.press("Enter")
    expect(page.locator("#queue")).to_be_visible()
    expect(page.locator("#signin")).to_be_hidden()


def row_ids(page: Page) -> list[int]:
    return [int(x) for x in page.locator(ROWS).evaluate_all("rs => rs.map(r => r.dataset.case)")]


def wait_rows(page: Page, server: Server) -> list[dict[str, Any]]:
    """Wait until the table shows exactly the open cases (in the API's order); return those."""
    cases = server.open_cases()
    expect(page.locator(ROWS)).to_have_count(len(cases))
    return cases


def open_case_view(page: Page, case_id: int) -> None:
    expect(page.locator("#case")).to_be_visible()
    expect(page.locator("#case-title")).to_contain_text(f"Case {case_id} ·")


def selected_row_id(page: Page) -> int:
    return int(page.locator(f"{ROWS}.selected").get_attribute("data-case") or "")


def payment_status(server: Server, transaction_id: str) -> dict[str, Any]:
    return server.get(BACKEND_KEY, f"/payments/{transaction_id}")


def decisions_in_audit(server: Server, case_id: int) -> list[dict[str, Any]]:
    items = server.get(ADMIN_KEY, "/admin/audit", action="decide", limit=1000)["items"]
    return [x for x in items if x["target"] == str(case_id)]


def review_labels(server: Server, transaction_id: str) -> list[dict[str, Any]]:
    labels = server.get(ADMIN_KEY, "/labels/export")["labels"]
    return [x for x in labels if x["transaction_id"] == transaction_id]


def case_of(server: Server, case_id: int) -> dict[str, Any]:
    return server.get(ALICE_KEY, f"/cases/{case_id}")


def euros(amount: float) -> str:
    return f"€{amount:,.2f}"  # Intl.NumberFormat("en", {currency: "EUR"})


def assert_decided(server: Server, case_id: int, decision: str, status: str, by: str) -> None:
    c = case_of(server, case_id)
    assert (c["status"], c["decision"], c["decided_by"]) == ("decided", decision, by)
    assert payment_status(server, c["transaction_id"])["status"] == status
    entries = decisions_in_audit(server, case_id)
    assert [(e["actor"], e["role"], e["detail"]["decision"]) for e in entries] == [
        (by, "reviewer", decision)
    ]
    assert entries[0]["detail"]["transaction_id"] == c["transaction_id"]


# --- sign in ----------------------------------------------------------------------------------


def test_sign_in_with_reviewer_key_shows_the_reviewers_name(page: Page, server: Server) -> None:
    sign_in(page, ALICE_KEY)
    expect(page.locator("#who")).to_have_text("Signed in as alice")
    expect(page.locator("#signin-error")).to_have_text("")
    wait_rows(page, server)


def test_a_bad_key_is_refused_and_the_queue_stays_hidden(page: Page, server: Server) -> None:
    open_console(page)
    page.keyboard.type("not-a-real-key-0000000000")
    page.keyboard.press("Enter")
    expect(page.locator("#signin-error")).to_have_text("Key refused: check it and try again.")
    expect(page.locator("#queue")).to_be_hidden()
    expect(page.locator("#case")).to_be_hidden()
    expect(page.locator("#who")).to_have_text("")
    assert page.locator(ROWS).count() == 0
    assert page.evaluate("sessionStorage.getItem('riskgate.key')") is None

    # A valid key of another role is refused too, with the reason.
    page.fill("#key", BACKEND_KEY)
    page.keyboard.press("Enter")
    expect(page.locator("#signin-error")).to_contain_text("use a reviewer key")
    expect(page.locator("#queue")).to_be_hidden()
    assert page.locator(ROWS).count() == 0


# --- the queue --------------------------------------------------------------------------------


def test_queue_lists_cases_by_priority_with_amount_score_reason_and_sla(
    page: Page, server: Server, artifacts: Any
) -> None:
    sign_in(page, ALICE_KEY)
    cases = wait_rows(page, server)
    assert len(cases) >= 4, "the seeded cases should still be open"

    # Money at risk first: priority = probability x amount, highest first (nothing is overdue).
    for c in cases:
        assert c["priority"] == pytest.approx(c["probability"] * c["amount"], rel=1e-9)
        assert not c["overdue"]
    priorities = [c["priority"] for c in cases]
    assert priorities == sorted(priorities, reverse=True)
    assert row_ids(page) == [c["id"] for c in cases]

    for c, tr in zip(cases, page.locator(ROWS).all(), strict=True):
        cells = tr.locator("td").all_inner_texts()
        _box, amount, risk, score, reason, _age, sla, queue, _held = cells
        assert risk == euros(c["priority"])  # the value the queue is sorted by
        assert queue == "residual"
        assert amount == euros(c["amount"])
        assert score == str(c["score"])
        assert c["top_reason"], f"case {c['id']} has no reason"
        assert reason == c["top_reason"]
        m = SLA_TEXT.match(sla)
        assert m, f"SLA countdown {sla!r}"
        assert 0 < int(m[1]) * 60 + int(m[2]) <= 15 * 60

    # The SLA column counts down in place, without a reload.
    first_sla = page.locator(f"{ROWS} td.sla").first
    before = first_sla.inner_text()
    expect(first_sla).not_to_have_text(before)

    expect(page.locator("#page-text")).to_have_text(f"1–{len(cases)} of {len(cases)} open cases")
    expect(page.locator("#stat-depth")).to_have_text(str(len(cases)))
    expect(page.locator("#stat-breaches")).to_have_text("0")
    assert selected_row_id(page) == cases[0]["id"]
    page.screenshot(path=str(artifacts / "console-queue.png"), full_page=True)


# --- one case, decided by keyboard ------------------------------------------------------------


def test_open_top_case_with_enter_and_approve_with_a(
    page: Page, server: Server, artifacts: Any
) -> None:
    act = Actions(page)
    sign_in(page, ALICE_KEY, act)
    top = wait_rows(page, server)[0]
    assert selected_row_id(page) == top["id"]

    act.press("Enter")
    open_case_view(page, top["id"])
    expect(page.locator("#case-lock")).to_have_class(re.compile(r"\bmine\b"))
    expect(page.locator("#case-lock")).to_contain_text("Held by you")
    detail = case_of(server, top["id"])

    # The explanation: one bar per factor (top 10 by size), in the server's order, with its
    # whole sentence (never cut) and the plain reading in odds; no sentence twice.
    factors = detail["factors"][:10]
    assert factors, "the case has no SHAP factors"
    bars = page.locator("#shap-chart .factor")
    expect(bars).to_have_count(len(factors))
    assert bars.evaluate_all("gs => gs.map(g => g.dataset.feature)") == [
        f["feature"] for f in factors
    ]
    labels = page.locator("#shap-chart .factor .label").all_text_contents()
    assert labels == [f["text"] for f in factors]
    assert len(set(labels)) == len(labels), labels
    titles = bars.evaluate_all("gs => gs.map(g => g.title)")
    for f, title in zip(factors, titles, strict=True):
        assert title.startswith(f["text"])
        assert "odds of fraud" in title
    odds = page.locator("#shap-chart .factor .odds").all_text_contents()
    multiples = [math.exp(f["contribution"]) for f in factors]
    assert odds == [f"×{x:.{0 if x >= 10 else 2}f} odds" for x in multiples]
    reasons = detail["reasons"]
    assert reasons, "the case has no reasons"
    assert reasons[0]["text"] == top["top_reason"]
    assert reasons[0]["feature"] in [f["feature"] for f in factors]
    assert "(s)" not in " ".join(r["text"] for r in reasons)
    assert page.locator("#shap-chart .bar").count() == len(factors)

    # The facts against the normal: a new card reads as a first payment, not "usual: 0.0".
    normal = page.locator("#case-normal")
    assert detail["features"]["card_count_30d"] == 0  # every seeded card is new
    expect(normal).to_contain_text("first payment on this card in the last 30 days")
    expect(normal).not_to_contain_text("0 earlier payments")
    expect(normal).not_to_contain_text("0.0 an hour")

    # At 1400x900: the decision buttons above the fold, no chart or map label cut off.
    page.set_viewport_size({"width": 1400, "height": 900})
    page.evaluate("window.scrollTo(0, 0)")
    for name in ("approve", "decline", "decline_fraud"):
        box = page.locator(f"[data-decision={name}]").bounding_box()
        assert box is not None
        assert box["y"] + box["height"] <= 900, f"{name} below the fold"
    cut = page.evaluate(
        """() => {
          const out = [];
          for (const e of document.querySelectorAll("#shap-chart .label, #shap-chart .odds"))
            if (e.scrollWidth > e.clientWidth + 1) out.push(e.textContent);
          for (const id of ["timeline", "where"]) {
            const s = document.getElementById(id), vb = s.viewBox.baseVal;
            for (const t of s.querySelectorAll("text")) {
              const b = t.getBBox();
              if (b.x < vb.x - 0.5 || b.y < vb.y - 0.5 || b.x + b.width > vb.x + vb.width + 0.5
                  || b.y + b.height > vb.y + vb.height + 0.5) out.push(`${id}: ${t.textContent}`);
            }
          }
          return out;
        }"""
    )
    assert cut == [], cut

    # The card's timeline marks this payment; "where" names the countries.
    expect(page.locator("#timeline circle.this")).to_have_count(1)
    p = detail["payment"]
    where = page.locator("#where-text")
    expect(where).to_contain_text(f"IP country {p['ip_country']}")
    if p["ip_country"] != p["billing_country"]:
        expect(where).to_contain_text("IP and billing differ")
    else:
        expect(where).not_to_contain_text("IP and billing differ")
    expect(page.locator("#case-payment")).to_contain_text(detail["transaction_id"])
    page.screenshot(path=str(artifacts / "console-case.png"), full_page=True)
    page.screenshot(path=str(artifacts / "console-case-1400x900.png"))  # what fits in one screen

    act.press("a")
    expect(page.locator("#decide-result")).to_have_text("approve: payment settled")
    for name in ("approve", "decline", "decline_fraud"):
        expect(page.locator(f"[data-decision={name}]")).to_be_disabled()
    assert_decided(server, top["id"], "approve", "settled", "alice")
    labels = review_labels(server, top["transaction_id"])
    assert [(x["is_fraud"], x["source"]) for x in labels] == [(False, "review")]

    # From opening the console to a decided case: no click at all.
    assert act.count("click") == 0
    assert act.log == ["type reviewer key", "key Enter", "key Enter", "key a"]
    print(
        f"\nconsole: opening to a decided case = {act.count('click')} clicks, "
        f"{act.count('key')} keystrokes + typing the key ({', '.join(act.log)})"
    )


def test_decline_as_fraud_with_f_stores_the_label(page: Page, server: Server) -> None:
    sign_in(page, ALICE_KEY)
    cases = wait_rows(page, server)
    assert len(cases) >= 2
    page.keyboard.press("j")  # move down one row
    target = cases[1]
    assert selected_row_id(page) == target["id"]
    page.keyboard.press("Enter")
    open_case_view(page, target["id"])
    expect(page.locator("[data-decision=decline_fraud]")).to_be_enabled()

    page.keyboard.press("f")
    expect(page.locator("#decide-result")).to_have_text("decline fraud: payment declined")
    assert_decided(server, target["id"], "decline_fraud", "declined", "alice")
    labels = review_labels(server, target["transaction_id"])
    assert [(x["is_fraud"], x["source"]) for x in labels] == [(True, "review")]


# --- locks ------------------------------------------------------------------------------------


def test_second_reviewer_cannot_decide_a_case_alice_holds(page: Page, server: Server) -> None:
    target = server.open_cases()[-1]
    claim = server.post(ALICE_KEY, f"/cases/{target['id']}/claim")
    assert claim.status_code == 200, claim.text

    sign_in(page, BOB_KEY)
    expect(page.locator("#who")).to_have_text("Signed in as bob")
    wait_rows(page, server)
    row = page.locator(f"{ROWS}[data-case='{target['id']}']")
    expect(row.locator("td").last).to_have_text("alice")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    row.click()
    open_case_view(page, target["id"])

    lock = page.locator("#case-lock")
    expect(lock).to_contain_text("held by alice")
    expect(lock).to_have_class(re.compile(r"\bother\b"))
    for name in ("approve", "decline", "decline_fraud"):
        expect(page.locator(f"[data-decision={name}]")).to_be_disabled()
    page.keyboard.press("a")  # ignored: the case is not bob's
    page.keyboard.press("f")
    assert not [r for r in requests if r.endswith("/decision")]
    expect(page.locator("#decide-result")).to_have_text("")

    # The API refuses bob too, and nothing changes.
    r = server.post(BOB_KEY, f"/cases/{target['id']}/decision", {"decision": "approve"})
    assert r.status_code == 409, r.text
    assert "alice" in r.json()["error"]
    assert case_of(server, target["id"])["status"] == "open"
    assert payment_status(server, target["transaction_id"])["status"] == "held_for_review"
    assert decisions_in_audit(server, target["id"]) == []


# --- flow ---------------------------------------------------------------------------------------


def watch_queue_shown(page: Page) -> None:
    """Record in the page whether the queue section is ever shown from now on."""
    page.evaluate(
        """() => {
          window.__queueShown = false;
          new MutationObserver(() => { if (!document.getElementById('queue').hidden)
            window.__queueShown = true; })
            .observe(document.getElementById('queue'), { attributes: true });
        }"""
    )


def test_n_opens_the_next_case_without_going_back_to_the_list(page: Page, server: Server) -> None:
    sign_in(page, ALICE_KEY)
    cases = wait_rows(page, server)
    assert len(cases) >= 2
    first = cases[0]
    page.keyboard.press("Enter")
    open_case_view(page, first["id"])
    page.keyboard.press("d")
    expect(page.locator("#decide-result")).to_have_text("decline: payment declined")
    assert_decided(server, first["id"], "decline", "declined", "alice")
    assert review_labels(server, first["transaction_id"]) == []  # a plain decline is no label

    watch_queue_shown(page)
    expected = server.open_cases()[0]
    page.keyboard.press("n")
    open_case_view(page, expected["id"])
    expect(page.locator("#case-lock")).to_have_class(re.compile(r"\bmine\b"))
    expect(page.locator("#decide-result")).to_have_text("")
    expect(page.locator("[data-decision=approve]")).to_be_enabled()
    assert page.evaluate("window.__queueShown") is False
    expect(page.locator("#queue")).to_be_hidden()


def test_bulk_approve_of_selected_cases(page: Page, server: Server) -> None:
    sign_in(page, ALICE_KEY)
    cases = wait_rows(page, server)
    assert len(cases) >= 3
    chosen = cases[-2:]
    for c in chosen:
        page.locator(f"{ROWS}[data-case='{c['id']}'] input[type=checkbox]").click()
    expect(page.locator("#queue")).to_be_visible()  # ticking a box does not open the case
    expect(page.locator("#bulk-count")).to_have_text("2")
    expect(page.locator("#bulk-approve")).to_be_enabled()

    page.click("#bulk-approve")
    expect(page.locator(ROWS)).to_have_count(len(cases) - 2)
    for c in chosen:
        expect(page.locator(f"{ROWS}[data-case='{c['id']}']")).to_have_count(0)
    expect(page.locator("#bulk-count")).to_have_text("0")
    expect(page.locator("#bulk-approve")).to_be_disabled()
    expect(page.locator("#stat-depth")).to_have_text(str(len(cases) - 2))
    for c in chosen:
        assert_decided(server, c["id"], "approve", "settled", "alice")
    remaining = {c["id"] for c in server.open_cases()}
    assert remaining == {c["id"] for c in cases[:-2]}


# --- defects found while writing these tests (see the notes in each) --------------------------

COUNT_DECISION_CALLS = """
  window.__decisions = { started: 0, done: 0 };
  const realFetch = window.fetch;
  window.fetch = (url, opts) => {
    const decision = String(url).endsWith("/decision");
    if (decision) window.__decisions.started++;
    const p = realFetch(url, opts);
    if (decision) p.finally(() => { window.__decisions.done++; });
    return p;
  };
"""


def test_pressing_a_twice_sends_one_decision_and_reports_success(
    page: Page, server: Server
) -> None:
    """A double tap (or key repeat) on "a" must not send a second decision.

    decideCurrent() guards only on `c.status !== "open"`, which changes after the response, so
    a second key press while the first request is in flight sends another POST. The server
    refuses it (409, one decision recorded), but whichever answer arrives last wins the status
    line: in a trial 3 of 8 double taps ended on "Not decided: case N is already decided" for a
    payment this reviewer had just settled.
    """
    page.add_init_script(COUNT_DECISION_CALLS)
    sign_in(page, ALICE_KEY)
    top = wait_rows(page, server)[0]
    page.keyboard.press("Enter")
    open_case_view(page, top["id"])
    page.keyboard.press("a")
    page.keyboard.press("a")
    # Counted synchronously in the page: a second POST would already have been started here.
    assert page.evaluate("window.__decisions.started") == 1, "a second decision was sent"
    page.wait_for_function("window.__decisions.done === window.__decisions.started")
    assert_decided(server, top["id"], "approve", "settled", "alice")
    expect(page.locator("#decide-result")).to_have_text("approve: payment settled")


def test_n_skips_cases_another_reviewer_holds(page: Page, server: Server) -> None:
    """ "n" must open a case this reviewer can decide, not one held by someone else.

    nextCase() takes the first open case other than the current one, whoever holds it. With two
    cases held by bob at the top of the queue, alice's "n" opens bob's first case (buttons
    disabled), the next "n" bob's second, the next bob's first again: she never reaches the
    cases she could work on.
    """
    cases = server.open_cases()
    assert len(cases) >= 4
    held = cases[:2]  # bob's cases must be the first two in the queue to show the defect
    for c in held:
        if c["claimed_by"] == "alice":  # left open by an earlier test
            assert server.post(ALICE_KEY, f"/cases/{c['id']}/release").status_code == 200
        r = server.post(BOB_KEY, f"/cases/{c['id']}/claim")
        assert r.status_code == 200, r.text
    try:
        sign_in(page, ALICE_KEY)
        wait_rows(page, server)
        mine = cases[2]
        page.locator(f"{ROWS}[data-case='{mine['id']}']").click()
        open_case_view(page, mine["id"])
        page.keyboard.press("d")
        expect(page.locator("#decide-result")).to_have_text("decline: payment declined")

        expected = next(c for c in server.open_cases() if c["claimed_by"] in (None, "alice"))
        page.keyboard.press("n")
        # Title and lock note are rendered together: once the title moves on, the lock is new.
        expect(page.locator("#case-title")).not_to_contain_text(f"Case {mine['id']} ·")
        expect(page.locator("#case-lock")).not_to_contain_text("held by bob")
        expect(page.locator("#case-lock")).to_have_class(re.compile(r"\bmine\b"))
        open_case_view(page, expected["id"])
        expect(page.locator("[data-decision=approve]")).to_be_enabled()
    finally:
        for c in held:
            server.post(BOB_KEY, f"/cases/{c['id']}/release")


def test_enter_on_the_approve_selected_button_approves_the_selection(
    page: Page, server: Server
) -> None:
    """Enter on a focused button must press that button, as it does everywhere else.

    The queue's keydown handler treats Enter as "open the selected case" whenever the focus is
    not in a text field, and calls preventDefault: a keyboard user who ticks cases, tabs to
    "Approve selected" and presses Enter opens a case (and claims it) instead; Enter on the
    "Filter" button likewise opens a case instead of filtering.
    """
    sign_in(page, ALICE_KEY)
    cases = wait_rows(page, server)
    chosen = cases[-1]
    page.locator(f"{ROWS}[data-case='{chosen['id']}'] input[type=checkbox]").click()
    expect(page.locator("#bulk-approve")).to_be_enabled()
    page.locator("#bulk-approve").focus()
    page.keyboard.press("Enter")
    expect(page.locator(f"{ROWS}[data-case='{chosen['id']}']")).to_have_count(0)
    expect(page.locator("#queue")).to_be_visible()
    expect(page.locator("#case")).to_be_hidden()
    assert_decided(server, chosen["id"], "approve", "settled", "alice")


# --- review operations (issue 17): run last, on cases of their own ------------------------------


def score_own(server: Server, i: int, amount: float, **changes: Any) -> dict[str, Any]:
    """Score one more payment (its own card, device, IP unless changed); its case's summary."""
    from datetime import UTC, datetime

    body = {
        **payment(i, amount, "NG", "failed", datetime.now(UTC).replace(microsecond=0)),
        **changes,
    }
    r = server.post(BACKEND_KEY, "/score", body)
    assert r.status_code == 200, r.text
    assert r.json()["decision"] == "review", r.text
    return case_of(server, r.json()["case_id"])


def test_a_locked_queue_gives_the_reviewer_its_next_case_only(
    page: Page, server: Server, artifacts: Any
) -> None:
    rule = {"sla_minutes": 30, "mode": "locked", "match": {"merchants": ["merch_locked"]}}
    with server.client(CAROL_KEY) as c:
        assert c.put("/queues/vip", json=rule).status_code == 200
    small = score_own(server, 201, 120.0, merchant_id="merch_locked")
    big = score_own(server, 202, 4800.0, merchant_id="merch_locked")
    sign_in(page, ALICE_KEY)
    page.select_option("#f-queue", "vip")
    expect(page.locator(ROWS)).to_have_count(2)
    expect(page.locator("#locked-note")).to_be_visible()
    expect(page.locator("#page-text")).to_have_text("1–2 of 2 open cases")
    page.screenshot(path=str(artifacts / "console-locked-queue.png"), full_page=True)

    # Clicking the second row is no free pick: the queue hands out its next case (money first).
    page.locator(f"{ROWS}[data-case='{small['id']}']").click()
    open_case_view(page, big["id"])
    expect(page.locator("#case-lock")).to_contain_text("Held by you")
    by_id = server.post(BOB_KEY, f"/cases/{small['id']}/claim")
    assert by_id.status_code == 409
    assert "/queues/vip/next" in by_id.json()["error"]
    page.keyboard.press("a")
    expect(page.locator("#decide-result")).to_have_text("approve: payment settled")
    page.keyboard.press("n")
    open_case_view(page, small["id"])
    page.keyboard.press("d")
    expect(page.locator("#decide-result")).to_have_text("decline: payment declined")


def test_escalation_from_the_case_page_moves_it_to_the_supervisors(
    page: Page, server: Server
) -> None:
    case = score_own(server, 203, 77.0)
    sign_in(page, BOB_KEY)
    page.locator(f"{ROWS}[data-case='{case['id']}']").click()
    open_case_view(page, case["id"])
    page.fill("#note", "card seen on a fraud forum")
    page.click("#escalate")
    expect(page.locator("#decide-result")).to_have_text("Escalated to the supervisors")
    expect(page.locator("#case-flags")).to_contain_text("Escalated by bob")
    expect(page.locator("#case-flags")).to_contain_text("card seen on a fraud forum")
    for name in ("approve", "decline", "decline_fraud"):
        expect(page.locator(f"[data-decision={name}]")).to_be_disabled()
    after = case_of(server, case["id"])
    assert (after["queue"], after["escalated_by"]) == ("supervisors", "bob")
    assert server.post(ALICE_KEY, f"/cases/{case['id']}/claim").status_code == 403
    entries = server.get(ADMIN_KEY, "/admin/audit", action="escalate")["items"]
    assert [
        (e["actor"], e["detail"]["reason"]) for e in entries if e["target"] == str(case["id"])
    ] == [("bob", "card seen on a fraud forum")]
    # the supervisor takes it from the supervisors' queue and decides it
    got = server.post(CAROL_KEY, "/queues/supervisors/next")
    assert got.json()["case_id"] == case["id"]
    r = server.post(CAROL_KEY, f"/cases/{case['id']}/decision", {"decision": "decline_fraud"})
    assert r.status_code == 200, r.text


def test_links_panel_says_a_linked_confirmed_fraud_and_opens_the_links(
    page: Page, server: Server, artifacts: Any
) -> None:
    fraud = score_own(server, 204, 310.0, device_id="dev_shared_204", email_domain="mail204.test")
    case = score_own(server, 205, 2890.0, device_id="dev_shared_204", email_domain="mail205.test")
    label = {"transaction_id": fraud["transaction_id"], "is_fraud": True}
    assert server.post(BACKEND_KEY, "/labels", label).json()["stored"] is True
    sign_in(page, ALICE_KEY)
    page.locator(f"{ROWS}[data-case='{case['id']}']").click()
    open_case_view(page, case["id"])
    warning = page.locator("#links-warning")
    expect(warning).to_have_text(
        f"1 linked payment is confirmed fraud: {fraud['transaction_id']} (charged back) "
        "shares the device."
    )
    device = page.locator("#links-counts button[data-kind=device]")
    expect(device).to_have_text("1 sharing the device")
    device.click()
    row = page.locator(f"#links-rows tr[data-txn='{fraud['transaction_id']}']")
    expect(row).to_have_class(re.compile(r"fraud-row"))
    expect(row).to_contain_text("fraud (chargeback)")
    expect(row).to_contain_text("UTC")
    # the case leads with the score, why it is held, and the decision buttons above the fold
    expect(page.locator("#case-title")).to_contain_text("of 99")
    expect(page.locator("#case-why")).to_contain_text("Held because")
    normal = page.locator("#case-normal")  # the facts against the card's normal lead
    expect(normal).to_contain_text("first payment on this card in the last 30 days")  # new card
    expect(normal).to_contain_text("first payment from this IP address in the last 24 hours")
    expect(normal).to_contain_text("2 different cards on this device in 24 h (usual: 1)")
    box = page.locator("[data-decision=approve]").bounding_box()
    assert box is not None
    assert box["y"] + box["height"] < 900
    page.screenshot(path=str(artifacts / "console-case-links.png"), full_page=True)
    page.keyboard.press("f")
    expect(page.locator("#decide-result")).to_have_text("decline fraud: payment declined")


def test_the_team_page_shows_decisions_per_reviewer_and_demand_vs_supply(
    page: Page, server: Server, artifacts: Any
) -> None:
    sign_in(page, CAROL_KEY)
    expect(page.locator("#nav-stats")).to_be_visible()
    page.click("#nav-stats")
    expect(page.locator("#stats-view")).to_be_visible()
    stats = server.get(CAROL_KEY, "/review/stats")
    alice = [g for g in stats["by_reviewer"] if g["reviewer"] == "alice"]
    assert alice, "alice decided cases in this module"
    rows = page.locator("#stats-reviewers tbody tr")
    expect(rows).to_have_count(len(stats["by_reviewer"]))
    expect(page.locator("#stats-reviewers")).to_contain_text("alice")
    expect(page.locator("#outlook-chart g.hour")).to_have_count(8)
    expect(page.locator("#outlook-text")).to_contain_text("Backlog")
    page.screenshot(path=str(artifacts / "console-team.png"), full_page=True)
    # a reviewer sees no team page
    with server.client(ALICE_KEY) as c:
        assert c.get("/review/stats").status_code == 403


def test_a_burst_sharing_a_device_is_declined_as_one_group(page: Page, server: Server) -> None:
    burst = [score_own(server, 206 + k, 900.0 + k, device_id="dev_burst") for k in range(3)]
    sign_in(page, ALICE_KEY)
    wait_rows(page, server)
    page.select_option("#f-group", "device")
    header = page.locator("#queue-rows tr.group[data-group='dev_burst']")
    expect(header).to_contain_text("3 cases share a device")
    # the group's cases follow its header, together
    ids = page.locator("#queue-rows tr").evaluate_all(
        "rs => rs.map(r => r.dataset.group ? 'group:' + r.dataset.group : r.dataset.case)"
    )
    start = ids.index("group:dev_burst")
    assert {int(x) for x in ids[start + 1 : start + 4]} == {c["id"] for c in burst}
    header.locator("button.group-decline").click()
    expect(page.locator("#queue-rows tr.group[data-group='dev_burst']")).to_have_count(0)
    for c in burst:
        after = case_of(server, c["id"])
        assert (after["decision"], after["decided_by"]) == ("decline_fraud", "alice")
        assert len(decisions_in_audit(server, c["id"])) == 1


def test_a_card_paying_again_within_the_hour_is_compared_with_its_usual(
    page: Page, server: Server, artifacts: Any
) -> None:
    same = {"card_id": "card_velocity", "ip_hash": "ip_velocity", "device_id": "dev_velocity"}
    cases = [score_own(server, 220 + k, 300.0 + 50 * k, **same) for k in range(3)]
    last = cases[-1]
    assert last["features"]["card_count_1h"] == 2
    sign_in(page, ALICE_KEY)
    page.locator(f"{ROWS}[data-case='{last['id']}']").click()
    open_case_view(page, last["id"])
    normal = page.locator("#case-normal")
    expect(normal).to_contain_text(
        "2 earlier payments on this card in the last hour; usual over the last 30 days: "
        "0.1 a day (2 payments)"
    )
    # the timeline shows the card's three payments, each with its amount
    expect(page.locator("#timeline circle")).to_have_count(3)
    expect(page.locator("#timeline")).to_contain_text("€300")
    overlapping = page.evaluate(
        """() => {
          const bs = [...document.querySelectorAll("#timeline text, #where text")]
            .map((t) => [t.closest("svg").id, t.textContent, t.getBBox()]);
          const out = [];
          for (const [i, [s1, t1, a]] of bs.entries())
            for (const [s2, t2, b] of bs.slice(i + 1))
              if (s1 === s2 && a.x < b.x + b.width && b.x < a.x + a.width
                  && a.y < b.y + b.height && b.y < a.y + a.height) out.push(`${t1} / ${t2}`);
          return out;
        }"""
    )
    assert overlapping == [], overlapping
    labels = page.locator("#shap-chart .factor .label").all_text_contents()
    assert len(set(labels)) == len(labels), labels
    assert not [t for t in labels if "(s)" in t or " 1 earlier payments" in t]
    page.screenshot(path=str(artifacts / "console-case-velocity.png"), full_page=True)
