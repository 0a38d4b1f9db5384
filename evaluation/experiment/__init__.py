"""The offline experiment (``banditlp experiment``): BanditLP against its baselines on the
simulated email world, on the same models/ and allocator/ code the streams run, without Kafka.

One module per concept:

* :mod:`.config`: the experiment's frozen configuration;
* :mod:`.seeding`: every generator from ``(seed, method, batch, purpose)``;
* :mod:`.batches`: the batches with their truth and oracle, the warm start, common outcomes;
* :mod:`.methods`: the method contract, the registry and the methods;
* :mod:`.lp`: a batch's LP on a method's scores (HiGHS, elastic fallback);
* :mod:`.metrics`: the per-batch measures, pure functions of arrays;
* :mod:`.diagnostics`: what the models believed against the truth (the budget overrun);
* :mod:`.runner`: the loop over methods, seeds, batches and sweeps;
* :mod:`.results`: ``results.json``;
* :mod:`.summary`: the figures over seeds and the terminal table.
"""

from evaluation.experiment.config import ExperimentConfig
from evaluation.experiment.methods import DEFAULT_METHODS, METHODS
from evaluation.experiment.results import RESULTS_JSON, check_results, results_document, write_results
from evaluation.experiment.runner import ExperimentRun, SeedRun, Task, run_experiment, run_seed, tasks
from evaluation.experiment.summary import MethodSummary, stack, summarise, summary_json, table_rows

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "RESULTS_JSON",
    "ExperimentConfig",
    "ExperimentRun",
    "MethodSummary",
    "SeedRun",
    "Task",
    "check_results",
    "results_document",
    "run_experiment",
    "run_seed",
    "stack",
    "summarise",
    "summary_json",
    "table_rows",
    "tasks",
    "write_results",
]
