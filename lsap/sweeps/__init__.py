"""SNCD-weight sweeps as a result: read a multirun's jobs, tabulate and plot them, calibrate the
weight (``lsap-sweep``, ``lsap-calibrate``)."""
