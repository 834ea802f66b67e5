"""Profile and validate stages: Nsight Compute metrics of selected cells (``flashcore profile``) and
compute-sanitizer runs of the project's kernels (``flashcore validate``). Command building and output
parsing live in small modules (``ncu``, ``sanitizer``) that are unit-tested on canned text; ``cli`` holds
the typer commands."""
