"""The Gradio demo's layout and event wiring (`unmask demo`); every handler calls demo.service.

Per-visitor work lives in `gr.State`; models are cached once per process by model.pipeline.
"""

from __future__ import annotations

import logging

from model.config import set_offline_env

set_offline_env()  # before gradio is imported: no analytics, no version check, no telemetry

import gradio as gr  # noqa: E402

from demo import about, service  # noqa: E402
from model.config import WEIGHTS_DIR  # noqa: E402
from model.methods import METHODS  # noqa: E402
from study.app import build_study_tab  # noqa: E402

log = logging.getLogger(__name__)

# Runs are CPU-heavy: one at a time keeps each fast; uploads (face finding) may overlap.
RUN_CONCURRENCY = 1
DEFAULT_CONCURRENCY = 2
QUEUE_MAX = 64
MAX_UPLOAD = "40mb"  # larger photos are refused by the server; up to this they are downscaled

# Gradio's markdown breaks words anywhere to fit a table cell (a narrow first column read
# "mode l card"); the About tables need whole words and no empty header row.
CSS = """
#about td, #about th { overflow-wrap: normal; word-break: normal; }
#about td:first-child { white-space: nowrap; width: 1%; }
#about table:has(> thead th:empty) > thead { display: none; }
"""


def card_url(path) -> str:
    """A model card's URL on this server (the weights folder is served read-only, see serve)."""
    return f"gradio_api/file={path}"


def readable_refusal(image: gr.Image) -> gr.Image:
    """Let an image input's handler refuse an undecodable file: Gradio decodes an upload before
    any handler runs, and a decoding error there would leave bare "Error" badges on every output
    (the message only in a toast that fades). The handler gets a `service.Unreadable` instead.

    Wraps this instance's `preprocess` (a `gr.Image` subclass would make Gradio write a .pyi
    stub of this whole module beside it on every import).
    """
    decode = image.preprocess

    def preprocess(payload):
        try:
            return decode(payload)
        except Exception as exc:  # any decoding failure: the visitor gets a message, no trace
            log.info("photo box: undecodable upload (%s: %s)", type(exc).__name__, exc)
            return service.Unreadable(type(exc).__name__)

    image.preprocess = preprocess
    return image


def build_app() -> gr.Blocks:
    """The whole demo: Compare tab, About tab, and the study tab when study/ is installed."""
    with gr.Blocks(title="unmask: face-mask removal", delete_cache=(3600, 3600)) as app:
        visit = gr.State(service.Visit())
        gr.Markdown(
            "# unmask\nUpload a photo of a face wearing a mask (or pick an example): the mask "
            "region is found, every method fills it in, and you compare them side by side."
        )
        with gr.Tabs():
            with gr.Tab("Compare", id="compare"):
                _compare_tab(visit)
            with gr.Tab("About", id="about"):
                gr.Markdown(about.about_markdown(card_link=card_url), elem_id="about")
            _study_tab()
    return app


def _compare_tab(visit: gr.State) -> None:
    # What the weights are (short CPU stand-ins...), from their cards; in tests: untrained nets.
    banner = service.untrained_note() or about.weights_note()
    if banner:
        gr.Markdown(banner, elem_id="banner")
    with gr.Row():
        with gr.Column():
            photo = readable_refusal(
                gr.Image(
                    label="Photo (upload, webcam or paste)",
                    type="filepath",
                    image_mode=None,  # keep the file as uploaded; model.imageio converts any mode
                    sources=["upload", "webcam", "clipboard"],
                    elem_id="photo",
                )
            )
            any_file = gr.File(
                label="…or any image file (TIFF, BMP, …)", file_count="single", elem_id="photo-file"
            )
            face = gr.Number(
                value=0,
                precision=0,
                minimum=0,
                label="Face, in a group photo: 1 = the largest, 2 = the next, … (0: the largest "
                "one wearing a mask); press Enter to use it",
                elem_id="face",
            )
            examples = service.examples()
            gr.Examples(
                examples=[[path] for _, path in examples],
                example_labels=[caption for caption, _ in examples],
                inputs=[photo],
                label="Examples (skimage's astronaut with synthetic masks)",
            )
        with gr.Column():
            editor = gr.ImageEditor(
                label="Mask region (red): paint red to add, blue to erase",
                type="numpy",
                sources=(),
                transforms=(),
                brush=gr.Brush(
                    colors=[service.ADD_COLOUR, service.ERASE_COLOUR],
                    default_color=service.ADD_COLOUR,
                    color_mode="fixed",
                ),
                eraser=gr.Eraser(),
                layers=gr.LayerOptions(allow_additional_layers=False),
                canvas_size=(service.EDITOR_SIZE, service.EDITOR_SIZE),
                elem_id="mask-editor",
            )
            correct = gr.Button("Apply brush to the mask", elem_id="correct")
            with gr.Accordion("No mask on the face? Add a synthetic one", open=False):
                styles = service.style_choices()
                style = gr.Dropdown(styles, value=styles[0], label="Mask style")
                seed = gr.Number(0, precision=0, label="Seed")
                add_mask = gr.Button("Add synthetic mask", elem_id="add-mask")
    status = gr.Markdown(elem_id="status")
    with gr.Row():
        methods = gr.CheckboxGroup(
            service.method_choices(), value=list(METHODS), label="Methods", scale=4
        )
        run = gr.Button("Remove the mask", variant="primary", elem_id="run", scale=1)
    results = gr.Gallery(
        label="Results",
        columns=4,
        # Grows with its rows: "auto" (or no height) caps the grid at 550 px and hid the second
        # row and its captions behind a scrollbar.
        height="fit-content",
        format="png",
        object_fit="contain",
        elem_id="results",
    )
    timings = gr.Markdown(elem_id="timings")
    with gr.Row():
        chosen = gr.Dropdown(
            service.method_choices(),
            value=None,
            label="Result pasted back into the photo",
            elem_id="chosen",
        )
        pasted = gr.Image(
            label="In the photo", type="numpy", format="png", interactive=False, elem_id="pasted"
        )
        download = gr.File(label="All results (zip)", interactive=False, elem_id="zip")

    prepared_out = [visit, status, editor, results, timings, pasted, download]
    # A new photo starts from the default face (0: the largest one wearing a mask): a number
    # chosen for the last photo would refuse this one.
    photo.change(_prepare_new, [photo], [*prepared_out, face, chosen], api_name="prepare")
    any_file.upload(
        _prepare_new, [any_file], [*prepared_out, face, chosen], api_name="prepare_file"
    )
    face.submit(_choose_face, [photo, any_file, face], prepared_out, api_name="choose_face")
    add_mask.click(_add_mask, [visit, style, seed], prepared_out, api_name="add_synthetic_mask")
    correct.click(_correct, [visit, editor], [visit, status, editor], api_name="correct_mask")
    run.click(
        _run,
        [visit, editor, methods, chosen],
        [visit, status, editor, results, timings, pasted, chosen],
        api_name="run",
        concurrency_limit=RUN_CONCURRENCY,
        concurrency_id="run",
    ).then(service.download, [visit], [download], api_name="download")  # zip after the gallery
    chosen.input(_paste, [visit, chosen], [pasted], api_name="paste")
    # Clicking a result in the gallery pastes that one back (same as the dropdown).
    results.select(_pick, [visit], [chosen, pasted], api_name="pick", api_visibility="private")


