"""docs/operations.md and docs/grafana-dashboard.json name the metrics Parley exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from parley.services import Services
from tests.conftest import asgi_client

DOCS = Path(__file__).resolve().parents[2] / "docs"


async def exposed(svc: Services) -> dict[str, str]:
    """Every metric family a scrape declares (samples or not), with its type."""
    async with asgi_client(svc) as http:
        text = (await http.get("/metrics")).text
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def series_names(families: dict[str, str]) -> set[str]:
    """The names queries can use, as the text format writes them."""
    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_sum", "_count"],
        "info": ["_info"],
        "gauge": [""],
    }
    return {name + suffix for name, kind in families.items() for suffix in suffixes[kind]}


async def test_every_parley_metric_is_documented(services: Services) -> None:
    doc = (DOCS / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(parley_\w+)` \|", doc, re.M))
    # As a query names them: counters with _total, histograms by their base name.
    suffix = {"counter": "_total", "info": "_info", "gauge": "", "histogram": ""}
    expected = {
        name + suffix[kind]
        for name, kind in (await exposed(services)).items()
        if name.startswith("parley_")
    }
    assert documented == expected


async def test_the_dashboard_queries_only_exposed_metrics(services: Services) -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert len(exprs) > 20
    used = {name for expr in exprs for name in re.findall(r"\b((?:parley|process)_\w+)", expr)}
    missing = used - series_names(await exposed(services))
    assert not missing, missing
    # Every panel has a unique id and a place; every query a data source variable.
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
