"""The LSAP demo and the toy-scale reproduction: invert the same images with every method, edit,
evaluate, report.

- ``inputs``: the images (held-out toy faces, ``skimage.data.astronaut()`` aligned with MTCNN,
  or a folder of the user's own);
- ``methods``: inversion by encoders (e4e, LSAP_E) and by optimisation (projector, LSAP_O);
- ``compare``: the numbers (SNCD, fidelity, FID, edits and their editability);
- ``build``: the pieces (generator, encoders, objectives, edits, metrics) from the ``demo`` config;
- ``report``: the HTML report and JSON of the demo; ``reproduce``: the reproduction's table;
- ``pipeline``: :func:`run_demo`, what ``lsap-demo`` runs.

Nothing here is imported by ``import lsap``.
"""
