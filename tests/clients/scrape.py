"""Scrapes a Redraft node's metrics endpoint and parses it with Prometheus's own OpenMetrics
parser (prometheus_client). Prints one sample per line, `name{label="value",...} number`, labels
sorted, so the Rust test reads what a Prometheus server would store.

Usage: scrape.py http://127.0.0.1:PORT/metrics
"""

import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
    content_type = response.headers.get("Content-Type", "")
    text = response.read().decode("utf-8")
if not content_type.startswith("application/openmetrics-text"):
    sys.exit(f"unexpected content type {content_type!r}")
for family in text_string_to_metric_families(text):
    for sample in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
        print(f"{sample.name}{{{labels}}} {sample.value}")
