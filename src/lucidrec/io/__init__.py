"""The model folder: writing and reading a trained model (:mod:`lucidrec.io.model_io`), its checksums and
per-file checks (:mod:`lucidrec.io.model_check`), and erasing forgotten users' rows (:mod:`lucidrec.io.purge`)."""
