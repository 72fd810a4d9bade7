"""End to end in Debian's Chromium (Playwright): upload a masked astronaut, run, one result per method."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from support import chromium_browser

from model.methods import METHODS

pytestmark = [pytest.mark.browser, pytest.mark.server]

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as b:
        yield b


def test_upload_run_and_compare(browser, demo_server, masked_astronaut_png, tmp_path):
    page = browser.new_page(viewport={"width": 1300, "height": 1800})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.set_default_timeout(120_000)  # 2 shared cores: runs can be slow

    try:
        page.goto(demo_server)
        page.wait_for_selector("#run")
        page.locator("#photo input[type=file]").set_input_files(str(masked_astronaut_png))
        # The face is found and the overlay drawn in the mask editor before the run.
        page.wait_for_function(
            "() => document.querySelector('#status').innerText.includes('Ready:')"
        )
        # A brush stroke on the overlay (red, the default colour) adds to the mask.
        box = page.locator("#mask-editor canvas").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.8, steps=15)
        page.mouse.up()
        page.locator("#correct").click()
        page.wait_for_function(
            "() => document.querySelector('#status').innerText.includes('Mask updated')"
        )
        page.locator("#run").click()

        # Untrained segmenters may find no mask: then the page asks for one, and we add a synthetic one.
        results = page.locator("#results")
        status = page.locator("#status")
        page.wait_for_function(
            "() => document.querySelector('#results').innerText.includes('·')"
            " || document.querySelector('#status').innerText.includes('empty')"
        )
        if "empty" in status.inner_text():
            page.get_by_text("No mask on the face? Add a synthetic one").click()
            page.locator("#add-mask").click()
            page.wait_for_function(
                "() => document.querySelector('#status').innerText.includes('synthetic')"
            )
            page.locator("#run").click()
            page.wait_for_function(
                "() => document.querySelector('#results').innerText.includes('·')"
            )

        text = results.inner_text()
        for spec in METHODS.values():
            assert f"{spec.label} · " in text, (spec.label, text)
        # Clicking a result in the gallery pastes that one back into the photo.
        results.locator("button.thumbnail-item", has_text="Patch-based (Telea) ·").click()
        page.wait_for_function(
            "() => document.querySelector('#chosen input')?.value === 'Patch-based (Telea)'"
        )
        assert "Traceback" not in page.content()
    finally:  # also on failure: the page as it was is the best clue
        page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
    assert (tmp_path / "demo.png").stat().st_size > 10_000

    foreign = [u for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")
               and urlparse(u).hostname not in LOCAL_HOSTS]  # fmt: skip
    assert foreign == [], f"outbound requests: {foreign}"


# A component's red "Error" badge: a visible leaf reading just "Error", outside the toasts (whose
# title is "Error" above the message itself).
NO_ERROR_BADGE = """() => ![...document.querySelectorAll('body *')].some(
    e => e.children.length === 0 && e.innerText?.trim() === 'Error' && e.offsetParent !== null
         && !e.closest('[class*=toast]'))"""


def test_a_non_image_after_a_good_photo_gets_a_message(
    browser, demo_server, masked_astronaut_png, tmp_path
):
    """Issue 14: after an earlier upload, a non-image in the photo box left only red "Error"
    badges (the raised refusal's toast fades). Now: the refusal's words, in the page."""
    text_as_png = tmp_path / "notes.png"  # passes the box's image/* filter, fails to decode
    text_as_png.write_text("not a photo")
    text = tmp_path / "notes.txt"  # refused by the box itself, in the browser
    text.write_text("not a photo")
    page = browser.new_page(viewport={"width": 1300, "height": 1400})
    page.set_default_timeout(120_000)
    upload = page.locator("#photo input[type=file]")
    try:
        page.goto(demo_server)
        page.wait_for_selector("#run")
        upload.set_input_files(str(masked_astronaut_png))
        page.wait_for_function(
            "() => document.querySelector('#status').innerText.includes('Ready:')"
        )
        upload.set_input_files(str(text_as_png))
        page.wait_for_function(
            "() => document.querySelector('#status').innerText.includes('not an image we can read')"
        )
        assert page.locator("#status").is_visible()
        assert page.evaluate(NO_ERROR_BADGE), "a bare 'Error' badge is shown"
        # The earlier face is gone from the mask editor: nothing stale to run on.
        page.locator("#run").click()
        page.wait_for_function(
            "() => document.querySelector('#status').innerText.includes('Upload a photo')"
        )

        upload.set_input_files(str(masked_astronaut_png))
        page.wait_for_function(
            "() => document.querySelector('#status').innerText.includes('Ready:')"
        )
        upload.set_input_files(str(text))
        page.get_by_text("Invalid file type: notes.txt").first.wait_for(state="visible")
        assert page.evaluate(NO_ERROR_BADGE), "a bare 'Error' badge is shown"
    finally:
        page.screenshot(path=str(tmp_path / "refusal.png"), full_page=True)
        page.close()
