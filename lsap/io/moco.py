"""MoCo v2 ResNet-50 checkpoints (``moco_v2_800ep_pretrain.pth.tar``, e4e's ``moco_v2_800ep_pretrain.pt``).

The file is a dict ``{'epoch', 'arch', 'state_dict', 'optimizer'}`` saved from MoCo's
DistributedDataParallel model: the query encoder's torchvision ResNet-50 sits under
``module.encoder_q.``, its projection head (``fc.0`` / ``fc.2``, the MLP of MoCo v2) under
``module.encoder_q.fc.``; a training checkpoint also holds the momentum encoder
(``module.encoder_k.``) and the queue (``module.queue``, ``module.queue_ptr``). The similarity
term keeps the query encoder without its head, as e4e does. A plain torchvision ``resnet50`` state
dict (keys at the top level, or under ``module.`` / ``encoder_q.``) is read the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from lsap.core.errors import CheckpointError
from lsap.io.checkpoints import read_torch_file
from lsap.nets.resnet_features import ResNet50Features

# Where the ResNet-50 can sit in the file, most specific first.
TRUNK_PREFIXES = ("module.encoder_q.", "encoder_q.", "module.", "")
HEAD = "fc."  # MoCo's projection head (or torchvision's classifier): not part of the features
WHAT = "MoCo v2 ResNet-50 weights"


def read_moco_trunk(path: str | Path) -> dict[str, Tensor]:
    """The ResNet-50 of a MoCo checkpoint, as torchvision ``resnet50`` keys without ``fc.*``.

    Args:
        path: the checkpoint (``asset:<name>`` allowed).

    Raises:
        CheckpointError: missing, unreadable or unsafe file, or no ResNet-50 found in it.
    """
    from lsap.assets import resolve

    path = resolve(path)
    if not path.is_file():
        raise CheckpointError(path, f"no such file ({WHAT})")
    obj = read_torch_file(path)
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping):
        raise CheckpointError(path, f"not {WHAT} (no state dict in the file)")
    prefix = next((p for p in TRUNK_PREFIXES if f"{p}conv1.weight" in state), None)
    if prefix is None:
        first = ", ".join(repr(k) for k in list(state)[:3])
        raise CheckpointError(
            path,
            f"not {WHAT} (no conv1.weight under module.encoder_q., encoder_q., module. or at the "
            f"top level; keys start {first or 'nowhere: empty'})",
        )
    n = len(prefix)
    return {
        k[n:]: v
        for k, v in state.items()
        if k.startswith(prefix) and not k[n:].startswith(HEAD) and isinstance(v, Tensor)
    }


def load_moco_resnet50(path: str | Path) -> ResNet50Features:
    """A :class:`ResNet50Features` with the weights of a MoCo checkpoint; eval mode, frozen.

    Raises:
        CheckpointError: as :func:`read_moco_trunk`, or the tensors do not fit torchvision's
            ResNet-50 (the message names the first missing, unexpected or mis-shaped key).
    """
    from lsap.assets import resolve

    trunk = read_moco_trunk(path)
    with torch.device("meta"):  # shapes only: every tensor comes from the file
        net = ResNet50Features()
    expected = net.state_dict()
    # batch-norm step counters are bookkeeping: files written without them are still complete
    counters = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in trunk and k not in counters]
    unexpected = [k for k in trunk if k not in expected]
    wrong = [k for k in trunk if k in expected and trunk[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        if missing:
            problem = f"missing {missing[0]!r} ({len(missing)} keys missing)"
        elif unexpected:
            problem = f"unexpected {unexpected[0]!r} ({len(unexpected)} keys unexpected)"
        else:
            k = wrong[0]
            problem = f"{k!r} is {list(trunk[k].shape)}, expected {list(expected[k].shape)}"
        raise CheckpointError(resolve(path), f"not {WHAT}: does not fit ResNet-50 ({problem})")
    state = {k: v.float() if v.is_floating_point() else v for k, v in trunk.items()}
    state |= {k: torch.zeros((), dtype=torch.long) for k in counters - set(state)}
    net.load_state_dict(state, assign=True)
    return net.eval().requires_grad_(False)
