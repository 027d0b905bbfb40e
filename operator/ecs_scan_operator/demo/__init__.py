"""The demo: an emulated AWS fleet (moto) for `--demo`, `make demo` and `make demo-cluster`."""
