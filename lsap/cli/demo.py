"""``lsap-demo``: LSAP end to end on the embedded toy generator (or your checkpoint and photos).

Wiring only: the pieces come from ``lsap.demo.build``, the run from ``lsap.demo.pipeline``.
"""

from __future__ import annotations

import logging
import time

import hydra
from omegaconf import DictConfig

from lsap.cli._common import check_config_dir, config_dir, one_line_errors, resolve_device
from lsap.cli._threads import set_num_threads

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Build the demo's pieces from ``cfg``, run it, return the results (``report.json``)."""
    started = time.perf_counter()
    from lsap.config import build_data
    from lsap.core.provenance import provenance
    from lsap.data.paste import PasteMask
    from lsap.demo.build import build_setup, load_generator_for_demo
    from lsap.demo.pipeline import run_demo
    from lsap.demo.settings import DemoSettings

    settings = DemoSettings.from_config(cfg)  # the one reading of the config
    set_num_threads(data_workers=0, cpu_processes=1)  # OMP_NUM_THREADS, else physical cores
    device = resolve_device(settings.device)
    G = load_generator_for_demo(settings.generator, device)
    # photos fill a non-square generator's valid region (generator.crop)
    crop = {"crop": G.crop} if G.crop is not None else {}
    inputs = build_data(settings.data, resolution=G.resolution, **crop)  # bad data.path fails early
    setup = build_setup(settings, device, G)
    results = run_demo(
        setup,
        inputs,
        settings.output_dir,
        seed=settings.seed,
        batch_size=settings.batch_size,
        edit_images=settings.edit_images,
        cell_size=settings.cell_size,
        provenance=provenance(config=settings.config, generator=setup.G, seed=settings.seed),
        started=started,
        paste=PasteMask.from_config(settings.paste_back),
    )
    print(results["summary"])
    print(f"report: {settings.output_dir}/report.html")
    return results


@hydra.main(config_path=config_dir(), config_name="demo", version_base="1.3")
@one_line_errors("lsap-demo", settings=True)
def _main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    check_config_dir("demo")
    _main()


if __name__ == "__main__":
    main()
