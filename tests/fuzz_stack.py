"""``scripts/fuzz``: send generated requests to a running ingest and admin API and count
the answers. Exit 0 when no answer was a 5xx (or never came) and nothing unsigned,
garbled or unkeyed got a 2xx; else 1, with the first offending requests printed.

It sets itself up as an operator would: ``crmsync api-keys create`` makes a fresh tenant
``fuzz-<random>`` with an admin key, and the admin API connects one connection per webhook
provider and an internal one (whose publish key ``POST /v1/changes`` takes). Every
connection is inbound only (``direction: in``), so nothing is ever pushed to a provider;
the changes it gets accepted become records of that tenant alone. The generators are
tests/fuzzing.py's, the same the suite runs a few hundred of.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import hypothesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from connectors.generic import GenericSchemeConfig
from services.admin.routes import routes
from tests.fuzzing import (
    Answer,
    Client,
    Probe,
    Targets,
    WebhookTarget,
    admin_routes_of,
    kinds,
    violations,
)
from tests.integration.test_ingest import SECRETS

# Share of the requests each generator sends: most go where parsing happens.
SHARES = {
    "changes": 0.30,
    "webhook-unsigned": 0.15,
    "webhook-garbled": 0.20,
    "webhook-signed": 0.15,
    "admin-body": 0.10,
    "admin-query": 0.10,
}
# test_ingest's secrets; the generic scheme signs a timestamp too, so staleness is tried.
GENERIC = GenericSchemeConfig(
    signature_header="x-hub-signature-256",
    prefix="sha256=",
    timestamp_header="x-timestamp",
    signed_payload="timestamp.body",
    event_id_header="x-delivery-id",
)
SHOWN = 5


@dataclass
class Tally:
    total: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    server_errors_by_kind: Counter[str] = field(default_factory=Counter)
    unsigned_2xx: int = 0
    no_answer: int = 0
    examples: list[str] = field(default_factory=list)

    def record(self, probe: Probe, answer: Answer) -> None:
        self.total += 1
        self.by_kind[_kind_group(probe.kind)] += 1
        self.by_status[answer.status] += 1
        problems = violations(probe, answer)
        if answer.status == 0:
            self.no_answer += 1
        elif answer.status >= 500:
            self.server_errors += 1
            self.server_errors_by_kind[_kind_group(probe.kind)] += 1
        elif problems:
            self.unsigned_2xx += 1
        if problems and len(self.examples) < SHOWN:
            excerpt = answer.body[:300]
            self.examples.append(f"{', '.join(problems)}: {probe.describe()} -> {excerpt!r}")

    @property
    def ok(self) -> bool:
        return self.server_errors == 0 and self.unsigned_2xx == 0 and self.no_answer == 0

    def report(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_kind": dict(sorted(self.by_kind.items())),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "5xx": self.server_errors,
            "5xx_by_kind": dict(sorted(self.server_errors_by_kind.items())),
            "unsigned_2xx": self.unsigned_2xx,
            "no_answer": self.no_answer,
        }


def _kind_group(kind: str) -> str:
    return "webhook-garbled" if kind.startswith("webhook-garbled") else kind


def _admin(base: str, key: str, method: str, path: str, body: Any) -> Any:
    parts = urlsplit(base)
    client = Client(parts.hostname or "127.0.0.1", parts.port or 80)
    probe = Probe(
        "setup",
        "admin",
        method,
        path,
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        json.dumps(body).encode(),
        False,
    )
    answer = client.send(probe)
    client.close()
    if answer.status >= 300:
        raise SystemExit(f"fuzz: setup {method} {path} answered {answer.status}: {answer.body!r}")
    return json.loads(answer.body)


def set_up(admin_url: str) -> tuple[str, Targets]:
    """A fresh tenant with an admin key (CLI), its connections (admin API)."""
    tenant = f"fuzz-{uuid.uuid4().hex[:10]}"
    made = subprocess.run(
        [
            *(sys.executable, "-m", "crmsync.cli.main", "api-keys", "create"),
            *("--tenant", tenant, "--scope", "admin", "--json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        raise SystemExit(f"fuzz: crmsync api-keys create failed: {made.stderr.strip()}")
    admin_key = json.loads(made.stdout)["key"]
    webhooks = []
    for provider, secret in SECRETS.items():
        body: dict[str, Any] = {
            "provider": provider,
            "name": f"fuzz-{provider}",
            "webhook_secret": secret,
            "settings": {"direction": "in"},
        }
        if provider == "generic":
            body["generic_config"] = GENERIC.model_dump(mode="json")
        created = _admin(admin_url, admin_key, "POST", "/v1/connections", body)
        url = created["webhook_url"]
        webhooks.append(
            WebhookTarget(
                provider,
                urlsplit(url).path,
                url,
                secret,
                GENERIC if provider == "generic" else None,
            )
        )
    internal = _admin(
        admin_url,
        admin_key,
        "POST",
        "/v1/connections",
        {"provider": "internal", "name": "fuzz-internal", "settings": {"direction": "in"}},
    )
    targets = Targets(tuple(webhooks), internal["api_key"], admin_key, admin_routes_of(routes()))
    return tenant, targets


def run(targets: Targets, ingest: Client, admin: Client, total: int, seed: int) -> Tally:
    tally = Tally()
    strategies = kinds(targets)
    for index, (name, share) in enumerate(SHARES.items()):
        wanted = max(1, round(total * share))
        client = admin if name.startswith("admin") else ingest
        _generate(strategies[name], client, tally, name=name, wanted=wanted, seed=seed + index)
    return tally


def _generate(
    strategy: st.SearchStrategy[Probe],
    client: Client,
    tally: Tally,
    *,
    name: str,
    wanted: int,
    seed: int,
) -> None:
    """Send ``wanted`` requests of one generator; nothing stops at a failure, all count."""
    sent = 0
    rounds = 0
    while sent < wanted:

        @hypothesis.seed(seed + 1000 * rounds)
        @settings(
            max_examples=wanted - sent,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(probe=strategy)
        def send(probe: Probe) -> None:
            nonlocal sent
            if sent >= wanted:
                return
            tally.record(probe, client.send(probe))
            sent += 1

        send()
        rounds += 1
        if rounds > 50:  # the generator ran dry: report what was sent
            print(f"fuzz: {name} generated only {sent} of {wanted}", file=sys.stderr)
            break
    client.close()


def _client(url: str) -> Client:
    parts = urlsplit(url)
    return Client(parts.hostname or "127.0.0.1", parts.port or 80)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ingest", default="http://127.0.0.1:8080", help="ingest base URL")
    parser.add_argument("--admin", default="http://127.0.0.1:8081", help="admin API base URL")
    parser.add_argument("--requests", type=int, default=10_000, help="how many to send")
    parser.add_argument("--seed", type=int, default=0, help="the same seed sends the same")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args(argv)
    started = time.monotonic()
    tenant, targets = set_up(args.admin)
    tally = run(targets, _client(args.ingest), _client(args.admin), args.requests, args.seed)
    report = {"tenant": tenant, **tally.report(), "seconds": round(time.monotonic() - started)}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"fuzz: {tally.total} requests in {report['seconds']} s (tenant {tenant})")
        print("  by kind:   " + " · ".join(f"{k} {v}" for k, v in report["by_kind"].items()))
        print("  by status: " + " · ".join(f"{k} {v}" for k, v in report["by_status"].items()))
        where = " · ".join(f"{k} {v}" for k, v in report["5xx_by_kind"].items())
        print(
            f"  5xx: {tally.server_errors}{f' ({where})' if where else ''}"
            f"   unsigned/unkeyed 2xx: {tally.unsigned_2xx}   no answer: {tally.no_answer}"
        )
    for example in tally.examples:
        print(f"  ! {example}", file=sys.stderr)
    return 0 if tally.ok else 1


if __name__ == "__main__":
    sys.exit(main())
