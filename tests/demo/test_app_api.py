"""The demo as an API: a real `unmask demo` server driven by gradio_client."""

from __future__ import annotations

import pytest

from model.methods import METHODS

pytestmark = pytest.mark.server


def test_every_event_has_an_api_name(tmp_path, monkeypatch):
    from demo.app import build_app

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'study.sqlite'}")  # the study tab
    monkeypatch.setenv("UNMASK_STUDY_TOKEN", "test-token")
    app = build_app()
    names = {fn.api_name for fn in app.fns.values() if fn.api_name}
    assert {
        "prepare",
        "prepare_file",
        "choose_face",
        "add_synthetic_mask",
        "correct_mask",
        "run",
        "paste",
    } <= names


def test_upload_then_run_every_method(demo_server, masked_astronaut_png, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(demo_server, verbose=False, download_files=str(tmp_path))
    status = client.predict(handle_file(str(masked_astronaut_png)), api_name="/prepare")[0]
    assert "⚠" not in status, status
    # A synthetic mask makes the hole known whatever the (untrained) segmenter predicts.
    status = client.predict("surgical", 0, api_name="/add_synthetic_mask")[0]
    assert "synthetic surgical mask" in status
    status, _editor, gallery, timings, _pasted, _chosen = client.predict(
        None, list(METHODS), None, api_name="/run"
    )
    captions = [item["caption"] for item in gallery]
    assert captions[:2] == ["Input", "Ground truth"], status
    for spec in METHODS.values():
        assert sum(c.startswith(spec.label + " · ") for c in captions) == 1, (spec.label, captions)
        assert spec.label in timings
    zip_path = client.predict(api_name="/download")
    assert str(zip_path).endswith(".zip")


def test_non_image_file_gets_a_message(demo_server, masked_astronaut_png, tmp_path):
    import numpy as np
    from gradio_client import Client, handle_file
    from PIL import Image

    path = tmp_path / "notes.txt"
    path.write_text("not a photo")
    client = Client(demo_server, verbose=False, download_files=str(tmp_path))
    status = client.predict(handle_file(str(path)), api_name="/prepare_file")[0]
    assert "not an image" in status and "Traceback" not in status
    # The photo box decodes before the handler: its refusal is the same kind of status message
    # (not a raised error, which leaves bare "Error" badges on the page), and it clears the face.
    # A face number chosen for one photo would refuse the next: a new photo resets it to 0.
    out = client.predict(handle_file(str(masked_astronaut_png)), api_name="/prepare")
    status, face = out[0], out[-2]  # then the result dropdown, emptied
    assert "⚠" not in status and face == 0, (status, face)
    status = client.predict(None, None, 2, api_name="/choose_face")[0]
    assert "Upload a photo" in status or status == "", status  # nothing on screen to choose from
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n and then nothing")
    for bad in (path, broken):
        status, editor, *_ = client.predict(handle_file(str(bad)), api_name="/prepare")
        assert "not an image we can read" in status and "Traceback" not in status
        background = np.asarray(Image.open(editor["background"]))  # the face is gone: blank
        assert background.min() == background.max(), "the earlier face is still in the editor"
    # The box still works afterwards.
    status = client.predict(handle_file(str(masked_astronaut_png)), api_name="/prepare")[0]
    assert "⚠" not in status, status


def test_two_visitors_at_once_keep_their_own_state(demo_server, masked_astronaut_png, tmp_path):
    import numpy as np
    from gradio_client import Client, handle_file
    from PIL import Image

    visitors = {style: Client(demo_server, verbose=False, download_files=str(tmp_path / style))
                for style in ("cloth", "n95")}  # fmt: skip
    for style, client in visitors.items():
        client.predict(handle_file(str(masked_astronaut_png)), api_name="/prepare")
        client.predict(style, 7, api_name="/add_synthetic_mask")
    jobs = {
        s: c.submit(None, ["telea", "pix2pix"], None, api_name="/run") for s, c in visitors.items()
    }
    inputs = {}
    for style, job in jobs.items():
        status, _editor, gallery, *_ = job.result(timeout=300)
        captions = [item["caption"] for item in gallery]
        assert len(captions) == 4 and captions[:2] == ["Input", "Ground truth"], (style, status)
        inputs[style] = np.asarray(Image.open(gallery[0]["image"]))
    assert (inputs["cloth"] != inputs["n95"]).any()  # each visitor saw their own masked face


def test_the_astronaut_without_a_mask_is_left_alone(tmp_path, monkeypatch):
    """The demo's own "astronaut, no mask" example, over the API of an app running the shipped
    segmenter (the shared server runs untrained networks): the upload says no face mask was found
    and offers the synthetic mask; Run says there is nothing to remove and repaints nothing."""
    from gradio_client import Client, handle_file
    from support import free_port

    from demo import service
    from demo.app import build_app
    from model import pipeline

    monkeypatch.delenv(pipeline.UNTRAINED_ENV, raising=False)
    if pipeline.get_segmenter() is None:
        pytest.skip(f"no shipped segmenter: {pipeline.segmenter_problem()}")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'study.sqlite'}")  # the study tab
    monkeypatch.setenv("UNMASK_STUDY_TOKEN", "test-token")
    caption, example = service.examples()[-1]
    assert caption == "astronaut, no mask"
    app = build_app()
    app.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True
    )
    try:
        client = Client(app.local_url, verbose=False, download_files=str(tmp_path))
        status = client.predict(handle_file(example), api_name="/prepare")[0]
        assert "No face mask was found" in status and "left unchanged" in status, status
        assert "synthetic mask" in status
        status, _editor, gallery, *_ = client.predict(None, list(METHODS), None, api_name="/run")
        assert "nothing to remove" in status and "⚠" not in status, status
        assert not gallery
    finally:
        app.close()
