"""Prometheus HTTP API adapter: instant queries and the scrape targets.

:func:`parse_query_response` and :func:`parse_targets_response` turn the decoded JSON of ``/api/v1/query`` and
``/api/v1/targets`` into pydantic models without any I/O; :class:`PrometheusAPI` fetches them. Every failure
(unreachable server, HTTP error, bad PromQL) is a :class:`PrometheusError` naming the URL and the query.

Example:
    >>> data = {"status": "success", "data": {"resultType": "vector",
    ...         "result": [{"metric": {"__name__": "up", "job": "opsflow"}, "value": [1700000000.5, "1"]}]}}
    >>> [(s.labels["job"], s.value) for s in parse_query_response(data)]
    [('opsflow', 1.0)]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel, Field, ValidationError

from opsflow.errors import AdapterError


class PrometheusError(AdapterError):
    """Prometheus could not be reached, answered with an error, or rejected the query."""


class Sample(BaseModel):
    """One element of an instant vector (or the single value of a scalar result)."""

    labels: dict[str, str] = Field(default_factory=dict, description="Labels, including __name__ when present")
    value: float = Field(description="The sample value (NaN and ±Inf included)")
    timestamp: float = Field(0.0, description="Evaluation time, epoch seconds")

    @property
    def name(self) -> str:
        return self.labels.get("__name__", "")


class Target(BaseModel):
    """One active scrape target."""

    job: str
    scrape_url: str
    health: str = Field(description="up, down or unknown (not scraped yet)")
    last_error: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


def _describe(query: str | None) -> str:
    return f" (query {query!r})" if query is not None else ""


def _sample(labels: Mapping[str, str], pair: Any) -> Sample:
    # Values come as strings ("1", "NaN", "+Inf"); float() reads them all.
    ts, raw = pair
    return Sample(labels=dict(labels), value=float(raw), timestamp=float(ts))


def parse_query_response(data: Mapping[str, Any], query: str | None = None) -> list[Sample]:
    """Samples of a decoded ``/api/v1/query`` answer (pure); a vector, or a scalar as one unlabelled sample."""
    if data.get("status") != "success":
        raise PrometheusError(f"Prometheus rejected the query{_describe(query)}: {data.get('error', data)}")
    body = data.get("data") or {}
    kind = body.get("resultType")
    result = body.get("result")
    try:
        if kind == "vector":
            return [_sample(item.get("metric", {}), item["value"]) for item in result or []]
        if kind == "scalar":
            return [_sample({}, result)]
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise PrometheusError(f"unexpected {kind} result{_describe(query)}: {exc}") from exc
    raise PrometheusError(f"the query{_describe(query)} gives a {kind} result; only vectors and scalars are read")


def parse_targets_response(data: Mapping[str, Any]) -> list[Target]:
    """Active targets of a decoded ``/api/v1/targets`` answer (pure)."""
    if data.get("status") != "success":
        raise PrometheusError(f"Prometheus could not list its targets: {data.get('error', data)}")
    targets = []
    for item in (data.get("data") or {}).get("activeTargets", []):
        labels = dict(item.get("labels", {}))
        targets.append(
            Target(
                job=labels.get("job", item.get("scrapePool", "")),
                scrape_url=item.get("scrapeUrl", ""),
                health=item.get("health", "unknown"),
                last_error=item.get("lastError", ""),
                labels=labels,
            )
        )
    return targets


class PrometheusAPI:
    """A Prometheus server's HTTP API at ``url`` (e.g. ``http://127.0.0.1:9090``).

    Example:
        >>> PrometheusAPI("http://127.0.0.1:9090").query('up{job="opsflow"}')  # doctest: +SKIP
        [Sample(labels={'__name__': 'up', 'instance': '127.0.0.1:9464', 'job': 'opsflow'}, value=1.0, ...)]
    """

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """Evaluate ``promql`` now (or at epoch seconds ``at``) as an instant query."""
        form = {"query": promql}
        if at is not None:
            form["time"] = str(at)
        # POST (form-encoded): long queries do not hit URL length limits.
        return parse_query_response(self._call("POST", "/api/v1/query", promql, data=form), promql)

    def targets(self) -> list[Target]:
        """The active scrape targets with their last health."""
        return parse_targets_response(self._call("GET", "/api/v1/targets", None, params={"state": "active"}))

    def _call(self, method: str, path: str, query: str | None, **kwargs: Any) -> Mapping[str, Any]:
        endpoint = f"{self.url}{path}"
        try:
            resp = httpx.request(method, endpoint, timeout=self.timeout_s, **kwargs)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"cannot reach Prometheus at {endpoint}{_describe(query)}: {exc}") from exc
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise PrometheusError(
                f"Prometheus at {endpoint} answered HTTP {resp.status_code} without a JSON body"
                f"{_describe(query)}: {resp.text[:200]!r}"
            )
        if resp.status_code != 200 or data.get("status") != "success":
            # Bad PromQL is HTTP 400 with errorType "bad_data" and the parser's message in "error".
            why = f"{data.get('errorType', 'error')}: {data.get('error', '')}"
            raise PrometheusError(f"Prometheus at {endpoint} answered HTTP {resp.status_code}{_describe(query)}: {why}")
        return data
