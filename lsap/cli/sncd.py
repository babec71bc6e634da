"""``lsap-sncd``: per-layer and total SNCD of a file of latent codes (or of generator samples)."""

from __future__ import annotations

import logging

import hydra
import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from lsap.alignment import sncd_batched
from lsap.alignment.anchors import anchors_from_config
from lsap.cli._common import check_config_dir, config_dir, one_line_errors, resolve_device
from lsap.cli._threads import set_num_threads
from lsap.core.plain import plain
from lsap.core.provenance import provenance
from lsap.io import atomic_write_json, generator_from_config, load_codes
from lsap.nets import iter_w

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Score codes with SNCD; print a table, write ``cfg.output`` (JSON), return the results."""
    c = plain(
        cfg, throw_on_missing=True
    )  # the one reading of the config: plain values from here on
    set_num_threads(data_workers=0, cpu_processes=1)  # OMP_NUM_THREADS, else physical cores
    seed, batch_size = int(c["seed"]), int(c["batch_size"])
    device = resolve_device(c["device"])
    G = generator_from_config(c["generator"], device)
    anchors = anchors_from_config(G, c["alignment"])
    if c["codes"]:
        codes = load_codes(c["codes"], G.num_ws, G.w_dim)
        source = str(c["codes"])
    else:
        num = int(c["num_codes"])
        codes = torch.cat(list(iter_w(G, num, seed=seed, batch_size=batch_size)))
        source = f"{num} samples of the generator (seed {seed})"
    total, per_layer = sncd_batched(G, codes, anchors, batch_size=batch_size)
    expected = [1.0 - float(x.norm()) for x in anchors]
    results = {
        "codes": source,
        "num_codes": int(total.shape[0]),
        "sncd": float(total.mean()),
        "sncd_std": float(total.std()) if total.numel() > 1 else 0.0,
        "sncd_layer_mean": float(total.mean()) / G.num_ws,
        "per_layer": [float(x) for x in per_layer.mean(0)],
        "sampled_expectation_per_layer": expected,
        "definition": "SNCD = sum over w+ layers of 1 - cos(n_i, a_i); sncd_layer_mean = SNCD / num_ws",
        "provenance": provenance(config=c, generator=G, seed=seed),
    }
    _print_table(results)
    atomic_write_json(c["output"], results)
    log.info("wrote %s", c["output"])
    return results


def _print_table(r: dict) -> None:
    table = Table(title=f"SNCD of {r['codes']}")
    table.add_column("w+ layer", justify="right")
    table.add_column("SNCD_i (mean)", justify="right")
    table.add_column("samples' expectation", justify="right")
    for i, (v, e) in enumerate(
        zip(r["per_layer"], r["sampled_expectation_per_layer"], strict=True)
    ):
        table.add_row(str(i), f"{v:.4f}", f"{e:.4f}")
    table.add_section()
    table.add_row(
        "total",
        f"{r['sncd']:.4f} ± {r['sncd_std']:.4f}",
        f"{sum(r['sampled_expectation_per_layer']):.4f}",
    )
    Console().print(table)


@hydra.main(config_path=config_dir(), config_name="sncd", version_base="1.3")
@one_line_errors("lsap-sncd")
def _main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    check_config_dir("sncd")
    _main()


if __name__ == "__main__":
    main()
