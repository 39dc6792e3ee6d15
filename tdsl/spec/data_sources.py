"""Every kind of data source, as the union `Spec.data` takes (tagged by `kind`)."""

from tdsl.spec.data_section import Bundled, LinearRegression, PythonData, RandomData, Rings, Teacher
from tdsl.spec.file_sources import ImageFolder, ParquetTable, Table, Tensors, Text, TimeSeries
from tdsl.spec.task_data_section import Addition, Segmentation, Shapes, TextLM

DataSource = (
    LinearRegression
    | Rings
    | RandomData
    | Teacher
    | Tensors
    | Table
    | ParquetTable
    | ImageFolder
    | Text
    | TimeSeries
    | PythonData
    | Bundled
    | TextLM
    | Addition
    | Shapes
    | Segmentation
)
