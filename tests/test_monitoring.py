"""The monitoring files in deploy/ against a real Prometheus scraping a real hookbus.

Needs Debian's ``prometheus`` package (``/usr/bin/prometheus`` and ``/usr/bin/promtool``; CI installs it with
apt-get) and is skipped, saying so, when either is not on PATH.

1. ``promtool check config`` on the shipped deploy/prometheus/prometheus.yml and ``promtool check rules`` on
   deploy/prometheus/alerts.yml, exactly as they are (with every lint, lint problems fatal); the structure of the
   alert rules (``for:``, a severity, what-to-do annotations) and of the Grafana dashboard (the ``${datasource}``
   variable on every panel and query).
2. ingest, the QuickBooks sandbox, an accounting worker and ``hookbus exporter`` run as processes against the test
   Valkey, and Prometheus scrapes them every second with a copy of the shipped scrape configuration whose targets
   are rewritten to this test's ports (job names, labels and rules unchanged; the copy passes promtool too).
3. Traffic reaches every path the dashboard and the alerts watch: valid Stripe payments in three currencies and a
   refund, a duplicate, a bad signature, an unhandled type, a payment in XTS (no minor unit: dead-lettered), and two
   injected QuickBooks 429s with ``Retry-After`` (pauses of the shared rate limit, throttled requests, retries,
   reclaims).
4. ``promtool check metrics`` on live scrapes of ingest, the worker and the exporter reports nothing.
5. Every PromQL expression of a dashboard panel and every alert rule returns data, polled under a deadline:

   - Dashboard expressions come from the JSON; Grafana's ``$__rate_interval`` becomes ``1m`` (four 1 s scrapes fit
     many times) and a template variable its "All" value. Each must return a series with a finite value (so no panel
     can only show "No data" or NaN), carrying the labels its legend shows (``{{group}}``). A variable's
     ``label_values(metric, label)`` query must find that label on that metric.
   - An alert rule fires only in trouble, so its full expression is usually empty here. By convention (see
     alerts.yml) each rule is ``<query> <comparison> <number>``; the test removes the trailing comparison and
     queries the left-hand side, which must return a series (any value: a healthy 0 is data) carrying every label
     the annotations use (``$labels.group``). A rule not written that way fails the test instead of being skipped.
     The full expressions must also evaluate without error in Prometheus's rule manager (``/api/v1/rules``), and
     the dead-letter alert must be active (pending or firing) after the XTS payment.

Nothing here repeats an expression from the files: they are read from deploy/.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bus.naming import Names
from ingest.sources import stripe_samples
from tests.test_processes import (
    START_TIMEOUT_S,
    Children,
    _die_with_parent,
    free_port,
    post_webhook,
    stack_env,
)

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="needs `prometheus` and `promtool` on PATH (Debian package `prometheus`; CI installs it with apt-get)",
)

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
SCRAPE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "hookbus.json"

NAMES = Names("hookbus")
GROUP = "accounting"
STREAM = NAMES.stream("payment.succeeded")
#: What ``$__rate_interval`` stands for in the queries (Grafana: at least 4 scrape intervals; here 1 s scrapes).
RATE_INTERVAL = "1m"
#: Deadline for every expression to return data once the traffic is done (well inside the 1m rate window).
QUERY_DEADLINE_S = 60.0
#: The whole live test, start-up included, fails rather than run longer than this (a run takes 10-20 s).
BUDGET_S = 85.0
#: ``<query> <comparison> <number>``: the shape of every alert expression; group 1 is the query.
COMPARISON = re.compile(
    r"^(.*?)\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$", re.S
)
LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_]\w*)\s*\)\s*$")


# ------------------------------------------------------------------------------------------- the files' queries
def dashboard_panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, also those nested in (collapsed) rows."""
    for panel in node.get("panels", []):
        yield panel
        yield from dashboard_panels(panel)


def substitute_variables(expr: str, dashboard: dict[str, Any]) -> str:
    """``$__rate_interval`` → :data:`RATE_INTERVAL`; a template variable → its "All" value (``.*`` by default)."""
    text = expr.replace("${__rate_interval}", RATE_INTERVAL).replace("$__rate_interval", RATE_INTERVAL)
    for var in dashboard["templating"]["list"]:
        if var["type"] == "datasource":
            continue
        value = var.get("allValue") or ".*"
        name = var["name"]
        pattern = rf"\$\{{{name}(?::\w+)?\}}|\$\b{name}\b|\[\[{name}\]\]"
        text = re.sub(pattern, value.replace("\\", "\\\\"), text)
    return text


