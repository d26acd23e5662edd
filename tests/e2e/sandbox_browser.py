"""The Airflow 3 UI in a real browser: Debian's chromium driven by Playwright.

Playwright's own browser downloads are unreachable here, so Playwright drives the system
chromium (``/usr/bin/chromium``, the Debian package; ``DIPRO_CHROMIUM`` names another one)
headless. :func:`require_browser` fails the test with what to install when either is missing
(under ``CI=true``; elsewhere it skips with the same message).

:class:`AirflowUI` knows the few screens the sandbox test needs: the SimpleAuthManager login
page, the *Trigger Dag* dialog of a DAG (its "Run Parameters" form, rendered from the DAG's
``params``: an ``array`` of strings is a textarea with one value per line), a run's page
with the grid, and the DiPro page (the plugin's navigation entry shows it in a frame; its own
URL shows it alone).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, FrameLocator, Locator, Page

CHROMIUM = Path(os.environ.get("DIPRO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1400, "height": 1700}  # tall enough for the whole trigger form
WIDE_VIEWPORT = {"width": 1900, "height": 1000}
TIMEOUT_MS = 30_000


def require_browser() -> None:
    """Fail (CI) or skip (elsewhere) with what to install when Playwright or chromium is missing."""
    problems = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the Python package playwright (pip install 'playwright>=1.45')")
    if not CHROMIUM.exists():
        problems.append(f"{CHROMIUM} (Debian: apt-get install -y chromium)")
    if not problems:
        return
    message = "browser test needs " + " and ".join(problems) + "; bash scripts/install.sh does it"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless chromium (the system's), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class AirflowUI:
    """One logged-in page of the Airflow 3 UI."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.page: Page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
        self.page.set_default_timeout(TIMEOUT_MS)

    def login(self, username: str, password: str) -> None:
        """Sign in on SimpleAuthManager's login page; wait for the home page."""
        self.page.goto(f"{self.base_url}/")
        self.page.wait_for_url("**/auth/login**")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(f"{self.base_url}/")

    def open_trigger_form(self, dag_id: str) -> Locator:
        """Open the DAG's page and its *Trigger Dag* dialog; return the dialog."""
        self.page.goto(f"{self.base_url}/dags/{dag_id}")
        self.page.get_by_role("button", name="Trigger Dag").click()
        dialog = self.page.get_by_role("dialog")
        dialog.get_by_text("Run Parameters").wait_for()
        return dialog

    @staticmethod
    def param_field(dialog: Locator, name: str) -> Locator:
        """The input element the form renders for DAG param ``name``."""
        return dialog.locator(f'[name="element_{name}"]')

    @staticmethod
    def param_labels(dialog: Locator) -> list[str]:
        """The labels of the run parameter fields, in form order (``*`` marks dropped)."""
        labels = dialog.locator("label[data-part='label']").all_inner_texts()
        return [text.replace("*", "").strip() for text in labels if text.strip()]

    def fill_string_array(self, dialog: Locator, name: str, values: list[str]) -> None:
        """Fill an ``array``-of-strings param: the form's textarea, one value per line."""
        field = self.param_field(dialog, name)
        assert field.evaluate("e => e.tagName") == "TEXTAREA", f"{name} is not a textarea"
        field.fill("\n".join(values))

    def submit_trigger(self, dialog: Locator) -> dict[str, Any]:
        """Press *Trigger*; return the JSON body the UI POSTed and the API's answer."""
        with self.page.expect_response(
            lambda r: r.url.endswith("/dagRuns") and r.request.method == "POST"
        ) as caught:
            dialog.get_by_role("button", name="Trigger").last.click()
        response = caught.value
        assert response.status == 200, f"trigger answered {response.status}: {response.text()}"
        return {"request": response.request.post_data_json, "response": response.json()}

    def open_run(self, dag_id: str, run_id: str) -> None:
        """The run's page: the grid of the DAG's runs and this run's task instances.

        Wide, so that the grid panel (a share of the width) shows the newest runs unclipped.
        """
        self.page.set_viewport_size(WIDE_VIEWPORT)  # type: ignore[arg-type]
        self.page.goto(f"{self.base_url}/dags/{dag_id}/runs/{run_id}")
        self.page.get_by_role("cell", name="success").first.wait_for()
        self.page.wait_for_load_state("networkidle")

    def open_nav_entry(self, name: str) -> FrameLocator:
        """Click a plugin's entry in the navigation bar; return the frame it shows."""
        self.page.set_viewport_size(WIDE_VIEWPORT)  # type: ignore[arg-type]
        self.page.goto(f"{self.base_url}/")
        self.page.get_by_role("link", name=name, exact=True).click()
        self.page.wait_for_url(f"{self.base_url}/plugin/**")
        return self.page.frame_locator("iframe")

    def open_run_tab(self, dag_id: str, run_id: str, name: str) -> FrameLocator:
        """Open a plugin's tab ``name`` on a DAG run's page; return the frame it shows."""
        self.page.set_viewport_size(WIDE_VIEWPORT)  # type: ignore[arg-type]
        self.page.goto(f"{self.base_url}/dags/{dag_id}/runs/{run_id}")
        self.page.get_by_text(name, exact=True).first.click()
        return self.page.frame_locator("iframe")

    def open_alone(self, path: str) -> str:
        """Open one of the API server's own pages (not the React UI); return its HTML."""
        self.page.set_viewport_size(VIEWPORT)  # type: ignore[arg-type]
        response = self.page.goto(f"{self.base_url}{path}")
        assert response is not None
        assert response.status == 200, f"{path} answered {response.status}"
        return self.page.content()

    def screenshot(
        self, *paths: Path, locator: Locator | None = None, full_page: bool = False
    ) -> None:
        """Save a PNG of the page (or of ``locator``) to the first path, copy it to the rest."""
        first, *copies = paths
        first.parent.mkdir(parents=True, exist_ok=True)
        if locator is not None:
            locator.screenshot(path=str(first))
        else:
            self.page.screenshot(path=str(first), full_page=full_page)
        for copy in copies:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(first, copy)
