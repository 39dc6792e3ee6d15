"""The spec language as frozen attrs classes.

Field names are the YAML keys. Classes whose op/loss/optimizer takes free keyword
arguments (`Layer`, `Loss`, `Optimizer`, `ParamGroup`, `Schedule`, `Metric`) keep them
in `args` and accept them as keywords: `Layer("linear", out_features=4)` is the YAML
`{op: linear, out_features: 4}`. Those arguments are checked against the op's signature
by the validation pass, not here. Change a spec with `attrs.evolve`.
"""

from tdsl.spec.arrays_source import PYTHON_ONLY, Arrays  # noqa: F401
from tdsl.spec.data_section import (  # noqa: F401 (the spec language, re-exported)
    PATH,
    Bundled,
    LinearRegression,
    PythonData,
    RandomData,
    Rings,
    Split,
    Target,
    TargetKind,
    Teacher,
)
from tdsl.spec.data_sources import DataSource  # noqa: F401 (re-exported)
from tdsl.spec.experiment import (  # noqa: F401 (the spec language, re-exported)
    CALL_CLASSES,
    DATA_SOURCES,
    Spec,
)
from tdsl.spec.file_sources import (  # noqa: F401 (the spec language, re-exported)
    Column,
    ImageFolder,
    ParquetTable,
    Table,
    TargetColumn,
    Tensors,
    Text,
    TimeSeries,
)
from tdsl.spec.model_section import (  # noqa: F401 (the spec language, re-exported)
    Block,
    DType,
    InitFrom,
    Initializer,
    Input,
    Layer,
    Model,
    ParamSelector,
)
from tdsl.spec.objective_section import (  # noqa: F401 (the spec language, re-exported)
    Loss,
    LossTerm,
    Metric,
    Optimizer,
    ParamGroup,
    Regularizer,
    Schedule,
)
from tdsl.spec.task_data_section import (  # noqa: F401 (re-exported)
    Addition,
    Segmentation,
    Shapes,
    TextLM,
)
from tdsl.spec.training_section import (  # noqa: F401 (the spec language, re-exported)
    DEVICE_NAME,
    Checkpoint,
    Compile,
    Device,
    EarlyStopping,
    MlflowTracking,
    Mode,
    Tracking,
    Train,
)
from tdsl.spec.values import (  # noqa: F401 (the spec language, re-exported)
    INT64_MAX,
    MAX_GENERATED_ROWS,
    MAX_SAMPLE_VALUES,
    MAX_TIMEOUT,
    as_float,
    as_floats,
    as_tuple,
    at_most_one,
    bound,
    call_args,
    each_positive,
    finite,
    non_empty,
    non_negative,
    positive,
    row_count,
)
