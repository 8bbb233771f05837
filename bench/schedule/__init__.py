"""Scheduling: where the planned cells run. ``local.py`` runs them on this machine as local
jobs; ``slurm.py`` submits them as job arrays and asks SLURM what became of them; ``state.py``
decides, cell by cell and under each cell's claim, what runs now; ``record.py`` keeps which job
holds which cell (``sweep.json``). bench/flow.py is the one flow that uses them."""
