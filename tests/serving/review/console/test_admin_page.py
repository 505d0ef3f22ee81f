"""The policy admin page in a real browser against the real service (the console's server and
Chromium, conftest.py): sign in as admin, edit a rule, backtest it, apply it; the history shows
who, why and the backtest's figures. Screenshot: test-artifacts/console-admin.png."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.serving.review.console.conftest import ADMIN_KEY, Server

expect.set_options(timeout=10_000)


def test_edit_a_rule_backtest_it_and_apply_it(page: Page, server: Server, artifacts: Path):
    page.goto("/console/")
    page.click("text=policy admin")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'key'")
    page.keyboard.type(ADMIN_KEY)
    page.keyboard.press("Enter")
    expect(page.locator("#admin")).to_be_visible()

    # an invalid rule is refused with the rule and the reason, nothing applied
    page.fill("#r-name", "big ticket")
    page.fill("#r-field", "hour(amount)")
    page.fill("#r-value", "500")
    page.click("#do-backtest")
    expect(page.locator("#edit-error")).to_contain_text("hour() needs a date field")
    expect(page.locator("#do-apply")).to_be_disabled()

    # the server's model reviews every seeded payment (conftest), so the rule changes nothing
    page.fill("#r-field", "amount")
    page.fill("#r-value", "30")
    page.select_option("#r-op", ">")
    page.fill("#r-reason", "hold every seeded payment")
    page.click("#do-backtest")
    expect(page.locator("#report")).to_be_visible()
    review_row = page.locator("#report-rows tr", has_text="review").first
    cells = review_row.locator("td").all_inner_texts()
    n = len(server.transaction_ids)
    assert cells[1:] == [str(n), str(n), str(n)], cells  # every seeded payment is a review
    expect(page.locator("#report-title")).to_contain_text(f"{n} payments")

    page.click("#do-apply")
    expect(page.locator("#rules tr[data-rule='big ticket']")).to_have_count(1)
    first = page.locator("#history tr").first
    expect(first).to_contain_text("hold every seeded payment")
    expect(first).to_contain_text(f"reviews {n} → {n}")
    policy = server.get(ADMIN_KEY, "/admin/policy")
    assert [r["name"] for r in policy["rules"]] == ["big ticket"]
    page.screenshot(path=str(artifacts / "console-admin.png"), full_page=True)
