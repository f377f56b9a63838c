"""What operators install next to the daemon: alert rules, dashboard, systemd unit.

The alert rules pass ``promtool check rules`` and ``promtool test rules`` (each alert
fires on a sick series and stays quiet on a healthy one), and they and the dashboard
name only metrics webhookd exports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from webhookd import metrics

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "config" / "grafana" / "webhookd.json"
UNIT = ROOT / "config" / "systemd" / "webhookd.service"
METRIC_NAME = re.compile(r"\bwebhookd_[a-z0-9_]+")

# Per alert: a series that should fire it and one that should not, and when to look.
SCENARIOS: dict[str, tuple[dict[str, str], dict[str, str], str, str]] = {
    "WebhookdDeliverySuccessBelowTarget": (
        {'webhookd_attempts_total{outcome="delivered"}': "0+100x90",
         'webhookd_attempts_total{outcome="dead"}': "0+1x90"},
        {'webhookd_attempts_total{outcome="delivered"}': "0+1000x90",
         'webhookd_attempts_total{outcome="dead"}': "0+1x90"},
        "60m", "page",
    ),
    "WebhookdRetryBacklogGrowing": (
        {"webhookd_retry_backlog": "2000+50x90"},
        {"webhookd_retry_backlog": "5000x90"},
        "60m", "warning",
    ),
    "WebhookdDeadLettersGrowing": (
        {"webhookd_dead_letters_total": "0+2x90"},
        {"webhookd_dead_letters_total": "0x30 1x60"},
        "60m", "warning",
    ),
    "WebhookdEndpointsAutoDisabled": (
        {"webhookd_endpoints_disabled_total": "0x30 1x60"},
        {"webhookd_endpoints_disabled_total": "3x90"},
        "40m", "info",
    ),
}  # fmt: skip


def exported_names() -> set[str]:
    """Every sample name webhookd.metrics exports (counters' ``_total``, histograms' parts)."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name = value._name
        if isinstance(value, Counter):
            names.add(f"{name}_total")
        elif isinstance(value, Histogram):
            names.update(f"{name}_{part}" for part in ("bucket", "sum", "count"))
        elif isinstance(value, Gauge):
            names.add(name)
    return names


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: apt-get install prometheus (scripts/test does)")
        pytest.skip("promtool is missing: apt-get install prometheus to check the alert rules")
    return found


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(ALERTS)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(SCENARIOS)} rules found" in result.stdout


def test_each_alert_fires_when_sick_and_stays_quiet_when_healthy(tmp_path: Path) -> None:
    assert {rule["alert"] for rule in alert_rules()} == set(SCENARIOS)
    tests = []
    for alert, (sick, healthy, at, severity) in SCENARIOS.items():
        labels = f'alertname="{alert}", alertstate="firing", severity="{severity}"'
        firing = {"labels": f'{{__name__="ALERTS", {labels}}}', "value": 1}
        for series, expected in ((sick, [firing]), (healthy, [])):
            tests.append({
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "promql_expr_test": [{
                    "expr": f'ALERTS{{alertname="{alert}", alertstate="firing"}}',
                    "eval_time": at,
                    "exp_samples": expected,
                }],
            })  # fmt: skip
    spec = tmp_path / "alerts_test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(ALERTS)], "tests": tests}))
    result = subprocess.run([promtool(), "test", "rules", str(spec)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_and_dashboard_name_only_exported_metrics() -> None:
    exported = exported_names()
    assert {"webhookd_retry_backlog", "webhookd_disabled_endpoints"} <= exported
    alert_names = {n for rule in alert_rules() for n in METRIC_NAME.findall(rule["expr"])}
    assert alert_names and alert_names <= exported, alert_names - exported

    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    dashboard_names = {n for expr in expressions for n in METRIC_NAME.findall(expr)}
    assert dashboard_names <= exported, dashboard_names - exported
    assert {"webhookd_attempt_seconds_bucket", "webhookd_retry_backlog",
            "webhookd_dead_letters_total"} <= dashboard_names  # fmt: skip


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_the_systemd_unit_is_hardened_and_outwaits_the_shutdown_grace() -> None:
    unit = unit_settings()
    for key, value in (("DynamicUser", "yes"), ("NoNewPrivileges", "yes"),
                       ("ProtectSystem", "strict"), ("KillSignal", "SIGTERM"),
                       ("StateDirectory", "webhookd")):  # fmt: skip
        assert unit[key] == [value], key
    assert "WEBHOOKD_REDIS_DATA_DIR=/var/lib/webhookd" in unit["Environment"]
    assert unit["ExecStart"][0].endswith("webhookd run")
    defaults = tomllib.loads((ROOT / "webhookd.toml").read_text())
    assert float(unit["TimeoutStopSec"][0]) > defaults["delivery"]["shutdown_grace"] + 5
