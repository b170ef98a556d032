"""Checks the monitoring files: the Grafana dashboards parse and query only metrics that the
code defines (a renamed metric would leave a panel silently empty); the Prometheus, collector
and Grafana provisioning files parse and name what they must."""

import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
failures = []

defined = set()
for source in ROOT.glob("*/src/**/*.rs"):
    defined |= set(re.findall(r'"(steadfast_[a-z_]+)"', source.read_text()))
if not defined:
    failures.append("no steadfast_* metric found in the sources")

for dashboard in sorted((ROOT / "deploy/grafana/dashboards").glob("*.json")):
    panels = json.loads(dashboard.read_text())["panels"]
    for panel in panels:
        exprs = [t["expr"] for t in panel.get("targets", [])]
        if not exprs:
            failures.append(f"{dashboard.name}: panel {panel['title']!r} has no query")
        for expr in exprs:
            for metric in re.findall(r"steadfast_[a-z_]+", expr):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                if base not in defined:
                    failures.append(f"{dashboard.name}: {panel['title']!r} queries {metric}, which no code defines")
    print(f"ok {dashboard.relative_to(ROOT)}: {len(panels)} panels")

prometheus = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
jobs = {job["job_name"] for job in prometheus["scrape_configs"]}
if jobs != {"steadfast-api", "steadfast-workers"}:
    failures.append(f"prometheus.yml scrapes {jobs}")
collector = yaml.safe_load((ROOT / "deploy/otel-collector.yaml").read_text())
if "otlp" not in collector["service"]["pipelines"]["traces"]["receivers"]:
    failures.append("otel-collector.yaml: the traces pipeline does not receive OTLP")
for provisioning in (ROOT / "deploy/grafana/provisioning").rglob("*.yaml"):
    if yaml.safe_load(provisioning.read_text()).get("apiVersion") != 1:
        failures.append(f"{provisioning}: apiVersion is not 1")
print("ok deploy/prometheus.yml, deploy/otel-collector.yaml, deploy/grafana/provisioning")

for failure in failures:
    print(failure, file=sys.stderr)
sys.exit(1 if failures else 0)
