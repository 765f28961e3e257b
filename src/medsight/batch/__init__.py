"""Batch inference over an archive (``medsight batch``), in two modes over one predicting side
(:mod:`~medsight.batch.predict`):

* :mod:`~medsight.batch.files`: one machine (or N machines with ``--part K/N``), results in a
  JSON-lines file that a rerun resumes; ``--workers`` processes.
* :mod:`~medsight.service.batch_runs`: any number of workers on any number of machines take chunks
  from the service's database queue (PostgreSQL) and store each result there, exactly once.

The inputs are files, folders, a CSV manifest, or a DICOMweb (QIDO-RS) query
(:mod:`~medsight.batch.dicomweb`).
"""

from medsight.batch.files import BatchSummary, inputs_from_manifest, list_inputs, read_done, run_batch

__all__ = ["BatchSummary", "run_batch", "read_done", "inputs_from_manifest", "list_inputs"]
