"""``banditlp replay evaluate | publish``: off-policy evaluation of other policies from logged decisions.

``evaluate`` reads a topic namespace's logs from Kafka (``--from-prefix``, ``streams.replay.read``)
or a logged dataset (``--dataset obd``), estimates each target policy with every estimator of
``evaluation.ope`` (``streams.replay.estimate``) and writes ``OUT/ope.json``, a table and
``OUT/report.html``. ``publish`` writes a logged dataset onto Kafka in the pipeline's schemas
(``streams.replay.publish``), so that ``evaluate --from-prefix`` reads it back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from banditlp.errors import BanditLPError
from streams.cli.common import console, fail, settings_of

replay_app = typer.Typer(
    help="Replay logged decisions: estimate other policies' reward and budget use (off-policy evaluation).",
    no_args_is_help=True,
)

DATASETS = ("obd",)
DEFAULT_POLICIES = {"kafka": "logged,nn_lp,greedy,uniform", "obd": "uniform,bts"}
OPE_JSON = "ope.json"

CampaignOpt = typer.Option("all", help="Open Bandit Dataset campaign: all, men or women.")
BehaviorOpt = typer.Option("random", help="Open Bandit Dataset logging policy: random or bts.")
RowsOpt = typer.Option(None, min=1, help="Only the dataset's first ROWS rows (its click model is fitted on all).")
CacheOpt = typer.Option(None, help="Where the dataset is cached (default: beside the settings' state dir, obd/).")
SeedOpt = typer.Option(0, help="Seed of the bootstrap, the click model's folds and bts's simulation.")


def _cache_dir(settings: Any, cache_dir: Path | None) -> Path:
    """The dataset cache: the option, else ``obd/`` beside the settings' state dir (``~/.cache/banditlp/obd``)."""
    return cache_dir if cache_dir is not None else Path(settings.state_dir).parent / "obd"


def _obd_root(settings: Any, cache_dir: Path | None) -> Path:
    from evaluation.datasets.errors import DatasetError
    from evaluation.datasets.obd_fetch import fetch_obd
    from streams.replay.errors import ReplayInputError

    try:
        return fetch_obd(_cache_dir(settings, cache_dir))
    except DatasetError as exc:
        raise ReplayInputError(f"the Open Bandit Dataset is not available: {exc}") from exc


def _dataset_log(name: str, root: Path, behavior: str, campaign: str, rows: int | None, seed: int) -> Any:
    from streams.replay.errors import ReplayInputError
    from streams.replay.obd import load_obd_log, obd_replay_log

    if name not in DATASETS:
        raise ReplayInputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return obd_replay_log(*load_obd_log(root, behavior, campaign, rows=rows, seed=seed))


def _table(document: dict[str, Any]) -> Table:
    """One row per (policy, estimator): the reward and the unsubscriptions per decision, with intervals."""
    table = Table(title=f"Off-policy estimates per logged decision ({document['logged']['n']} decisions)")
    for column in ("policy", "estimator", "reward", "reward 95% CI", "unsubs", "unsubs 95% CI"):
        table.add_column(column, justify="left" if column in ("policy", "estimator") else "right")
    logged = document["logged"]
    table.add_row("logged", "observed", f"{logged['reward']:.4g}", "", f"{logged['unsubscription']:.4g}", "")
    for policy, entry in document["policies"].items():
        off = entry["unsupported_share"]
        label = f"{policy} ({off:.0%} off support)" if off > 0 else policy
        for estimator in entry["reward"]:
            cells = []
            for outcome in ("reward", "unsubscription"):
                e = entry[outcome][estimator]
                cells += [f"{e['value']:.4g}", f"[{e['ci'][0]:.4g}, {e['ci'][1]:.4g}]"]
            table.add_row(label, estimator, *cells)
            label = ""
    return table


