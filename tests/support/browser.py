"""Browser helpers for the Playwright tests: sign in, open a page, choose an option, wait for reruns."""

from __future__ import annotations

from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout


def wait_connected(page: Page) -> None:
    expect(page.locator("[data-testid='stApp'][data-test-connection-state='CONNECTED']")).to_be_attached()


DISPLAY_NAMES = {"admin": "Anna Admin", "operator": "Otto Operator", "viewer": "Vera Viewer"}


def sign_in(page: Page, base_url: str, who: str) -> None:
    """Sign in through the emulator's identity provider, as a person would (real st.login)."""
    page.goto(base_url)
    wait_connected(page)
    page.get_by_role("button", name="Anmelden").click()
    page.locator(f"[data-testid='login-{who}']").click()
    page.wait_for_url(f"{base_url}/**")
    wait_connected(page)
    expect(page.get_by_text(DISPLAY_NAMES[who])).to_be_visible()


def log_in_and_consent_at_datev(page: Page, emulator_url: str, *, long_term: bool = True) -> None:
    """At DATEV (the emulator): log in with SmartLogin as Max Mustermann and consent, to permanent access
    (a Langzeittoken) or, for a one-off login, to this session's access only (no line for permanent access)."""
    page.wait_for_url(f"{emulator_url}/openid/authorize**")
    page.select_option("select[name=person]", "max")
    page.locator("#method-smartlogin").click()
    page.locator("#qr-scanned").click()
    offline = page.locator("[data-testid='consent-offline']")
    if long_term:
        expect(offline).to_be_visible()
    else:
        expect(page.locator("[data-testid='consent-scopes']")).to_be_visible()  # the consent page is shown
        expect(offline).to_have_count(0)
    page.locator("#consent-accept").click()


def open_page(page: Page, title: str) -> None:
    """Open a page through the sidebar menu, as a person would."""
    page.get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()


CHOOSE_ATTEMPTS = 5


def choose(page: Page, label: str, option: str) -> None:
    """Pick `option` in the select box `label`, as a person would: open it, click the entry.

    A rerun still rendering (after a form submit) can replace the select box and close its list
    between the two clicks; then the list is opened again, a bounded number of times. The caller
    asserts what the choice changed on the page.
    """
    for _attempt in range(CHOOSE_ATTEMPTS):
        page.get_by_role("combobox", name=label).first.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError(f"could not choose {option!r} in {label!r} after {CHOOSE_ATTEMPTS} attempts")


def settled(page: Page) -> None:
    """Wait until the rerun that produced what the test just saw has re-rendered every element.

    Call it after expecting the visible result of an action and before the next interaction: while
    a run is under way, Streamlit keeps the previous run's elements on screen, marked
    `data-stale="true"`, and replaces them when the script reaches them. Typing into or clicking
    such an element races its replacement (seen under load: typed values reverted, a second
    "Freigeben" button). The sidebar's `run_every` fragment only briefly marks its own elements.
    """
    expect(page.locator("[data-testid='stElementContainer'][data-stale='true']")).to_have_count(0)
