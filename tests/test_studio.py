"""`l2emg studio`: the backend and the page's handlers without a browser, then the page itself in
headless Chromium (Debian's `chromium` + `chromium-driver`, driven by selenium) against a tiny run
with ES-MoE and EPI trained over three scenarios.

The browser test types a caption, clicks Generate, waits for the three.js view to draw and for the
MP4, counts the gate chart's bars (one per expert), scrubs a frame with the keyboard, downloads the
BVH through Chrome and reads it back, saves a screenshot (to $STUDIO_SCREENSHOT when set), checks
that the page fetched nothing but the studio's own server, and that an empty caption is refused in
the status box while the motion stays on screen.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from l2emg.errors import CheckpointError, ConfigError, DataError  # noqa: E402
from l2emg.motion.bvh import read_bvh  # noqa: E402
from l2emg.studio.backend import Sampling, StudioBackend  # noqa: E402
from l2emg.studio.viewer import STATIC_DIR, THREE_FILES, viewer_page, viewer_payload  # noqa: E402

CAPTION = "a person walks forward sadly"
LONG_CAPTION = " ".join(["a person walks forward very sadly and then turns around slowly"] * 40)


@pytest.fixture(scope="module")
def studio_run(prepared_tiny_run, tiny_config, tmp_path_factory) -> Path:
    """The prepared tiny run with ES-MoE and EPI trained over its three-scenario Unseen stream; or the
    run named by $STUDIO_RUN (the README's screenshot: `STUDIO_RUN=runs/default STUDIO_SCREENSHOT=docs/
    studio.png pytest tests/test_studio.py -k browser`)."""
    from l2emg.continual.trainer import StreamTrainer
    from l2emg.runs import RunDir

    if os.environ.get("STUDIO_RUN"):
        return Path(os.environ["STUDIO_RUN"])
    path = tmp_path_factory.mktemp("studio") / "run"
    shutil.copytree(prepared_tiny_run, path)
    for method in ("esmoe", "epi"):
        StreamTrainer(RunDir(path), tiny_config, method, "unseen", 1, progress=False).run_stream()
    return path


@pytest.fixture(scope="module")
def backend(studio_run) -> StudioBackend:
    backend = StudioBackend(studio_run)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def studio(backend):
    from l2emg.studio.app import StudioApp

    return StudioApp(backend)


def _controls(caption: str, method: str = "esmoe", **change) -> list:
    """The Generate tab's inputs in handler order (caption, method, decoding, temperature, top-k,
    guidance, seed, max codes)."""
    values = {"decoding": "sampling", "temperature": 1.0, "top_k": 0, "guidance": 1.0, "seed": 0, "max_codes": 49}
    values.update(change)
    return [caption, method, *values.values()]


# -- errors a user can cause: clear messages, no browser ------------------------------------------------
def test_missing_run_folder_is_one_line_before_any_server(tmp_path):
    missing = tmp_path / "no-such-run"
    with pytest.raises(CheckpointError, match="run folder not found"):
        StudioBackend(missing)
    script = ("import sys\nfrom l2emg.cli import main\ntry:\n    main(['studio', '--run', sys.argv[1]])\n"
              "except SystemExit as e:\n    print('exit', e.code, 'gradio' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script, str(missing)], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "exit 2 False", done  # refused before gradio is even imported
    assert done.stderr.strip() == f"error: {missing}: run folder not found"


def test_empty_and_too_long_captions_are_refused_with_their_reason(backend, studio):
    import gradio as gr

    for empty in ("", "   \n "):
        with pytest.raises(DataError, match="the caption is empty"):
            backend.generate(empty, "esmoe")
    with pytest.raises(DataError, match="exceed the model's context of 256 positions; shorten the caption"):
        backend.generate(LONG_CAPTION, "esmoe")
    with pytest.raises(ConfigError, match="max codes 300: the model's context holds 256 positions"):
        backend.generate(CAPTION, "esmoe", Sampling(max_codes=300))
    with pytest.raises(ConfigError, match="temperature 0.0: must be > 0"):
        backend.generate(CAPTION, "esmoe", Sampling(temperature=0.0))

    # The page's handler: every other output left as it is, the message in the status box, no state.
    for caption, reason in (("", "the caption is empty"), (LONG_CAPTION, "shorten the caption")):
        with pytest.warns(UserWarning, match=reason):  # gr.Warning: the toast (a warning outside a request)
            outputs = studio.generate(*_controls(caption))
        assert len(outputs) == 7
        *kept, state, status = outputs
        assert kept == [gr.skip()] * 5 and state is None  # gr.skip(): the component keeps what it shows
        assert reason in status and "Traceback" not in status
    assert studio.video(None) == (gr.skip(),) * 3  # nothing to encode after a refusal


def test_a_run_without_a_finished_method_says_so_everywhere(prepared_tiny_run):
    from l2emg.studio.app import StudioApp

    backend = StudioBackend(prepared_tiny_run)
    try:
        assert backend.method_names() == [] and backend.default_method() is None
        for call in (lambda: backend.generate(CAPTION, None), lambda: backend.compare_methods(CAPTION, []),
                     lambda: backend.compare_steps(CAPTION, None)):
            with pytest.raises(CheckpointError, match="this run has no finished method yet .*l2emg train --method esmoe"):
                call()
        app = StudioApp(backend)
        status = app.on_load()[-1]
        assert "no finished method yet" in status
        with pytest.warns(UserWarning, match="no finished method yet"):
            assert "no finished method yet" in app.generate(*_controls(CAPTION, method=None))[-1]
        with pytest.warns(UserWarning, match="no finished method yet"):
            assert "no finished method yet" in app.compare_methods(CAPTION, [], "sampling", 1.0, 0)[-1]
        table, text, *_ = app.report(None)
        assert "No finished method run" in table and "no finished method yet" in text
    finally:
        backend.close()


# -- the backend: generation, explanations, comparisons, files ------------------------------------------
def test_generate_uses_merged_experts_and_explains_the_gate(backend):
    result = backend.generate(CAPTION, "esmoe", Sampling(seed=3))
    assert result.method == "esmoe-unseen-o1" and result.merged  # ES-MoE's single-prompt fast path
    assert result.joints.shape == (4 * len(result.codes), 22, 3) and result.seconds > 0
    why = result.explanation
    assert why["scenarios"] == backend.scenarios("esmoe") and len(why["scenarios"]) == 3
    assert len(why["gate"]) == 3 and sum(why["gate"]) == pytest.approx(1.0, abs=1e-5)
    assert sum(w > 0 for w in why["gate"]) <= 2  # inference top-k = 2 of the experts
    assert sum(why["gate_scores"]) == pytest.approx(1.0, abs=1e-5)
    assert list(why["emotion"]) == ["neutral", "happy", "sad", "angry", "fearful", "surprised", "disgusted"]
    again = backend.generate(CAPTION, "esmoe", Sampling(seed=3))
    np.testing.assert_array_equal(again.codes, result.codes)  # same seed, same motion (merge undone between calls)

    routed = backend.generate(CAPTION, "epi").explanation
    assert 0 <= routed["route"] < 3 and len(routed["route_distances"]) == 3
    assert routed["route"] == int(np.argmin(routed["route_distances"]))


def test_compare_methods_and_steps(backend):
    both = backend.compare_methods(CAPTION, ["esmoe", "epi"], Sampling(seed=1))
    assert [g.method for g in both] == ["esmoe-unseen-o1", "epi-unseen-o1"]
    steps = backend.compare_steps(CAPTION, "esmoe", Sampling(seed=1))
    assert [g.step for g in steps] == [0, 1, 2]
    assert [len(g.explanation["gate"]) for g in steps] == [1, 2, 3]  # one expert per scenario learned so far
    assert steps[1].label == f"after step 2 · {backend.scenarios('esmoe')[1]}"
    with pytest.raises(CheckpointError, match="no checkpoint after step 5"):
        backend.generate(CAPTION, "esmoe", step=5)


def test_sapt_explains_its_dense_gate_and_the_chart_draws_a_bar_per_expert():
    import torch

    from l2emg.config import load_config
    from l2emg.continual.methods import ScenarioContext
    from l2emg.studio.charts import explanation_html
    from method_fixtures import SCENARIO_A, SCENARIO_B, build_tokenizer, make_lm, prompts, setup_method

    method = setup_method("sapt", load_config("tiny", ["sapt.query_hidden=16"]), make_lm(build_tokenizer()))
    for step in range(2):
        method.begin_scenario(step, ScenarioContext(step, "AB"[step], []))
        method.end_scenario(step, None)
    method.eval()
    batch = prompts(method, [SCENARIO_A[0][0], SCENARIO_B[5][0]])  # the first one left-padded
    rows = method.explain(batch["input_ids"], batch["attention_mask"])
    expected = method.gate_weights(batch["input_ids"], batch["attention_mask"].bool())
    assert torch.allclose(torch.tensor([r["gate"] for r in rows]), expected, atol=1e-6)
    page = explanation_html({**rows[1], "scenarios": ["Daily Life", "Sports"], "method": "sapt-unseen-o1"}, "SAPT")
    assert page.count('class="row gate-bar') == 2 and 'data-expert="Sports"' in page
    nothing = explanation_html({"scenarios": [], "method": "seqlora-unseen-o1"}, "SeqLoRA")
    assert "SeqLoRA decides nothing per prompt" in nothing and "gate-bar" not in nothing


def test_downloads_read_back_and_the_mp4_is_an_mp4(backend):
    result = backend.generate(CAPTION, "esmoe", Sampling(seed=2))
    files = backend.export(result)
    joints, fps = read_bvh(files.bvh)
    assert fps == pytest.approx(20) and joints.shape == result.joints.shape
    # BVH keeps frame 0's bone lengths (a decoded motion's vary a little): frame 0 and the root path are exact.
    np.testing.assert_allclose(joints[0], result.joints[0], atol=1e-4)
    np.testing.assert_allclose(joints[:, 0], result.joints[:, 0], atol=1e-4)
    np.testing.assert_array_equal(np.load(files.npy), result.joints.astype(np.float32))
    video, seconds = backend.video(result, files)
    assert video.read_bytes()[4:8] == b"ftyp" and seconds > 0 and files.paths()[-1] == video


def test_viewer_page_is_self_contained():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(8, 22, 3)), rng.normal(size=(5, 22, 3)) + 3.0
    one = viewer_payload([("a", a)])
    assert one["motions"][0]["frames"] == 8 and len(one["motions"][0]["positions"]) == 8 * 22 * 3
    np.testing.assert_allclose(np.reshape(one["motions"][0]["positions"], a.shape), a, atol=6e-4)  # kept in place
    two = viewer_payload([("a", a), ("b", b)])
    xa = np.reshape(two["motions"][0]["positions"], (-1, 22, 3))[..., 0]
    xb = np.reshape(two["motions"][1]["positions"], (-1, 22, 3))[..., 0]
    assert xa.max() < xb.min()  # side by side, apart
    with pytest.raises(DataError, match=r"expected joints of shape \(T, 22, 3\)"):
        viewer_payload([("bad", np.zeros((4, 21, 3)))])
    page = viewer_page(two, title="</script><b>x</b>")
    assert "http://" not in page and "https://" not in page  # nothing from a CDN
    assert f"{STATIC_DIR.as_posix()}/three.module.min.js" in page and "</script><b>" not in page
    assert all((STATIC_DIR / name).is_file() for name in (*THREE_FILES, "LICENSE"))


def test_report_tab_gathers_the_method_reports(studio):
    table, text, figures, samples = studio.report("esmoe")
    assert "| ES-MoE (esmoe-unseen-o1) |" in table and "| EPI (epi-unseen-o1) |" in table
    assert text.startswith("# ES-MoE on the unseen stream") and "![" not in text
    assert figures["visible"] and all(Path(p).is_file() for p, _ in figures["value"])


# -- the page in a real browser -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser(download_dir: Path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver; `make setup` does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
                 "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


def test_studio_in_a_browser(studio, backend, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = _browser(downloads)
    url = studio.launch(host="127.0.0.1", port=_free_port(), block=False)
    try:
        wait = WebDriverWait(driver, 45)
        driver.get(url)
        caption = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#caption textarea"))
        # (Gradio renders the page piece by piece: on a busy machine the button can come after the textbox)
        generate = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#generate-button"))
        caption.send_keys(CAPTION)
        generate.click()
        frame = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#viewer iframe"))
        # (while an event runs Gradio overlays its outputs with a progress text: wait for the real one)
        timing = wait.until(lambda d: re.match(r"(\d+) frames", d.find_element(By.ID, "timing").text))
        frames = int(timing[1])
        timing = driver.find_element(By.ID, "timing").text
        assert "merged experts" in timing

        # The 3D view: a canvas that three.js has drawn into, as many frames as the motion; scrub it.
        driver.switch_to.frame(frame)
        try:
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true"
                       or d.find_element(By.ID, "error").is_displayed())
            assert not driver.find_element(By.ID, "error").is_displayed(), driver.find_element(By.ID, "error").text
            canvas = driver.find_element(By.CSS_SELECTOR, "#stage canvas")
            assert canvas.size["width"] > 300 and canvas.size["height"] > 200
            assert driver.execute_script("return window.l2emgViewer.frames") == frames
            driver.execute_script("window.l2emgViewer.setFrame(0)")
            canvas.click()
            canvas.send_keys(Keys.ARROW_RIGHT)
            assert driver.execute_script("return window.l2emgViewer.frame") == 1 % frames
            assert driver.find_element(By.ID, "scrub").get_attribute("value") == str(1 % frames)
        finally:
            driver.switch_to.default_content()

        # Why this motion: one bar per expert, named by its scenario.
        bars = driver.find_elements(By.CSS_SELECTOR, "#why .gate-bar")
        assert [b.get_attribute("data-expert") for b in bars] == backend.scenarios("esmoe")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#why .emotion-bar")) == 7

        # The MP4 plays from the server and is a real MP4.
        video = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#video video"))
        wait.until(lambda d: (video.get_attribute("src") or "").endswith(".mp4"))
        with urllib.request.urlopen(video.get_attribute("src"), timeout=10) as response:
            assert response.read(8)[4:8] == b"ftyp"

        # Download the BVH through the browser and read it back.
        link = wait.until(lambda d: next(a for a in d.find_elements(By.CSS_SELECTOR, "#downloads a")
                                         if (a.get_attribute("href") or "").endswith(".bvh")))
        link.click()
        bvh = wait.until(lambda d: next((p for p in downloads.glob("*.bvh")), None))
        joints, fps = read_bvh(bvh)
        assert joints.shape == (frames, 22, 3) and fps == pytest.approx(20)

        shot = Path(os.environ.get("STUDIO_SCREENSHOT") or tmp_path / "studio.png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        time.sleep(0.5)  # let the video element show its first frame
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

        # Nothing but the studio's own server was asked for anything (no CDN, no analytics).
        hosts = set()
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                parsed = urlparse(message["params"]["request"]["url"])
                if parsed.scheme in ("http", "https", "ws", "wss"):
                    hosts.add(parsed.netloc)
        assert hosts == {urlparse(url).netloc}, hosts

        # A refused request: the reason in the status box, the motion still shown, no traceback.
        caption.send_keys(Keys.CONTROL, "a")
        caption.send_keys(Keys.DELETE)  # as a person would (Gradio reads input events)
        generate.click()
        wait.until(lambda d: "the caption is empty" in d.find_element(By.ID, "studio-status").text)
        assert driver.find_element(By.CSS_SELECTOR, "#viewer iframe") and "Traceback" not in driver.page_source
    finally:
        driver.quit()
        studio.close()
