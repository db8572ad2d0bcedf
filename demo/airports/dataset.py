"""The real data: ``airports.csv`` as shipped by the vega_datasets package, read locally."""

from datapipe.sources import Reader, read_csv


def source_name() -> str:
    """Where the rows come from, e.g. ``vega_datasets 0.9.0: airports.csv``."""
    import vega_datasets

    return f"vega_datasets {vega_datasets.__version__}: airports.csv"


def airport_rows() -> Reader:
    """The rows of the file as records keyed by their IATA code: dicts of strings,
    exactly as written (no network), streamed each time they are iterated."""
    from vega_datasets import local_data

    return read_csv(local_data.airports.filepath, key="iata")
