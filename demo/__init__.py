"""The demo: the whole pipeline on procedural knee phantoms, offline (`umed-demo`).

- `demo.phantoms`: the procedural knee CT phantoms (`python -m demo.phantoms`)
- `demo.cli`: the `umed-demo` command, each stage the real console command
- `demo.report`: the report (Markdown and HTML) of a finished demo

It sits above the three pipelines (drr, model, benchmark) and is imported by none of them.
"""
