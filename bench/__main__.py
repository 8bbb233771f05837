import os
import sys

# mmengine imports pkg_resources, whose deprecation warning would open every command's output
# (and every job's log: the variable reaches the job processes).
os.environ.setdefault("PYTHONWARNINGS", "ignore:pkg_resources is deprecated:UserWarning")
if "ignore:pkg_resources" in os.environ["PYTHONWARNINGS"]:
    import warnings

    warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)

from bench.cli import main  # noqa: E402

sys.exit(main())
