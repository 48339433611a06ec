"""The admin listener: health endpoints and Prometheus metrics."""

from __future__ import annotations

import re

import pytest

from harness import http_get

METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+\d+)?$")


def parse_metrics(text: str) -> list[tuple[str, str, float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        assert m, f"not Prometheus text format: {line!r}"
        value = m.group(3)
        out.append((m.group(1), m.group(2) or "", float(value)))
    return out


def request_total(samples) -> float:
    return sum(v for name, _, v in samples if "request" in name and (name.endswith("_total") or name.endswith("_count")))


@pytest.mark.parametrize("path", ["/health/live", "/health/ready"])
def test_health(server, path):
    resp = http_get(server.admin_endpoint + path)
    assert resp.status == 200, resp


def test_metrics_count_requests(server, s3, bucket):
    before = http_get(server.admin_endpoint + "/metrics")
    assert before.status == 200, before
    ctype = before.header("content-type") or ""
    assert ctype.startswith("text/plain") or ctype.startswith("application/openmetrics-text"), ctype
    samples_before = parse_metrics(before.body.decode())

    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"m{i}", Body=b"x" * 1000)
        s3.get_object(Bucket=bucket, Key=f"m{i}")["Body"].read()
    with pytest.raises(Exception):
        s3.get_object(Bucket=bucket, Key="missing")

    after = http_get(server.admin_endpoint + "/metrics")
    text = after.body.decode()
    samples = parse_metrics(text)
    assert "# TYPE" in text
    assert request_total(samples) >= request_total(samples_before) + 11, text[:3000]
    # Requests by operation and status, bytes in/out, latency histograms (issue 2, item 8).
    labels = " ".join(lbl for name, lbl, _ in samples if "request" in name)
    assert re.search(r"(operation|op|method|endpoint)=\"", labels), labels[:2000]
    assert re.search(r"(status|code)=\"", labels), labels[:2000]
    assert any("byte" in name for name, _, _ in samples), "no bytes in/out metric"
    assert any(name.endswith("_bucket") and 'le="' in lbl for name, lbl, _ in samples), "no latency histogram"
