"""Images every replica shares: FLUXROUTE_IMAGES_DIR is where generated images land (unset: FLUXROUTE_HOME/images),
and each saved image and its stored result say which replica (process) wrote them."""

from __future__ import annotations

from pathlib import Path

from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.store.images import read_parameters
from fluxroute.store.leases import this_process
from fluxroute.types import GenerationResult, ImageRequest
from tests.fakes.krea import KreaFake


def test_images_dir_defaults_to_images_under_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert Settings(home=home).images_dir == home / "images"
    assert Settings(home=home, images_dir=None).images_dir == home / "images"
    loaded = Settings.load(environ={"FLUXROUTE_CONFIG": "none", "FLUXROUTE_HOME": str(home)})
    assert loaded.images_dir == home / "images"
    shared = tmp_path / "shared"
    named = Settings.load(
        environ={"FLUXROUTE_CONFIG": "none", "FLUXROUTE_HOME": str(home), "FLUXROUTE_IMAGES_DIR": str(shared)}
    )
    assert named.images_dir == shared and named.home == home


async def test_images_land_in_the_images_dir_and_record_the_replica_that_wrote_them(
    hosted_settings: Settings, krea_fake: KreaFake, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-images"
    settings = Settings.load(
        environ={
            "FLUXROUTE_CONFIG": "none",
            "FLUXROUTE_HOME": str(hosted_settings.home),
            "FLUXROUTE_IMAGES_DIR": str(shared),
            "KREA_API_TOKEN": krea_fake.token,
            "FLUXROUTE_KREA_BASE_URL": krea_fake.base_url,
        }
    )
    router = Router(settings)
    try:
        result = await router.generate(ImageRequest.parse({"prompt": "a lighthouse at dusk", "model": "flux-dev"}))
    finally:
        await router.aclose()

    me = str(this_process())
    assert result.replica == me
    [image] = result.images
    path = Path(str(image.path))
    assert path.parent == shared and path.is_file()
    assert not (hosted_settings.home / "images").exists()
    assert read_parameters(path)["replica"] == me
    stored = router.store.get_job(result.job_id).result
    assert stored is not None and stored["replica"] == me
    assert GenerationResult.model_validate(stored).replica == me
    before = {key: value for key, value in stored.items() if key != "replica"}  # stored by an earlier version
    assert GenerationResult.model_validate(before).replica is None
