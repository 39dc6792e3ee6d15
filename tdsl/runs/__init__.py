"""Runs on disk and the command line: run directories (`run`, `resume`, `eval`,
`predict`), the `tdsl` CLI, the `--nproc` launcher and plots."""
