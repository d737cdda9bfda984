"""Shared fixtures: a clean environment, the real InvokeAI server, and clients on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from invokeai_py_client import InvokeAIClient, IvkDnnModel
from tests.support import invokeai_server, postgres_server, tiny_models
from tests.support.postgres_server import PostgresServer

OWN_WORKFLOWS = Path(__file__).resolve().parent / "workflows"
# The editor files that run as they are (an image input aside), one per way a file declares
# its inputs: a flat form, a form of nested rows, and `exposedFields` alone (no form).
EXAMPLE_WORKFLOWS = (
    "crop_uploaded_image.json",
    "noise_on_blank_canvas.json",
    "join_three_strings_exposed_fields.json",
)


@pytest.fixture(autouse=True)
def _clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxies would route loopback traffic away from the test server."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def invokeai_url() -> Iterator[str]:
    """URL of a real InvokeAI 6.14.2: ``INVOKEAI_TEST_URL`` or one this session starts."""
    with invokeai_server.running_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL for the gateway tests that run on both databases (one cluster)."""
    with postgres_server.running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def shipped_workflows_dir() -> Path:
    return invokeai_server.shipped_workflows_dir()


@pytest.fixture(scope="session")
def workflows_dir() -> Path:
    """This project's own editor workflow files (tests/workflows)."""
    return OWN_WORKFLOWS


@pytest.fixture(scope="session")
def example_workflows(workflows_dir: Path) -> list[Path]:
    """The files of ``EXAMPLE_WORKFLOWS``, sorted by name."""
    return sorted(workflows_dir / name for name in EXAMPLE_WORKFLOWS)


@pytest.fixture
def client(invokeai_url: str) -> Iterator[InvokeAIClient]:
    """A sync-facade client on the real server."""
    with InvokeAIClient.from_url(invokeai_url) as c:
        yield c


@pytest.fixture
async def aclient(invokeai_url: str) -> AsyncIterator[InvokeAIClient]:
    """A client used from the test's event loop."""
    c = InvokeAIClient.from_url(invokeai_url)
    try:
        yield c
    finally:
        await c.aclose()


def install_tiny(
    invokeai_url: str, name: str, base: str, type: str, file: str | None = None
) -> IvkDnnModel:
    """Install one of the tiny models in place, unless the server has it already (a reused
    ``INVOKEAI_TEST_URL``): installing again is refused (409 for a folder, a job that ends in
    ``DuplicateModelException`` for a single file), so the installed record is used."""
    folder = tiny_models.ensure_built(invokeai_server.venv_dir()) / (file or name)
    with InvokeAIClient.from_url(invokeai_url) as client:
        repo = client.dnn_model_repo
        installed = repo.find_models(name, base=base, type=type, exact=True)
        if installed:
            return installed[0]
        return repo.install_model(str(folder), config={"name": name})


@pytest.fixture(scope="session")
def tiny_sd1(invokeai_url: str) -> IvkDnnModel:
    """A tiny random-weight SD1.5 pipeline, built once per machine, installed here with the
    client's own model API."""
    return install_tiny(invokeai_url, tiny_models.SD1_NAME, "sd-1", "main")


@pytest.fixture(scope="session")
def tiny_sdxl(invokeai_url: str) -> tuple[IvkDnnModel, IvkDnnModel]:
    """A tiny SDXL pipeline and its VAE (saved alone, so it installs as an sdxl VAE)."""
    main = install_tiny(invokeai_url, tiny_models.SDXL_NAME, "sdxl", "main")
    return main, install_tiny(invokeai_url, tiny_models.SDXL_VAE_NAME, "sdxl", "vae")


@pytest.fixture(scope="session")
def tiny_sd1_lora(invokeai_url: str) -> IvkDnnModel:
    """A tiny SD1.5 LoRA (one Kohya-format safetensors file) for the tiny SD1.5 model."""
    return install_tiny(
        invokeai_url, tiny_models.SD1_LORA_NAME, "sd-1", "lora", file=tiny_models.SD1_LORA_FILE
    )


@pytest.fixture(scope="session")
def tiny_sd1_controlnet(invokeai_url: str) -> IvkDnnModel:
    """A tiny SD1.5 ControlNet (diffusers folder) shaped like the tiny SD1.5 UNet's encoder."""
    return install_tiny(invokeai_url, tiny_models.SD1_CONTROLNET_NAME, "sd-1", "controlnet")