# --- handlers: unpack a service.View into the components' values ------------------------------


def _prepare(src, face=None):
    view = service.prepare_upload(src, face)
    editor = view.editor or service.blank_editor()
    return view.visit, view.status, editor, [], "", None, None


def _prepare_new(src):
    """A new photo: the default face, and no result chosen yet (the last photo's are gone)."""
    return *_prepare(src), 0, gr.update(choices=[], value=None)


def _choose_face(photo, any_file, face):
    """Another face of the photo on screen (the photo box's, else the file box's)."""
    return _prepare(photo if photo is not None else any_file, face)


def _add_mask(visit, style, seed):
    view = service.add_synthetic_mask(visit, style, seed)
    return view.visit, view.status, view.editor, [], "", None, None


def _correct(visit, editor):
    view = service.correct_mask(visit, editor)
    return view.visit, view.status, view.editor or gr.skip()


def _run(visit, editor, keys, chosen):
    view = service.run(visit, editor, keys, chosen)
    ran = [(METHODS[k].label, k) for k in view.visit.results]
    return (
        view.visit,
        view.status,
        view.editor or gr.skip(),
        service.as_files(view.gallery),
        view.timings,
        service.as_file(view.photo),
        gr.update(choices=ran, value=view.chosen),
    )


def _pick(visit, evt: gr.SelectData):
    key = service.key_at(visit, evt.index)
    if key is None:  # the input or the ground truth: nothing to paste
        return gr.skip(), gr.skip()
    return key, _paste(visit, key)


def _paste(visit, key):
    """The chosen result pasted back into the photo, as a file (see `service.as_files`)."""
    return service.as_file(service.paste(visit, key))


def _study_tab() -> None:
    """Mount the rater study as a tab; a study that cannot start (its database, its stimuli)
    says why in the tab instead of taking the demo down."""
    try:
        build_study_tab()  # its own tab, on the study's default database ($UNMASK_STUDY_DB, ...)
    except Exception as err:  # a broken study must not take the demo down
        log.warning("study tab not mounted: %s", err)
        with gr.Tab("Study", id="study"):
            gr.Markdown(f"The study could not be loaded here ({err}); run `unmask study serve`.")


# --- serving ----------------------------------------------------------------------------------


def serve(host: str = "127.0.0.1", port: int = 7860) -> int:
    """Warm the models up, then serve the demo (what `unmask demo` and `make demo` run)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name, problem in service.warm_up().items():  # load models once, before the first visitor
        log.warning("%s unavailable: %s", name, problem)
    app = build_app()
    app.queue(default_concurrency_limit=DEFAULT_CONCURRENCY, max_size=QUEUE_MAX)
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        show_error=False,  # visitors get our messages, never a stack trace
        ssr_mode=False,  # no Node server
        footer_links=["api"],
        max_file_size=MAX_UPLOAD,
        allowed_paths=[str(WEIGHTS_DIR)],  # the model cards the About tab links (public files)
        css=CSS,
        quiet=False,
    )
    return 0
