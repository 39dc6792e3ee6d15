"""`python -m tdsl ...`, which is also what torchrun starts in each process of a
data-parallel run (`torchrun ... -m tdsl run spec.yaml`)."""

import os
import sys

from tdsl.runs.cli import main
from tdsl.runs.launcher import adopt_launcher_path

adopt_launcher_path()  # a worker of `--nproc N` imports user code from where its launcher did
if "TORCHELASTIC_ERROR_FILE" in os.environ:
    # Started by torchrun: an uncaught error is recorded for the launcher's failure report.
    from torch.distributed.elastic.multiprocessing.errors import record

    main = record(main)

sys.exit(main())
