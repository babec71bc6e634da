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

    device = resolve_device(cfg.device)
    G = load_generator_for_demo(cfg, device)
    # photos fill a non-square generator's valid region (generator.crop)
    crop = {"crop": G.crop} if G.crop is not None else {}
    inputs = build_data(cfg.data, resolution=G.resolution, **crop)  # bad data.path fails early
    setup = build_setup(cfg, device, G)
    results = run_demo(
        setup,
        inputs,
        cfg.paths.output_dir,
        seed=int(cfg.seed),
        batch_size=int(cfg.batch_size),
        edit_images=int(cfg.report.edit_images),
        cell_size=int(cfg.report.cell_size),
        provenance=provenance(config=cfg, generator=setup.G, seed=cfg.seed),
        started=started,
        paste=PasteMask.from_config(cfg.get("paste_back")),
    )
    print(results["summary"])
    print(f"report: {cfg.paths.output_dir}/report.html")
    return results


@hydra.main(config_path=config_dir(), config_name="demo", version_base="1.3")
@one_line_errors("lsap-demo", settings=True)
def _main(cfg: DictConfig) -> None:
    set_num_threads(cfg)  # OMP_NUM_THREADS, else physical cores less data workers
    run(cfg)


def main() -> None:
    check_config_dir("demo")
    _main()


if __name__ == "__main__":
    main()
