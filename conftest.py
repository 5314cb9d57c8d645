"""Test-session setup shared by unit tests, doctests and nbval.

One thread for every numeric library, set before anything imports numpy and
inherited by the kernels nbval starts: float32 sums change with the thread
count, and one thread is also much faster on small problems.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("PYTHONHASHSEED", "0")
