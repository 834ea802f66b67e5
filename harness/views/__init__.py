"""Showing results: terminal tables, CSV/Parquet export and the offline HTML dashboards."""
