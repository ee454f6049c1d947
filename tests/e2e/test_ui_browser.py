"""The page at / and Swagger UI in a real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Server, png_bytes
from tests.integration.training.test_commands import export_small_ensemble

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists(),
                                reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest):  # noqa: ANN001, ANN201
    # A phone-sized screen. Playwright's wait_for_function evaluates a string, which the page's own
    # Content-Security-Policy forbids; test_page_puts_the_actions_in_the_first_screen runs under it.
    context = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
    page = context.new_page()
    external: list[str] = []
    page.on("request", lambda r: external.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:",
                                                                                    "blob:")) else None)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not external, f"the page fetched from outside: {external}"


def open_page(page, server: Server) -> None:  # noqa: ANN001
    page.goto(server.url + "/")
    page.wait_for_selector("#model-status:has-text('ready')", timeout=30_000)


def test_page_loads_models_and_information(page, server: Server) -> None:  # noqa: ANN001
    open_page(page, server)
    assert page.locator("#model-select option").count() == 4
    assert page.input_value("#model-select") == "mnist-lenet"
    facts = page.text_content("#model-facts")
    assert "0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in facts and "center_by_mass" in facts and "Accuracy (test)" in facts
    assert "test_" not in facts and "../" not in facts  # readable names; no developer's paths
    assert page.locator("#model-facts dt:text-is('Averaged over')").count() == 0  # LeNet reads each image once
    assert not page.is_visible("#model-facts")  # the details wait behind "About this model"
    assert "99." in page.inner_text("#model-summary")
    assert page.is_visible("#draw-canvas") and page.is_visible("#file-input")


def test_page_upload_digit_shows_right_label_first(page, server: Server, mnist, tmp_path: Path) -> None:  # noqa: ANN001
    open_page(page, server)
    digits = []
    for index in (0, 1):
        path = tmp_path / f"digit-{index}.png"
        path.write_bytes(png_bytes(mnist.test.images[index]))
        digits.append(path)
    page.set_input_files("#file-input", [str(p) for p in digits])
    # Cards are prepended and answered in any order: wait until both have a label, not just one.
    page.wait_for_function("document.querySelectorAll('.card[data-top]').length === 2", timeout=30_000)
    tops = {page.inner_text(f".card:nth-child({i}) h3"): page.get_attribute(f".card:nth-child({i})", "data-top")
            for i in (1, 2)}
    assert tops == {"digit-0.png": str(mnist.test.labels[0]), "digit-1.png": str(mnist.test.labels[1])}
    assert page.locator(".card img.model-input").count() == 2  # what the model saw, per image


def test_page_drawing_a_one_predicts_one(page, server: Server) -> None:  # noqa: ANN001
    open_page(page, server)
    page.locator("#draw-canvas").scroll_into_view_if_needed()
    box = page.locator("#draw-canvas").bounding_box()
    x = box["x"] + box["width"] * 0.5
    page.mouse.move(x, box["y"] + box["height"] * 0.15)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(x, box["y"] + box["height"] * (0.15 + 0.7 * step / 20))
    page.mouse.up()
    # Settled: labelled, and no prediction of a later stroke still in flight.
    page.wait_for_function("(r => r.dataset.top !== undefined && !r.hasAttribute('aria-busy'))"
                           "(document.querySelector('#draw-result'))", timeout=30_000)
    assert page.get_attribute("#draw-result", "data-top") == "1"


def test_page_corrupt_file_shows_error_message(page, server: Server, tmp_path: Path) -> None:  # noqa: ANN001
    open_page(page, server)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    page.set_input_files("#file-input", str(broken))
    page.wait_for_selector(".card[data-error] .error", timeout=30_000)
    message = page.inner_text(".card .error")
    assert "broken.png" in message and "HTTP 400" in message


def test_swagger_ui_renders_route_list_offline(page, server: Server) -> None:  # noqa: ANN001
    page.goto(server.url + "/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    routes = page.locator(".opblock-summary-path").all_inner_texts()
    for route in ("/v1/models/{name}/predict", "/v1/models/{name}/predict/batch", "/v1/models", "/readyz"):
        assert any(route == r.replace("\u200b", "") for r in routes), routes


def test_swagger_try_it_out_uploads_a_file(page, server: Server, mnist, tmp_path: Path) -> None:  # noqa: ANN001
    digit = tmp_path / "digit.png"
    digit.write_bytes(png_bytes(mnist.test.images[0]))
    page.goto(server.url + "/docs")
    operation = page.locator("#operations-predict-predict_v1_models__name__predict_post")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("input[placeholder='name']").fill("mnist-lenet")
    operation.locator("input[type=file]").set_input_files(str(digit))
    operation.locator("button.execute").click()
    page.wait_for_selector(".live-responses-table tbody .response-col_status", timeout=30_000)
    assert operation.locator(".live-responses-table tbody .response-col_status").first.inner_text().strip() == "200"
    assert f'"label": "{mnist.test.labels[0]}"' in operation.locator(".live-responses-table").inner_text()


def test_page_results_belong_to_their_model_and_clear_when_it_changes(page, server: Server, mnist,
                                                                      tmp_path: Path) -> None:  # noqa: ANN001
    open_page(page, server)
    digit = tmp_path / "digit.png"
    digit.write_bytes(png_bytes(mnist.test.images[0]))
    page.set_input_files("#file-input", str(digit))
    page.wait_for_selector(".card[data-top]", timeout=30_000)
    assert page.inner_text(".card .model-tag").startswith("mnist-lenet v")
    page.select_option("#model-select", "hymenoptera")
    page.wait_for_selector("#model-status:has-text('hymenoptera is ready')", timeout=30_000)
    assert page.locator(".card").count() == 0 and not page.is_visible("#draw-canvas")
    assert "from scratch" in page.text_content("#model-facts")


def test_page_non_image_upload_shows_a_placeholder_and_the_reason(page, server: Server, tmp_path: Path) -> None:  # noqa: ANN001
    open_page(page, server)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page.set_input_files("#file-input", str(notes))
    page.wait_for_selector(".card[data-error] .error", timeout=30_000)
    assert page.locator(".card .placeholder").count() == 1 and page.locator(".card img").count() == 0
    assert "HTTP 415" in page.inner_text(".card .error")


@pytest.mark.parametrize(("name", "viewport"), [("desktop", {"width": 1280, "height": 800}),
                                                 ("phone", {"width": 390, "height": 844})])
def test_page_puts_the_actions_in_the_first_screen(browser, server: Server, mnist, tmp_path: Path, name: str,
                                                   viewport: dict) -> None:  # noqa: ANN001
    """The drawing area and the file chooser start within the first screen, on a laptop and on a
    phone; a screenshot of each (with a result) goes to test-artifacts/."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    try:
        open_page(page, server)
        for selector in ("#draw-canvas", "#drop-zone"):
            box = page.locator(selector).bounding_box()
            assert box is not None and box["y"] < viewport["height"], (selector, box)
        digit = tmp_path / "seven.png"
        digit.write_bytes(png_bytes(mnist.test.images[0]))
        page.set_input_files("#file-input", str(digit))
        page.wait_for_selector(".card[data-top]", timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"), full_page=name == "phone")
    finally:
        context.close()


def test_page_names_an_ensemble_its_size_and_its_views(page, server_factory, tmp_path: Path) -> None:  # noqa: ANN001
    exported, _ = export_small_ensemble(tmp_path)
    open_page(page, server_factory({"APP_MODEL_DIR": str(exported.parent.parent)}))
    assert page.inner_text("#model-summary").startswith("Four-block CNN, ensemble of 2 · 2 classes")
    facts = page.text_content("#model-facts")
    assert "Four-block CNN, ensemble of 2, trained from scratch" in facts
    assert page.text_content("#model-facts dt:text-is('Averaged over') + dd") == "the image as given and mirrored"
