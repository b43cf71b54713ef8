"""/metrics as tests read it, and the step attempts the database holds."""

from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

STEP_HISTOGRAM = "ledgerflow_step_duration_seconds"


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape by (name, sorted labels)."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def by_label(samples: dict, name: str, label: str, **where: str) -> Counter:
    """The values of samples ``name`` by the value of their ``label``."""
    found: Counter = Counter()
    for (sample, labels), value in samples.items():
        labels = dict(labels)
        if sample == name and all(labels.get(k) == v for k, v in where.items()):
            found[labels[label]] += value
    return found


def step_counts(samples: dict) -> Counter:
    """The step histogram's count by connector."""
    return by_label(samples, f"{STEP_HISTOGRAM}_count", "connector")


def events_by_connector(kind: str = "step.started") -> Counter:
    """Events of ``kind`` on runs' streams by their step's connector:
    ``step.started`` is one per attempt."""
    from runs.ground.models import Event
    from runs.models import Step

    connector = {
        (run, node): key
        for run, node, key in Step.objects.values_list("run_id", "node_id", "connector")
    }
    counts: Counter = Counter()
    events = Event.objects.filter(type=kind, stream__startswith="run:")
    for stream, payload in events.values_list("stream", "payload"):
        counts[connector[(int(stream.removeprefix("run:")), payload["node"])]] += 1
    return counts
