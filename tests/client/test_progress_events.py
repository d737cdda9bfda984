"""Progress events: the denoising step, its total and the preview, from InvokeAI's payload."""

from __future__ import annotations

from invokeai_py_client.events import InvocationProgressEvent, parse_event

PREVIEW = {"width": 8, "height": 8, "dataURL": "data:image/jpeg;base64,/9j/"}


def _progress(**extra: object) -> dict[str, object]:
    return {
        "item_id": 1,
        "batch_id": "b",
        "invocation_source_id": "denoise",
        "invocation": {"id": "prepared", "type": "denoise_latents", "steps": 30},
        "message": "Denoising",
        **extra,
    }


def test_a_denoising_step_is_counted_from_the_steps_input_and_percentage() -> None:
    event = parse_event("invocation_progress", _progress(percentage=0.5, image=PREVIEW))
    assert isinstance(event, InvocationProgressEvent)
    assert (event.step, event.total_steps) == (15, 30)
    assert event.preview is not None
    assert (event.preview.width, event.preview.data_url) == (8, PREVIEW["dataURL"])
    as_dict = event.to_dict()  # what callbacks and submit_sync_monitor_async hand out
    assert (as_dict["step"], as_dict["total_steps"], as_dict["image"]) == (15, 30, PREVIEW)


def test_progress_without_a_percentage_or_steps_input_has_no_step() -> None:
    loading = parse_event("invocation_progress", _progress(message="Loading model"))
    assert isinstance(loading, InvocationProgressEvent)
    assert (loading.step, loading.total_steps, loading.preview) == (None, 30, None)
    other = parse_event(
        "invocation_progress",
        {**_progress(percentage=0.5), "invocation": {"id": "x", "type": "img_blur"}},
    )
    assert isinstance(other, InvocationProgressEvent)
    assert (other.step, other.total_steps) == (None, None)