def dashboard_queries() -> list[tuple[str, str, set[str]]]:
    """(what, PromQL, labels the legend shows) for every panel target."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            expr = substitute_variables(target["expr"], dashboard)
            assert "$" not in expr, f"panel {panel['title']!r}: unknown variable left in {expr!r}"
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            queries.append((f"panel {panel['title']!r} {target['refId']}", expr, legend))
    return queries


def variable_queries() -> list[tuple[str, str, str]]:
    """(variable, metric, label) for every ``label_values(metric, label)`` template variable."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = LABEL_VALUES.match(query)
        assert match, f"variable {var['name']!r}: expected label_values(metric, label), got {query!r}"
        found.append((var["name"], match[1], match[2]))
    return found


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def alert_queries() -> list[tuple[str, str, set[str]]]:
    """(what, left-hand side of the rule's comparison, labels its annotations use) for every alert rule."""
    queries = []
    for rule in alert_rules():
        match = COMPARISON.match(rule["expr"].strip())
        assert match, f"alert {rule['alert']}: expression is not `<query> <comparison> <number>`: {rule['expr']!r}"
        labels = set(re.findall(r"\$labels\.(\w+)", " ".join(rule.get("annotations", {}).values())))
        queries.append((f"alert {rule['alert']}", match[1].strip(), labels))
    return queries


# ------------------------------------------------------------------------------------------------- promtool
def promtool(*args: str, stdin: bytes | None = None) -> tuple[int, str]:
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, timeout=60)
    return result.returncode, (result.stdout + result.stderr).decode(errors="replace")


def check_metrics(url: str) -> None:
    """``promtool check metrics`` on a live scrape: exit 0 and no problem reported."""
    text = httpx.get(url, timeout=10).text
    assert "hookbus_" in text, f"{url} exposes no hookbus metric"
    code, out = promtool("check", "metrics", stdin=text.encode())
    assert code == 0 and not out.strip(), f"promtool check metrics on {url} (exit {code}):\n{out}"


