"""Engines: one module (or package) per backend, the only one that imports its backend
library."""

import os

# llama.cpp's OpenMP workers spin while they wait for work (libgomp's ACTIVE
# policy). On a machine whose cores are shared that collapses decode speed
# (measured: 2 threads fell from ~45 to ~11 tokens/s under load); PASSIVE keeps
# it. libgomp reads the variable once, when llama.cpp's library is loaded, so it
# is set here, before any engine module imports the bindings. An explicit
# setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
