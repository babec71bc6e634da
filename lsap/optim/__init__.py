"""Optimisers not in torch: Ranger (RAdam + Lookahead + gradient centralisation), as pSp/e4e/LSAP train."""

from lsap.optim.ranger import Ranger

__all__ = ["Ranger"]
