"""The studio's web page: Gradio Blocks over a `StudioBackend`, and the handlers of its events.

    studio = StudioApp(StudioBackend("runs/default"))
    studio.launch(host="127.0.0.1", port=7860)                 # blocks; l2emg studio calls this

Tabs:
- **Generate**: caption (with one example caption per emotion from the run's test split), method,
  sampling (greedy / sampling, temperature, top-k, guidance, seed), longest motion in codes; the
  motion as an interactive three.js skeleton (orbit, zoom, scrub), as an MP4 (encoded right after
  the 3D view is shown), the timings, and downloads (BVH, joints `.npy`, MP4). Under it **Why this
  motion**: the gate over the scenario experts (one bar per expert, named by its scenario), the
  emotion block's prediction, or EPI's routed scenario (`charts.py`).
- **Compare**: one caption and seed through several methods side by side, or through one method's
  checkpoint after each stream step; one 3D scene, one timeline, each figure labelled.
- **Report**: the run's Table-2 rows, `l2emg bench`'s table when written, and a method run's report
  (text, heatmaps, GIF grids).

Errors a user can cause (`L2EMGError`: empty or too long caption, a run without a finished method,
settings out of range) never reach the page as a traceback: the handler shows the message in the
status box under the title and as a warning toast, and leaves the other outputs as they were.
Every handler is a plain method returning its outputs, so tests call them without a browser.
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # never phone home (must precede the import)

import gradio as gr  # noqa: E402

from l2emg.continual.report import method_label  # noqa: E402
from l2emg.errors import L2EMGError  # noqa: E402
from l2emg.studio.backend import FRAMES_PER_CODE, Downloads, Generation, Sampling, StudioBackend  # noqa: E402
from l2emg.studio.charts import explanation_html  # noqa: E402
from l2emg.studio.report import bench_markdown, method_name, method_report, table2_markdown  # noqa: E402
from l2emg.studio.viewer import STATIC_DIR, viewer_iframe, viewer_page, viewer_payload  # noqa: E402

GREEDY, SAMPLING = "greedy", "sampling"
PLACEHOLDER = ('<div class="l2emg-placeholder">Type a caption (or pick an example) and press '
               '<b>Generate</b>: the motion appears here in 3D.</div>')
CSS = """
.l2emg-placeholder { height: 460px; display: flex; align-items: center; justify-content: center; text-align: center;
  border: 1px dashed rgba(127,127,127,0.4); border-radius: 8px; opacity: 0.8; padding: 20px; }
#studio-status .prose p { margin: 0; }
.l2emg-why-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 14px; }
.l2emg-why-grid > div > h3 { margin: 4px 0; font-size: 15px; }
"""


def error_status(message: str) -> str:
    """The status box's text for a refused request (Markdown)."""
    return f"**Could not do that:** {message}"