@replay_app.command("evaluate")
def evaluate(
    ctx: typer.Context,
    from_prefix: str | None = typer.Option(None, "--from-prefix", help="Read the logs of this topic prefix."),
    dataset: str | None = typer.Option(None, "--dataset", help="Or evaluate on a logged dataset: obd."),
    campaign: str = CampaignOpt,
    behavior: str = BehaviorOpt,
    policy: str | None = typer.Option(
        None, "--policy", help="Target policies, comma list (logged, nn_lp, greedy, uniform, bts)."
    ),
    out: Path = typer.Option(..., "--out", help="Directory for ope.json and report.html."),
    bootstrap: int = typer.Option(500, "--bootstrap", min=2, help="Bootstrap resamples of the rounds."),
    alpha: float = typer.Option(0.05, "--alpha", help="1 - the intervals' level, in (0, 1)."),
    seed: int = SeedOpt,
    rows: int | None = RowsOpt,
    solver: str = typer.Option("auto", help="nn_lp's LP solver: auto, highs or dual (as the allocator's)."),
    missing_feedback: str = typer.Option(
        "exclude",
        help="A sent item without feedback: exclude its decision, or zero (no conversion, no unsubscription).",
    ),
    n_sim: int = typer.Option(100_000, min=1, help="Monte Carlo draws of bts's action distribution."),
    cache_dir: Path | None = CacheOpt,
    timeout_s: float = typer.Option(300.0, help="Longest read of each topic."),
) -> None:
    """Estimate target policies from logged decisions with IPS, SNIPS, DM, DR, Switch-DR and DRos."""
    from evaluation.reporting import write_report
    from streams.kafka.topics import TopicNames
    from streams.replay.errors import ReplayInputError
    from streams.replay.estimate import evaluate_log
    from streams.replay.read import read_log
    from streams.replay.targets import TargetSettings

    settings = settings_of(ctx)
    try:
        if (from_prefix is None) == (dataset is None):
            raise ReplayInputError("give exactly one of --from-prefix PREFIX and --dataset NAME")
        if rows is not None and dataset is None:
            raise ReplayInputError("--rows takes a dataset's first rows: it needs --dataset")
        if dataset is not None and dataset not in DATASETS:
            raise ReplayInputError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
        names = tuple(v.strip() for v in (policy or DEFAULT_POLICIES[dataset or "kafka"]).split(",") if v.strip())
        root = _obd_root(settings, cache_dir) if dataset is not None or "bts" in names else None
        if dataset is not None:
            assert root is not None
            log = _dataset_log(dataset, root, behavior, campaign, rows, seed)
            source: dict[str, Any] = {"kind": "dataset", "dataset": dataset, "behavior": behavior, "campaign": campaign}
            source["rows"] = log.n_rounds
        else:
            assert from_prefix is not None
            with console.status(f"reading the logs of {from_prefix}* (read_committed) ..."):
                log = read_log(
                    settings.connection,
                    settings.serde(),
                    TopicNames(from_prefix),
                    timeout_s=timeout_s,
                    missing_feedback=missing_feedback,  # type: ignore[arg-type]
                )
            source = {"kind": "kafka", "prefix": from_prefix, "kafka": settings.bootstrap}
        target_settings = TargetSettings(solver=solver, dataset_root=root, campaign=campaign, n_sim=n_sim, seed=seed)
        with console.status(f"estimating {', '.join(names)} on {log.n_rounds} decisions ..."):
            result = evaluate_log(
                log, names, settings=target_settings, n_bootstrap=bootstrap, alpha=alpha, seed=seed, source=source
            )
        document = result.as_json()
        out.mkdir(parents=True, exist_ok=True)
        (out / OPE_JSON).write_text(json.dumps(document, indent=2))
        console.print(_table(document))
        join = document["join"]
        left_out = {
            k: v
            for k, v in join.items()
            if isinstance(v, int) and v and k not in ("decisions", "rounds", "feedback_joined")
        }
        if left_out or join["invalid_records"]:
            console.print(f"[yellow]join:[/] {left_out} invalid records {join['invalid_records']}")
        console.print(f"ope.json: {out / OPE_JSON}")
        console.print(f"report: {write_report(out)}")
    except BanditLPError as exc:
        fail(exc)


@replay_app.command("publish")
def publish(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="The logged dataset: obd."),
    prefix: str = typer.Option(..., "--prefix", help="Topic prefix to publish under (topics are created)."),
    campaign: str = CampaignOpt,
    behavior: str = BehaviorOpt,
    rows: int | None = RowsOpt,
    seed: int = SeedOpt,
    cache_dir: Path | None = CacheOpt,
    timeout_s: float = typer.Option(120.0, help="Longest wait for the broker's acknowledgements."),
) -> None:
    """Publish a logged dataset onto Kafka as candidates, decisions, decision-contexts and feedback."""
    from streams.kafka.topics import TopicNames, create_topics, topic_specs
    from streams.replay.obd import MODEL_NAME
    from streams.replay.publish import publish_log

    settings = settings_of(ctx)
    try:
        names = TopicNames(prefix)
        log = _dataset_log(dataset, _obd_root(settings, cache_dir), behavior, campaign, rows, seed)
        create_topics(settings.connection, names, topic_specs(settings.partitions))
        with console.status(f"publishing {log.n_rounds} decisions under {prefix}* ..."):
            done = publish_log(
                settings.connection, settings.serde(), names, log, model_name=MODEL_NAME, timeout_s=timeout_s
            )
    except BanditLPError as exc:
        fail(exc)
    table = Table("topic", "records", title=f"{dataset} ({behavior}/{campaign}) published under {prefix}")
    for base, n in zip(
        ("batch-control", "candidates", "decisions", "decision-contexts", "feedback"),
        (done.batch_control, done.candidates, done.decisions, done.decision_contexts, done.feedback),
    ):
        table.add_row(names(base), str(n))
    console.print(table)
