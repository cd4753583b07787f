"""BigQueryHubble: google-cloud-bigquery against BigQuery, or the goccy BigQuery emulator.

The same code path serves both; only the client differs: with BIGQUERY_EMULATOR_HOST set the
client talks to the emulator's REST endpoint with anonymous credentials. Settings:
BIGQUERY_PROJECT (the project that runs and pays for the jobs; required), BIGQUERY_EMULATOR_HOST
(optional), HUBBLE_DATASET / HUBBLE_DBT_DATASET (and the testnet pair; common/hubble/port.py).

Every call has a bounded retry deadline and timeout, so an unreachable BigQuery makes the
account fall back to the API path within seconds instead of holding the task.

What the emulator does differently (it runs the same SQL, parameters, LIMIT @param, windows and
month partitioning; found by reading goccy/bigquery-emulator v0.8.1's server/handler.go):
- its dry run executes the query and reports the bytes of the *result* as totalBytesProcessed,
  not the bytes a scan would read; it has no partition pruning or per-column accounting;
- it ignores maximum_bytes_billed and reports billed = processed;
- it runs the query inside jobs.insert (the job is DONE when the submit answers, and exists only
  from then on; a submit whose client gave up is dropped), answers a reused job id with 400 (BigQuery:
  409) and a query it cannot analyse with 500 (BigQuery: 400/404); jobs.get and jobs.cancel work.
The guard logic is the same for every engine; the scan-size figures come from the embedded engine.
"""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from common.hubble.port import (
    DryRun,
    Hubble,
    HubbleError,
    HubbleJobFailed,
    HubbleNotRun,
    HubbleOutcomeUnknown,
    HubbleQuery,
    HubbleTables,
    HubbleUnavailable,
    JobStatus,
    PagedResult,
    QueryResult,
    tables_from_settings,
)

DEFAULT_DEADLINE_S = 30.0
DEFAULT_RESULT_TIMEOUT_S = 120.0


def make_client(project: str, endpoint: str | None = None):
    """A BigQuery client; with `endpoint` (the emulator's URL) anonymous and pointed there."""
    from google.cloud import bigquery

    if endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        if not endpoint.startswith(("http://", "https://")):
            endpoint = "http://" + endpoint
        return bigquery.Client(project=project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint))
    return bigquery.Client(project=project)