# ------------------------------------------------------------------------------------------------ static checks
def test_shipped_files_pass_promtool_and_conventions() -> None:
    code, out = promtool("check", "config", "--lint=all", "--lint-fatal", str(SCRAPE_CONFIG))
    assert code == 0, out
    code, out = promtool("check", "rules", "--lint=all", "--lint-fatal", str(ALERTS))
    assert code == 0, out

    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == {
        "hookbus-ingest",
        "hookbus-workers",
        "hookbus-exporter",
    }
    assert config["rule_files"] == ["alerts.yml"]

    rules = alert_rules()
    assert len({r["alert"] for r in rules}) == len(rules), "alert names must be unique"
    for rule in rules:
        assert rule.get("for"), f"alert {rule['alert']} has no `for:`"
        assert rule.get("labels", {}).get("severity") in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description"} <= set(rule.get("annotations", {})), rule["alert"]
    alert_queries()  # every expression has the `<query> <comparison> <number>` shape

    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    titles = []
    for panel in dashboard_panels(dashboard):
        if panel["type"] == "row":
            continue
        titles.append(panel["title"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].strip(), panel["title"]
    assert len(titles) == len(set(titles)), "panel titles must be unique"
    assert len({p["id"] for p in dashboard_panels(dashboard)}) == len(list(dashboard_panels(dashboard)))
    assert dashboard_queries() and variable_queries()


# --------------------------------------------------------------------------------------------------- live test
@pytest.fixture
def db(valkey: Any) -> Iterator[redis.Redis]:
    if not valkey.running:
        valkey.start()
    client = redis.Redis.from_url(valkey.url, socket_timeout=10)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


class Prometheus:
    """A Prometheus server on a free port with a throw-away TSDB; ``stop()`` terminates it (SIGKILL if needed)."""

    def __init__(self, config: Path, data_dir: Path, log: Path) -> None:
        assert PROMETHEUS is not None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data_dir}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-4000:]
        return "(no log)"

    def ready(self) -> bool:
        self.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        return False

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert body.get("status") == "success", f"{path} {params}: {response.status_code} {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", f"{expr!r} gave a {data['resultType']}"
        return data["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def scrape_config_for(tmp_path: Path, targets: dict[str, str]) -> Path:
    """The shipped scrape configuration with this test's targets (the first target group of each job, e.g. the
    accounting worker's, keeps its labels), 1 s intervals and an absolute rules path."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / path) for path in config["rule_files"]]
    for job in config["scrape_configs"]:  # one process per job here: the first target group, pointed at it
        job["static_configs"] = [job["static_configs"][0] | {"targets": [targets[job["job_name"]]]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    code, out = promtool("check", "config", "--lint=all", "--lint-fatal", str(path))
    assert code == 0, out
    return path


def sample_value(url: str, name: str, labels: dict[str, str]) -> float:
    """One sample of a process's own /metrics (0 when absent)."""
    with contextlib.suppress(httpx.HTTPError):
        for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
    return 0.0


def payment(currency: str, amount: int = 1999) -> bytes:
    return stripe_samples.payment_intent_succeeded(amount=amount, currency=currency)


def posted(ingest_url: str, body: bytes, expected: tuple[int, str], **kwargs: str) -> None:
    response = post_webhook(ingest_url, body, **kwargs)
    status = response.json().get("status") or response.json().get("error")
    assert (response.status_code, status) == expected, response.text


def test_dashboard_and_alert_queries_return_data(
    db: redis.Redis, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    started = time.monotonic()

    def left(cap_s: float) -> float:
        """A wait's timeout: ``cap_s``, but never past the test's budget."""
        return max(1.0, min(cap_s, started + BUDGET_S - time.monotonic()))

    ports = {name: free_port() for name in ("sandbox", "ingest", "worker", "exporter")}
    sandbox_url = f"http://127.0.0.1:{ports['sandbox']}"
    ingest_url = f"http://127.0.0.1:{ports['ingest']}"
    worker_metrics = f"http://127.0.0.1:{ports['worker']}/metrics"
    exporter_metrics = f"http://127.0.0.1:{ports['exporter']}/metrics"
    config = scrape_config_for(
        tmp_path,
        {
            "hookbus-ingest": f"127.0.0.1:{ports['ingest']}",
            "hookbus-workers": f"127.0.0.1:{ports['worker']}",
            "hookbus-exporter": f"127.0.0.1:{ports['exporter']}",
        },
    )
    env = stack_env(subprocess_env, ports["sandbox"]) | {"QUICKBOOKS_TIMEOUT_S": "10"}
    prometheus: Prometheus | None = None
    with Children(env, tmp_path / "logs") as kids:
        try:
            kids.start("sandbox", "sandbox", "quickbooks", "--port", str(ports["sandbox"]))
            kids.start("ingest", "ingest", "--port", str(ports["ingest"]))
            kids.start("worker", "worker", GROUP, "--metrics-port", str(ports["worker"]))
            kids.start("exporter", "exporter", "--host", "127.0.0.1", "--port", str(ports["exporter"]))
            (tmp_path / "tsdb").mkdir()
            prometheus = Prometheus(config, tmp_path / "tsdb", tmp_path / "logs" / "prometheus.log")

            def wait(predicate: Any, what: str, timeout_s: float = START_TIMEOUT_S) -> Any:
                assert prometheus is not None

                def check() -> Any:
                    prometheus.check_alive()
                    return predicate()

                return kids.wait_until(check, timeout_s=left(timeout_s), what=what, interval_s=0.05)

            for url in (f"{sandbox_url}/healthz", f"{ingest_url}/readyz", worker_metrics, exporter_metrics):
                kids.wait_http(url, timeout_s=left(START_TIMEOUT_S))
            wait(prometheus.ready, "prometheus to be ready")

            def worker_reading() -> bool:  # the consumer exists once the worker blocks in XREADGROUP
                with contextlib.suppress(redis.ResponseError):
                    return bool(db.xinfo_consumers(STREAM, GROUP))
                return False

            wait(worker_reading, "the worker to read its streams")

            def scraped() -> bool:
                # Prometheus applies new targets only every 5 s after start-up: traffic before the first scrape
                # would leave the counters without a "before" sample, and their rates at 0 (quantiles NaN).
                jobs = {s["metric"]["job"] for s in prometheus.query("up == 1")}
                return jobs >= {job["job_name"] for job in yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]}

            wait(scraped, "prometheus to scrape every target")
            setup_s = time.monotonic() - started

            # --- traffic: every outcome the dashboard and the alerts look at
            first = payment("usd")
            posted(ingest_url, first, (200, "accepted"))
            posted(ingest_url, payment("eur", 4500), (200, "accepted"))
            posted(ingest_url, payment("jpy", 1500), (200, "accepted"))
            posted(
                ingest_url,
                stripe_samples.charge_refunded(amount=1999, amount_refunded=500, currency="usd"),
                (200, "accepted"),
            )
            posted(ingest_url, first, (200, "duplicate"))
            posted(ingest_url, payment("usd"), (401, "bad_signature"), secret="whsec_not_the_right_one")
            posted(ingest_url, stripe_samples.customer_created(), (200, "ignored"))
            posted(ingest_url, payment("xts"), (200, "accepted"))  # XTS has no minor unit: dead-lettered

            # Two QuickBooks 429s with Retry-After: the first pauses the API for every worker; payments sent during
            # the pause are throttled by the shared limiter, and the failed ones are retried (reclaimed) later.
            fault = httpx.post(
                f"{sandbox_url}/_sandbox/faults", json={"status": 429, "count": 2, "retry_after": "2"}, timeout=10
            )
            assert fault.status_code == 200, fault.text
            posted(ingest_url, payment("usd", 100), (200, "accepted"))
            wait(
                lambda: sample_value(worker_metrics, "hookbus_ratelimit_paused_total", {"api": "quickbooks"}) >= 1,
                "a 429 to pause quickbooks",
            )
            for amount in (200, 300):
                posted(ingest_url, payment("gbp", amount), (200, "accepted"))

            state: dict[str, Any] = {}

            def all_done() -> bool:  # every payment acked or dead-lettered
                info = {i["name"].decode(): i for i in db.xinfo_groups(STREAM)}[GROUP]
                dlq = db.xlen(NAMES.dlq(GROUP)) if db.exists(NAMES.dlq(GROUP)) else 0
                state.update(pending=info["pending"], lag=info["lag"], dlq=dlq, retry=db.hgetall(NAMES.retry(GROUP)))
                return info["pending"] == 0 and info["lag"] == 0 and dlq == 1

            try:
                wait(all_done, "every payment to be acked or dead-lettered", timeout_s=60)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; last seen: {state}") from None
            worker_counts = {
                what: sample_value(worker_metrics, name, labels)
                for what, (name, labels) in {
                    "throttled": ("hookbus_ratelimit_throttled_total", {"api": "quickbooks"}),
                    "retries": ("hookbus_messages_handled_total", {"outcome": "retry", "type": "payment.succeeded"}),
                    "reclaimed": ("hookbus_messages_reclaimed_total", {"group": GROUP}),
                    "429s": ("hookbus_downstream_requests_total", {"api": "quickbooks", "status_class": "4xx"}),
                }.items()
            }
            assert all(v >= 1 for v in worker_counts.values()), worker_counts
            traffic_s = time.monotonic() - started - setup_s

            # --- promtool lint of live scrapes (after the traffic, so every labelled series exists)
            for url in (f"{ingest_url}/metrics", worker_metrics, exporter_metrics):
                check_metrics(url)

            # --- every dashboard and alert expression returns data in Prometheus
            queries = dashboard_queries() + alert_queries()
            variables = variable_queries()
            last: dict[str, Any] = {}

            def has_data(what: str, expr: str, labels: set[str], *, finite: bool) -> bool:
                result = prometheus.query(expr)
                last[what] = result[:3]
                return any(
                    labels <= set(series["metric"]) and (not finite or math.isfinite(float(series["value"][1])))
                    for series in result
                )

            def dead_letter_alert_active() -> bool:
                alerts = prometheus.api("alerts")["alerts"]
                return any(a["labels"]["alertname"] == "HookbusDeadLetters" for a in alerts)

            def rules_evaluated() -> bool:
                loaded = {
                    rule["name"]: rule
                    for group in prometheus.api("rules", type="alert")["groups"]
                    for rule in group["rules"]
                }
                assert set(loaded) == {r["alert"] for r in alert_rules()}, sorted(loaded)
                bad = {name: rule.get("lastError") for name, rule in loaded.items() if rule["health"] == "err"}
                assert not bad, f"alert rules failing to evaluate: {bad}"
                return all(rule["health"] == "ok" for rule in loaded.values())

            todo = {what: (expr, labels, what.startswith("panel")) for what, expr, labels in queries}
            todo |= {f"variable {name}": (metric, {label}, False) for name, metric, label in variables}
            checks = {"dead-letter alert active": dead_letter_alert_active, "rules evaluated": rules_evaluated}
            deadline = time.monotonic() + left(QUERY_DEADLINE_S)
            while todo or checks:
                prometheus.check_alive()
                for what, (expr, labels, finite) in list(todo.items()):
                    if has_data(what, expr, labels, finite=finite):
                        del todo[what]
                for what, check in list(checks.items()):
                    if check():
                        del checks[what]
                if time.monotonic() > deadline:
                    report = "\n".join(f"- {what}: {expr!r} → {last.get(what)}" for what, (expr, _, _) in todo.items())
                    raise AssertionError(f"no data in time for:\n{report}\nchecks not met: {sorted(checks)}")
                time.sleep(0.5)
            print(
                f"{len(queries)} expressions and {len(variables)} variables return data; setup {setup_s:.1f} s, "
                f"traffic {traffic_s:.1f} s, queries {time.monotonic() - started - setup_s - traffic_s:.1f} s; "
                f"worker {worker_counts}"
            )
        except BaseException:
            if prometheus is not None:
                print(f"\n----- prometheus -----\n{prometheus.tail()}")
            raise
        finally:
            if prometheus is not None:
                prometheus.stop()