@pytest.fixture(scope="session")
def tiny_sdxl_controlnet(invokeai_url: str) -> IvkDnnModel:
    """A tiny SDXL ControlNet (diffusers folder) shaped like the tiny SDXL UNet's encoder."""
    return install_tiny(invokeai_url, tiny_models.SDXL_CONTROLNET_NAME, "sdxl", "controlnet")


@pytest.fixture(scope="session")
def tiny_upscaler(invokeai_url: str) -> IvkDnnModel:
    """A tiny 2x ESRGAN (one ``.safetensors`` file) that spandrel loads: base any."""
    return install_tiny(
        invokeai_url,
        tiny_models.UPSCALER_NAME,
        "any",
        "spandrel_image_to_image",
        file=tiny_models.UPSCALER_FILE,
    )


@pytest.fixture(scope="session")
def tiny_sd1_ip_adapter(invokeai_url: str) -> IvkDnnModel:
    """A tiny SD1.5 IP-Adapter (one ``.safetensors`` file), with the tiny CLIP image encoder
    installed under the name the ``ip_adapter`` node looks for (so it downloads nothing)."""
    install_tiny(
        invokeai_url,
        tiny_models.IMAGE_ENCODER_NAME,
        "any",
        "clip_vision",
        file=tiny_models.IMAGE_ENCODER_DIR,
    )
    return install_tiny(
        invokeai_url,
        tiny_models.SD1_IP_ADAPTER_NAME,
        "sd-1",
        "ip_adapter",
        file=tiny_models.SD1_IP_ADAPTER_FILE,
    )


@pytest.fixture(scope="session")
def tiny_sd3(invokeai_url: str) -> IvkDnnModel:
    """A tiny SD3 pipeline (CLIP-L, CLIP-G and T5 encoders, transformer, 16-channel VAE): the
    SD3 model loader node takes every submodel from it."""
    return install_tiny(invokeai_url, tiny_models.SD3_NAME, "sd-3", "main")


@pytest.fixture(scope="session")
def tiny_cogview4(invokeai_url: str) -> IvkDnnModel:
    """A tiny CogView4 pipeline (GLM text encoder, transformer, 16-channel VAE)."""
    return install_tiny(invokeai_url, tiny_models.COGVIEW4_NAME, "cogview4", "main")


@pytest.fixture(scope="session")
def tiny_wan_t2v(invokeai_url: str) -> IvkDnnModel:
    """A tiny Wan 2.2 T2V-A14B pipeline: two experts, UMT5 encoder, the 16-channel Wan VAE."""
    return install_tiny(invokeai_url, tiny_models.WAN_T2V_NAME, "wan", "main")


@pytest.fixture(scope="session")
def tiny_wan_i2v(invokeai_url: str) -> IvkDnnModel:
    """A tiny Wan 2.2 I2V-A14B pipeline: like the T2V one, its experts taking 36 channels."""
    return install_tiny(invokeai_url, tiny_models.WAN_I2V_NAME, "wan", "main")


@pytest.fixture(scope="session")
def tiny_wan_ti2v(invokeai_url: str) -> IvkDnnModel:
    """A tiny Wan 2.2 TI2V-5B pipeline: one transformer on the 48-channel Wan 2.2 VAE."""
    return install_tiny(invokeai_url, tiny_models.WAN_TI2V_NAME, "wan", "main")


@pytest.fixture(scope="session")
def tiny_wan_loras(invokeai_url: str) -> tuple[IvkDnnModel, IvkDnnModel]:
    """Two tiny Wan LoRAs (PEFT ``.safetensors`` files), tagged for the high- and the
    low-noise expert by their names."""
    return (
        install_tiny(
            invokeai_url,
            tiny_models.WAN_LORA_HIGH_NAME,
            "wan",
            "lora",
            file=tiny_models.WAN_LORA_HIGH_FILE,
        ),
        install_tiny(
            invokeai_url,
            tiny_models.WAN_LORA_LOW_NAME,
            "wan",
            "lora",
            file=tiny_models.WAN_LORA_LOW_FILE,
        ),
    )


@pytest.fixture(scope="session")
def tiny_wan_concept_lora(invokeai_url: str) -> IvkDnnModel:
    """A tiny Wan LoRA named for neither expert, so the LoRA loaders apply it to both."""
    return install_tiny(
        invokeai_url,
        tiny_models.WAN_CONCEPT_LORA_NAME,
        "wan",
        "lora",
        file=tiny_models.WAN_CONCEPT_LORA_FILE,
    )