class BigQueryHubble(Hubble):
    engine = "bigquery"
    tracks_jobs = True

    def __init__(
        self,
        project: str,
        tables: dict[str, HubbleTables],
        endpoint: str | None = None,
        deadline_s: float = DEFAULT_DEADLINE_S,
        result_timeout_s: float = DEFAULT_RESULT_TIMEOUT_S,
        client: Any = None,
    ):
        if not project:
            raise ValueError("BigQuery project is required")
        self.project = project
        self.endpoint = endpoint
        self._tables = dict(tables)
        self._deadline = float(deadline_s)
        self._result_timeout = float(result_timeout_s)
        self._client = client
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings, clock=None) -> "BigQueryHubble":
        return cls(
            project=settings.require("BIGQUERY_PROJECT"),
            tables=tables_from_settings(settings),
            endpoint=settings.optional("BIGQUERY_EMULATOR_HOST"),
        )

    @property
    def client(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = make_client(self.project, self.endpoint)
        return self._client

    def tables(self, network: str) -> HubbleTables | None:
        return self._tables.get(network)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # ------------------------------------------------------------------ jobs
    def _job_config(self, query: HubbleQuery, **kwargs):
        from google.cloud import bigquery

        params = [bigquery.ScalarQueryParameter(p.name, p.type, p.value) for p in query.params]
        return bigquery.QueryJobConfig(query_parameters=params, use_query_cache=False, **kwargs)

    def _retry(self):
        from google.cloud import bigquery

        return bigquery.DEFAULT_RETRY.with_deadline(self._deadline).with_timeout(self._deadline)

    def _call(self, what: str, fn):
        from google.api_core import exceptions as gexc
        import requests

        try:
            return fn()
        except (gexc.BadRequest, gexc.Forbidden, gexc.NotFound) as exc:
            # The query itself was refused (syntax, maximum_bytes_billed, missing table, quota).
            raise HubbleError(f"BigQuery {what} refused: {exc}") from exc
        except (gexc.GoogleAPIError, requests.RequestException, OSError, TimeoutError) as exc:
            raise HubbleUnavailable(f"BigQuery {what} failed: {type(exc).__name__}: {exc}") from exc

    def dry_run(self, query: HubbleQuery) -> DryRun:
        def go():
            job = self.client.query(
                query.sql, job_config=self._job_config(query, dry_run=True), retry=self._retry(), timeout=self._deadline, job_retry=None
            )
            return DryRun(int(job.total_bytes_processed or 0))

        return self._call("dry run", go)

    def run(self, query: HubbleQuery, max_bytes_billed: int | None = None, job_id: str | None = None) -> QueryResult:
        """Submit the query as job `job_id` and read its rows; every failure says what was billed.

        The submit is sent once at a time (no client-side retry), so a refusal of the only attempt
        means the job never existed (HubbleNotRun). A submit that timed out or lost its connection
        is retried with the same job id until the deadline (a 409 Conflict means an earlier attempt
        created it: that job is used). Once the job may exist, a failure looks the job up: DONE
        gives its final statistics (HubbleJobFailed); otherwise the job is cancelled and the outcome
        is unknown (HubbleOutcomeUnknown), to be settled later from the job's statistics.
        """
        job_id = job_id or f"stellarmap_{uuid.uuid4().hex}"
        extra = {"maximum_bytes_billed": int(max_bytes_billed)} if max_bytes_billed is not None else {}
        job = self._submit(query, self._job_config(query, **extra), job_id)
        try:
            iterator = job.result(retry=self._retry(), timeout=self._result_timeout)
            names = [field.name for field in iterator.schema]
            rows = [dict(zip(names, row.values())) for row in iterator]
        except Exception as exc:  # noqa: BLE001 - whatever it was, the bill is looked up by job id
            raise self._after_failure(job_id, "query", exc) from exc
        processed = int(job.total_bytes_processed or 0)
        billed = job.total_bytes_billed
        return QueryResult(rows=rows, bytes_processed=processed, bytes_billed=int(billed if billed is not None else processed), job_id=job.job_id)

    def run_pages(self, query: HubbleQuery, max_bytes_billed: int | None = None, job_id: str | None = None,
                  page_rows: int = 10_000) -> PagedResult:
        """As run(), but the finished job's rows are fetched a page at a time (jobs.getQueryResults
        pages): memory is one page whatever the result's size. A page that cannot be read raises
        HubbleError (the job is billed already; its statistics were final when paging began)."""
        job_id = job_id or f"stellarmap_{uuid.uuid4().hex}"
        extra = {"maximum_bytes_billed": int(max_bytes_billed)} if max_bytes_billed is not None else {}
        job = self._submit(query, self._job_config(query, **extra), job_id)
        try:
            iterator = job.result(retry=self._retry(), timeout=self._result_timeout, page_size=page_rows)
            names = [field.name for field in iterator.schema]
        except Exception as exc:  # noqa: BLE001 - whatever it was, the bill is looked up by job id
            raise self._after_failure(job_id, "query", exc) from exc
        processed = int(job.total_bytes_processed or 0)
        billed = job.total_bytes_billed

        def pages():
            try:
                for page in iterator.pages:
                    yield [dict(zip(names, row.values())) for row in page]
            except HubbleError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise HubbleError(f"BigQuery rows of job {job_id} could not be read: {type(exc).__name__}: {exc}") from exc

        return PagedResult(pages(), processed, int(billed if billed is not None else processed), job.job_id)

    def _submit(self, query: HubbleQuery, config, job_id: str):
        from google.api_core import exceptions as gexc

        # BigQuery answers a submit at once; the emulator only once the query has run (see above).
        timeout = self._result_timeout if self.endpoint else self._deadline
        deadline = time.monotonic() + timeout
        delay, maybe_created = 0.25, None
        while True:
            try:
                return self.client.query(query.sql, job_config=config, job_id=job_id, retry=None, timeout=timeout, job_retry=None)
            except gexc.Conflict as exc:  # an earlier attempt of ours created it (the id is unique)
                try:
                    return self.client.get_job(job_id, retry=self._retry(), timeout=self._deadline)
                except Exception as lookup:  # noqa: BLE001
                    raise self._unknown(job_id, "submit", lookup) from exc
            except gexc.ClientError as exc:
                if maybe_created is None:
                    raise HubbleNotRun(f"BigQuery refused the query: {exc}") from exc
                raise self._after_failure(job_id, "submit", maybe_created) from exc
            except _transient_errors() as exc:
                maybe_created = exc
                if time.monotonic() + delay >= deadline:
                    raise self._after_failure(job_id, "submit", exc) from exc
                time.sleep(delay)
                delay = min(delay * 2, 4.0)

    def _after_failure(self, job_id: str, what: str, exc: BaseException) -> HubbleError:
        """A finished job's final statistics, or (still running, or not to be seen) a cancelled, unknown one."""
        try:
            status = self.job_status(job_id)
        except HubbleError:
            status = None
        if status is not None and status.state == "DONE":
            return HubbleJobFailed(
                f"BigQuery {what} failed ({type(exc).__name__}: {exc}); job {job_id} finished, billing {status.bytes_billed:,} bytes",
                job_id, status.bytes_processed, status.bytes_billed,
            )
        return self._unknown(job_id, what, exc)

    def _unknown(self, job_id: str, what: str, exc: BaseException) -> HubbleError:
        try:
            status = self.cancel(job_id)
        except HubbleError as cancel_exc:
            return HubbleOutcomeUnknown(
                f"BigQuery {what} failed ({type(exc).__name__}: {exc}); cancelling job {job_id} failed too: {cancel_exc}", job_id
            )
        if status.state == "DONE":
            return HubbleJobFailed(
                f"BigQuery {what} failed ({type(exc).__name__}: {exc}); job {job_id} had finished, billing {status.bytes_billed:,} bytes",
                job_id, status.bytes_processed, status.bytes_billed,
            )
        requested = status.state != "NOT_FOUND"
        return HubbleOutcomeUnknown(
            f"BigQuery {what} failed ({type(exc).__name__}: {exc}); job {job_id} "
            + ("cancel requested" if requested else "not found yet"), job_id, cancel_requested=requested,
        )

    # ------------------------------------------------------------------ looking jobs up
    def job_status(self, job_id: str) -> JobStatus:
        return self._job_call("job lookup", lambda: self.client.get_job(job_id, retry=self._retry(), timeout=self._deadline))

    def cancel(self, job_id: str) -> JobStatus:
        return self._job_call("job cancel", lambda: self.client.cancel_job(job_id, retry=self._retry(), timeout=self._deadline))

    def _job_call(self, what: str, fn) -> JobStatus:
        """The job's status after `fn` (jobs.get / jobs.cancel); NOT_FOUND when BigQuery has no such job."""
        from google.api_core import exceptions as gexc

        try:
            return _status_of(self._call(what, fn))
        except HubbleError as exc:
            if isinstance(exc.__cause__, gexc.NotFound):
                return JobStatus("NOT_FOUND")
            raise


def _transient_errors() -> tuple:
    """A submit that failed with one of these may still have created the job."""
    import concurrent.futures

    import requests
    from google.api_core import exceptions as gexc

    return (gexc.GoogleAPIError, requests.RequestException, OSError, TimeoutError, concurrent.futures.TimeoutError)


def _status_of(job) -> JobStatus:
    error = job.error_result
    return JobStatus(
        state=str(job.state or "PENDING"),
        bytes_processed=int(getattr(job, "total_bytes_processed", None) or 0),
        bytes_billed=int(getattr(job, "total_bytes_billed", None) or 0),
        error=(error or {}).get("message") if error else None,
    )
