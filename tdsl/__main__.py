"""`python -m tdsl ...`, which is also what torchrun starts in each process of a
data-parallel run (`torchrun ... -m tdsl run spec.yaml`)."""

import os
import sys

from tdsl.runs.cli import main

if "TORCHELASTIC_ERROR_FILE" in os.environ:
    # Started by torchrun: an uncaught error is recorded for the launcher's failure report.
    from torch.distributed.elastic.multiprocessing.errors import record

    main = record(main)

sys.exit(main())
