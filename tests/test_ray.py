"""Ray Data integration: annotate() on 2 CPU actors equals nlp.pipe in one process row for row
(pyarrow and pandas batches, Parquet round trip), a crashed actor is restarted and its batch
retried (every row once), run_cli (JSONL in, Parquet out, input order) and driver-side errors."""

from __future__ import annotations

import json
import os
import random
import sys

import pytest

pytest.importorskip("ray.data")
pq = pytest.importorskip("pyarrow.parquet")

import ray  # noqa: E402
import ray.data  # noqa: E402
import spacy  # noqa: E402
from helpers import WORDS  # noqa: E402

from spacy_gliner.cli.errors import CLIError  # noqa: E402
from spacy_gliner.integrations.ray import (  # noqa: E402
    SPAN_COLUMNS,
    GLiNERAnnotator,
    annotate,
    run_cli,
)

LABELS = ["person", "location", "organization"]
THRESHOLD = 0.45
CRASH_MARKER = "SPACY_GLINER_TEST_CRASH_MARKER"


def _texts() -> list:
    rng = random.Random(0)
    texts: list = [
        "Barack Obama was born in Hawaii and visited Paris in 2009.",
        "Google and Apple are companies in New York; Mary works at Google.",
        "",
        None,
    ]
    texts += [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(36)]
    return texts


TEXTS = _texts()


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        object_store_memory=200 * 1024**2,
        log_to_driver=False,
    )
    # The crashing annotator below lives in this test module, which actors cannot import.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def expected(default_checkpoint) -> dict[int, tuple[list, list]]:
    """Row id -> ((start, end, label) spans, scores) from nlp.pipe in this process."""
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner",
        config={"model": str(default_checkpoint), "labels": LABELS, "threshold": THRESHOLD},
    )
    out = {}
    for i, doc in enumerate(nlp.pipe([t or "" for t in TEXTS])):
        group = doc.spans["sc"]
        out[i] = (
            [(s.start_char, s.end_char, s.label_) for s in group],
            list(group.attrs["scores"]),
        )
    assert sum(len(spans) for spans, _ in out.values()) > 20  # not a vacuous comparison
    return out


def _dataset():
    return ray.data.from_items(
        [{"id": i, "text": t, "tag": f"t{i}", "weight": i / 2} for i, t in enumerate(TEXTS)],
        override_num_blocks=8,
    )


def _assert_rows_match(rows: list[dict], expected) -> None:
    assert sorted(row["id"] for row in rows) == list(range(len(TEXTS)))  # every row exactly once
    for row in rows:
        i = row["id"]
        assert (row["text"], row["tag"], row["weight"]) == (TEXTS[i], f"t{i}", i / 2)
        spans, scores = expected[i]
        found = list(zip(row["spans_start"], row["spans_end"], row["spans_label"]))
        assert found == spans, f"row {i}"
        assert list(row["spans_score"]) == pytest.approx(scores, abs=1e-5)


def test_annotate_matches_nlp_pipe_through_parquet(
    local_ray, default_checkpoint, expected, tmp_path
):
    annotated = annotate(
        _dataset(), default_checkpoint, labels=LABELS, threshold=THRESHOLD, batch_size=5
    )
    annotated.write_parquet(str(tmp_path / "out"))
    table = pq.read_table(tmp_path / "out")
    assert table.column_names == ["id", "text", "tag", "weight", *SPAN_COLUMNS]
    for name in ("spans_start", "spans_end"):
        assert str(table.schema.field(name).type) == "list<element: int64>"
    assert str(table.schema.field("spans_label").type) == "list<element: string>"
    assert str(table.schema.field("spans_score").type) == "list<element: double>"
    _assert_rows_match(table.to_pylist(), expected)


def test_pandas_batches_match(local_ray, default_checkpoint, expected):
    annotated = annotate(
        _dataset(),
        default_checkpoint,
        labels=LABELS,
        threshold=THRESHOLD,
        batch_size=7,
        batch_format="pandas",
    )
    _assert_rows_match(annotated.take_all(), expected)


class CrashOnce(GLiNERAnnotator):
    """Kills its actor process on the first batch of the whole run (the marker file is created
    atomically, so exactly one batch, in one actor, crashes)."""

    def __call__(self, batch):
        try:
            fd = os.open(os.environ[CRASH_MARKER], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return super().__call__(batch)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(1)


def test_crashed_actor_is_restarted_and_batch_retried(
    local_ray, default_checkpoint, expected, tmp_path
):
    marker = tmp_path / "crashed"
    annotated = annotate(
        _dataset(),
        default_checkpoint,
        labels=LABELS,
        threshold=THRESHOLD,
        batch_size=5,
        max_restarts=2,
        max_task_retries=2,
        annotator_cls=CrashOnce,
        runtime_env={"env_vars": {CRASH_MARKER: str(marker)}},
    )
    rows = annotated.take_all()
    assert marker.exists()  # an actor did die
    _assert_rows_match(rows, expected)


def test_run_cli_jsonl_to_parquet_in_order(
    local_ray, default_checkpoint, expected, tmp_path, capsys
):
    source = tmp_path / "in.jsonl"
    records = [{"id": i, "body": t, "tag": f"t{i}", "weight": i / 2} for i, t in enumerate(TEXTS)]
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    context = ray.data.DataContext.get_current()
    before = context.execution_options.preserve_order
    try:
        code = run_cli(
            source, out, str(default_checkpoint), LABELS, threshold=THRESHOLD, text_column="body"
        )
    finally:
        context.execution_options.preserve_order = before
    assert code == 0
    assert f"{len(TEXTS)} rows annotated" in capsys.readouterr().out
    rows = pq.read_table(out).to_pylist()
    assert [row["id"] for row in rows] == list(range(len(TEXTS)))  # input order
    for row in rows:
        row["text"] = row.pop("body")
    _assert_rows_match(rows, expected)
    with pytest.raises(CLIError, match="not empty"):
        run_cli(source, out, str(default_checkpoint), LABELS)


def test_bad_model_or_labels_fail_in_the_driver(default_checkpoint, tmp_path):
    dataset = object()  # never reached: the checks come before map_batches
    with pytest.raises(ValueError, match="give labels"):
        annotate(dataset, default_checkpoint)
    with pytest.raises(ValueError, match="no such model directory"):
        annotate(dataset, tmp_path / "missing", labels=LABELS)
    (tmp_path / "in.csv").write_text("text\nhello\n")
    with pytest.raises(CLIError, match=r"\.parquet"):
        run_cli(tmp_path / "in.csv", tmp_path / "out", str(default_checkpoint), LABELS)
