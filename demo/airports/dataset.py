"""The real data: ``airports.csv`` as shipped by the vega_datasets package, read locally."""

import csv


def source_name() -> str:
    """Where the rows come from, e.g. ``vega_datasets 0.9.0: airports.csv``."""
    import vega_datasets

    return f"vega_datasets {vega_datasets.__version__}: airports.csv"


def airport_rows() -> list[dict[str, str]]:
    """Every row of the file as a dict of strings, exactly as written (no network)."""
    from vega_datasets import local_data

    with open(local_data.airports.filepath, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))