class StudioApp:
    """The page and its handlers over one backend."""

    def __init__(self, backend: StudioBackend):
        self.backend = backend
        self.blocks: gr.Blocks | None = None

    # -- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def sampling(decoding: str, temperature: float, top_k: float | None, guidance: float, seed: float | None,
                 max_codes: float | None) -> Sampling:
        """The page's controls -> `Sampling` (top-k 0 or empty = all codes)."""
        return Sampling(greedy=decoding == GREEDY, temperature=float(temperature),
                        top_k=int(top_k) if top_k else None, guidance=float(guidance),
                        seed=int(seed or 0), max_codes=int(max_codes) if max_codes else None)

    @staticmethod
    def _refused(err: L2EMGError, outputs: int, *last: Any) -> tuple[Any, ...]:
        """Leave `outputs` components as they are (then the values `last`), show the message in the
        status box and as a warning toast."""
        message = str(err)
        gr.Warning(message)
        return (*[gr.skip() for _ in range(outputs)], *last, error_status(message))

    def _label(self, method: str) -> str:
        try:
            return method_label(method_name(self.backend.method_run(method)))
        except L2EMGError:
            return method

    @staticmethod
    def _timing(generation: Generation, viewer_seconds: float, video_seconds: float | None = None) -> str:
        path = "merged experts, batch of one" if generation.merged else "batch of one"
        video = "encoding…" if video_seconds is None else f"**{video_seconds:.2f} s**"
        return (f"**{generation.frames} frames** ({generation.duration:.1f} s, {len(generation.codes)} codes) · "
                f"caption → joints **{generation.seconds:.2f} s** ({path}) · why {1000 * generation.explain_seconds:.0f} ms · "
                f"3D view {1000 * viewer_seconds:.0f} ms · MP4 {video}")

    # -- Generate -----------------------------------------------------------------------------------
    def generate(self, caption: str, method: str, decoding: str, temperature: float, top_k: float | None,
                 guidance: float, seed: float | None, max_codes: float | None) -> tuple[Any, ...]:
        """-> (3D view, why, timing, downloads, video, state, status)."""
        try:
            settings = self.sampling(decoding, temperature, top_k, guidance, seed, max_codes)
            generation = self.backend.generate(caption, method, settings)
            start = time.perf_counter()
            view = viewer_iframe(viewer_page(viewer_payload([(generation.method, generation.joints)], generation.fps),
                                             title=generation.caption))
            viewer_seconds = time.perf_counter() - start
            downloads = self.backend.export(generation)
        except L2EMGError as err:
            return self._refused(err, 5, None)  # no state: the MP4 step that follows does nothing
        why = explanation_html(generation.explanation, self._label(generation.method))
        state = {"generation": generation, "downloads": downloads, "viewer_seconds": viewer_seconds}
        return (view, why, self._timing(generation, viewer_seconds), [str(p) for p in downloads.paths()], None, state, "")

    def video(self, state: dict[str, Any] | None) -> tuple[Any, ...]:
        """-> (video, downloads, timing): the MP4 of the last generation, added to its downloads."""
        if not state:
            return gr.skip(), gr.skip(), gr.skip()
        generation: Generation = state["generation"]
        downloads: Downloads = state["downloads"]
        try:
            path, seconds = self.backend.video(generation, downloads)
        except (L2EMGError, OSError) as err:
            gr.Warning(f"the MP4 could not be written: {err}")
            return gr.skip(), gr.skip(), gr.skip()
        return str(path), [str(p) for p in downloads.paths()], self._timing(generation, state["viewer_seconds"], seconds)

    # -- Compare ------------------------------------------------------------------------------------
    def _compared(self, generations: Sequence[Generation], labels: Sequence[str]) -> tuple[str, str]:
        view = viewer_iframe(viewer_page(viewer_payload([(lab, g.joints) for lab, g in zip(labels, generations)],
                                                        generations[0].fps), title=generations[0].caption), height=520)
        panels = "".join(
            f'<div><h3>{html.escape(lab)} · {g.frames} frames · {g.seconds:.2f} s</h3>'
            f'{explanation_html(g.explanation, self._label(g.method))}</div>'
            for lab, g in zip(labels, generations))
        return view, f'<div class="l2emg-why-grid">{panels}</div>'

    def compare_methods(self, caption: str, methods: Sequence[str] | None, decoding: str, temperature: float,
                        seed: float | None) -> tuple[Any, ...]:
        """-> (3D view of every method's motion, their explanations, status)."""
        try:
            settings = self.sampling(decoding, temperature, None, 1.0, seed, None)
            generations = self.backend.compare_methods(caption, list(methods or []), settings)
        except L2EMGError as err:
            return self._refused(err, 2)
        labels = [f"{self._label(g.method)} ({g.method})" for g in generations]
        return (*self._compared(generations, labels), "")

    def compare_steps(self, caption: str, method: str, decoding: str, temperature: float,
                      seed: float | None) -> tuple[Any, ...]:
        """-> (3D view of the motion after each stream step, their explanations, status)."""
        try:
            settings = self.sampling(decoding, temperature, None, 1.0, seed, None)
            generations = self.backend.compare_steps(caption, method, settings)
        except L2EMGError as err:
            return self._refused(err, 2)
        return (*self._compared(generations, [g.label for g in generations]), "")

    # -- Report -------------------------------------------------------------------------------------
    def report(self, method: str | None) -> tuple[Any, ...]:
        """-> (Table 2 of every finished method run, the method's report text, heatmaps, GIF grids); a
        run without a finished method says so in the text."""
        table = table2_markdown(self.backend.run)
        bench = bench_markdown(self.backend.run)
        if bench:
            table += "\n\n### `l2emg bench` (splits × orders)\n\n" + bench
        try:
            method_run = self.backend.method_run(method)
        except L2EMGError as err:
            return table, error_status(str(err)), gr.update(value=[], visible=False), gr.update(value=[], visible=False)
        report = method_report(method_run)
        return (table, report.markdown,
                gr.update(value=[(str(p), c) for p, c in report.figures], visible=bool(report.figures)),
                gr.update(value=[(str(p), c) for p, c in report.samples], visible=bool(report.samples)))

    # -- page load ----------------------------------------------------------------------------------
    def on_load(self) -> tuple[Any, ...]:
        """Refresh the method lists (a method may have finished since start) and say what is missing."""
        names = self.backend.method_names()
        default = self.backend.default_method()
        status = ""
        try:
            self.backend.require_methods()
        except L2EMGError as err:
            status = error_status(str(err))
        return (gr.update(choices=names, value=default), gr.update(choices=names, value=names[:4]),
                gr.update(choices=names, value=default), gr.update(choices=names, value=default), status)

    # -- the page -----------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        """The Blocks page (built once)."""
        if self.blocks is not None:
            return self.blocks
        backend = self.backend
        names = backend.method_names()
        default = backend.default_method()
        limit, default_codes = (backend.max_codes_limit(default), backend.default_max_codes(default)) if default else (49, 49)
        examples = backend.examples()
        with gr.Blocks(title="l2emg studio", analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
            gr.Markdown(f"# l2emg studio\nRun `{backend.run.path}` · {len(names)} finished method run"
                        f"{'s' if len(names) != 1 else ''}: {', '.join(names) or 'none'}")
            status = gr.Markdown("", elem_id="studio-status")
            state = gr.State(None)
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column(scale=2, min_width=300):
                        caption = gr.Textbox(label="Emotional motion description", lines=2, elem_id="caption",
                                             placeholder="a person jogs in a circle, sadly")
                        if examples:
                            gr.Examples([[c] for _, c in examples], inputs=[caption],
                                        example_labels=[f"{e}: {c}" for e, c in examples],
                                        label="Examples from the test split (one per emotion)")
                        method = gr.Dropdown(names, value=default, label="Method (finished method runs)",
                                             elem_id="method")
                        with gr.Accordion("Sampling", open=False):
                            decoding = gr.Radio([SAMPLING, GREEDY], value=SAMPLING, label="Decoding",
                                                info="sampling at T = 1 is the default (greedy repeats itself)")
                            temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
                            top_k = gr.Number(0, precision=0, minimum=0, label="Top-k (0 = all codes)")
                            guidance = gr.Slider(1.0, 5.0, value=1.0, step=0.1, label="Guidance scale",
                                                 info="classifier-free guidance, 1 = none; for methods trained with "
                                                      "train.caption_dropout > 0 (decodes two rows: no merged fast path)")
                            seed = gr.Number(0, precision=0, minimum=0, label="Seed")
                        max_codes = gr.Slider(1, limit, value=min(default_codes, limit), step=1,
                                              label=f"Longest motion, in codes ({FRAMES_PER_CODE} frames = 0.2 s each)",
                                              info="the motion ends earlier when the model writes <eom>")
                        run_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
                    with gr.Column(scale=3, min_width=400):
                        view = gr.HTML(PLACEHOLDER, elem_id="viewer", js_on_load=None)
                        timing = gr.Markdown("", elem_id="timing")
                        with gr.Row():
                            video = gr.Video(label="MP4", elem_id="video", interactive=False, autoplay=True, loop=True)
                            files = gr.File(label="Downloads: BVH, joints .npy (T × 22 × 3, metres), MP4",
                                            file_count="multiple", interactive=False, elem_id="downloads")
                gr.Markdown("## Why this motion")
                why = gr.HTML("", elem_id="why", js_on_load=None)
                inputs = [caption, method, decoding, temperature, top_k, guidance, seed, max_codes]
                outputs = [view, why, timing, files, video, state, status]
                for trigger in (run_button.click, caption.submit):
                    trigger(self.generate, inputs, outputs).then(self.video, [state], [video, files, timing])
            with gr.Tab("Compare", id="compare"):
                compare_caption = gr.Textbox(label="Emotional motion description", lines=2, elem_id="compare-caption",
                                             value=examples[0][1] if examples else "")
                with gr.Row():
                    compare_decoding = gr.Radio([SAMPLING, GREEDY], value=SAMPLING, label="Decoding")
                    compare_temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
                    compare_seed = gr.Number(0, precision=0, minimum=0, label="Seed (the same for every motion)")
                with gr.Row():
                    compare_methods = gr.CheckboxGroup(names, value=names[:4], label="Methods side by side",
                                                       scale=3, elem_id="compare-methods")
                    methods_button = gr.Button("Compare methods", variant="primary", scale=1)
                with gr.Row():
                    steps_method = gr.Dropdown(names, value=default, label="One method after each scenario step",
                                               scale=3, elem_id="steps-method")
                    steps_button = gr.Button("Compare steps", variant="primary", scale=1)
                compare_view = gr.HTML("", elem_id="compare-viewer", js_on_load=None)
                compare_why = gr.HTML("", elem_id="compare-why", js_on_load=None)
                shared = [compare_decoding, compare_temperature, compare_seed]
                methods_button.click(self.compare_methods, [compare_caption, compare_methods, *shared],
                                     [compare_view, compare_why, status])
                steps_button.click(self.compare_steps, [compare_caption, steps_method, *shared],
                                   [compare_view, compare_why, status])
            with gr.Tab("Report", id="report"):
                table = gr.Markdown(table2_markdown(backend.run), elem_id="table2")
                report_method = gr.Dropdown(names, value=default, label="Method run", elem_id="report-method")
                report_text = gr.Markdown("", elem_id="report-text")
                figures = gr.Gallery(label="Heatmaps (rows: after step i; columns: scenario j)", columns=3,
                                     height="auto", object_fit="contain", elem_id="report-figures")
                samples = gr.Gallery(label="Sample grids (one emotion across scenarios)", columns=2,
                                     height="auto", object_fit="contain", elem_id="report-samples")
                report_outputs = [table, report_text, figures, samples]
                report_method.change(self.report, [report_method], report_outputs)
            blocks.load(self.on_load, None, [method, compare_methods, steps_method, report_method, status])
            blocks.load(self.report, [report_method], report_outputs)
        self.blocks = blocks
        return blocks

    def launch(self, host: str = "127.0.0.1", port: int = 7860, block: bool = True,
               on_ready: Callable[[str], None] | None = None) -> str:
        """Serve the page (no share link, no analytics, no server-side rendering); return its URL.
        `block=False` returns once the server is up (tests), `close()` stops it."""
        blocks = self.build()
        _, url, _ = blocks.launch(
            server_name=host, server_port=port, prevent_thread_lock=True, share=False, inbrowser=False,
            show_error=False, quiet=True, ssr_mode=False, footer_links=[], enable_monitoring=False,
            allowed_paths=[str(STATIC_DIR), str(Path(self.backend.run.path).resolve())], css=CSS)
        if on_ready is not None:
            on_ready(url)
        if block:
            try:
                blocks.block_thread()
            finally:
                self.close()
        return url

    def close(self) -> None:
        if self.blocks is not None:
            self.blocks.close()
