"""The ``prepare`` stage's work on one subject, in a worker process, with its content-keyed cache
(stage helpers; the prepared cohort on disk is :mod:`pipeline.cohort.store`)."""
