"""Chain the stages of multi-stage methods, each its own ``python -m wseg fit`` run, restartable.

    python -m wseg.pipeline <command> --help

Every module of this package that defines ``COMMAND`` is a chain, with a typed Python API:

- ``HELP``: one line for the command list;
- ``SETTINGS``: the named settings (experiment YAMLs) it can run;
- ``run_chain(setting, out, overrides, **options)``: run or resume the chain; ``overrides`` go to
  every fit, ``stage_overrides`` (stage name -> arguments) to one fit only;
- ``fit_stages(setting, **options)``: the fits ``run_chain`` runs with those options (what
  ``--STAGE.KEY=VALUE`` arguments and sweeps are checked against).

`wseg.pipeline.stages` holds the shared machinery: a stage whose ``final.ckpt`` exists is skipped,
so a rerun resumes, and a stage whose folder holds a finished run of other settings runs in a
folder of its own, and so do the stages after it (what a W&B sweep over a chain needs). The
command line, the only argparse code of the package, is `wseg.pipeline.__main__`.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def commands() -> dict[str, ModuleType]:
    """The pipeline chains by command name: every module here that defines ``COMMAND``."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "COMMAND"):
            found[module.COMMAND] = module
    return dict(sorted(found.items()))
