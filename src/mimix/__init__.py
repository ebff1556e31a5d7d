"""MIMIX workflow: reusable logic called by the Snakemake step scripts.

Every module is named after the step it serves (readers, design, validation,
filtering, simulate, ...) and holds small pure functions; the scripts under
``workflow/scripts`` only read inputs, call into this package and write outputs.
"""

__version__ = "0.1.0"
