"""Offline checks of terraform/: the HCL parses, and it agrees with the code and the contracts.

- every functions/<name> folder has a function resource with the right entry point, and back;
- search and stats are the only public functions (docs/design.md, the checkov policy, the HCL);
- every queue and scheduler job targets an internal function that its invoker may call;
- the queue rate limits, evaluated from the HCL expressions with the variable defaults, equal
  common/queue/rates.py, and the formula stays inside the upstream budgets for other inputs;
- the environment matches docs/design.md and common/config.py's defaults.

The HCL is read with python-hcl2; arithmetic in `locals` is evaluated exactly (fractions), as
Terraform does with its arbitrary-precision numbers.
"""
from __future__ import annotations

import ast
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import config as app_config
from common.queue import rates
from common.queue.port import QUEUE_TARGETS

pytestmark = [pytest.mark.unit, pytest.mark.terraform]

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"


# ------------------------------------------------------------------ reading the HCL
def _unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and block labels; drop them."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"' and "${" not in value:
            return value[1:-1]
        return value
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        # drop python-hcl2's bookkeeping (__is_block__, __comments__, ...): comments are not config
        return {_unquote(k): _unquote(v) for k, v in value.items() if not (k.startswith("__") and k.endswith("__"))}
    return value


def _parse_all() -> dict[str, dict]:
    docs = {}
    for path in sorted(TF.glob("*.tf")):
        with path.open() as fh:
            docs[path.name] = _unquote(hcl2.load(fh))
    return docs


DOCS = _parse_all()


def _collect(kind: str) -> list[dict]:
    return [item for doc in DOCS.values() for item in doc.get(kind, [])]


VARIABLES = {name: body for item in _collect("variable") for name, body in item.items()}
LOCALS = {k: v for item in _collect("locals") for k, v in item.items()}
RESOURCES = {
    (rtype, name): body
    for item in _collect("resource")
    for rtype, named in item.items()
    for name, body in named.items()
}
DATA = {
    (dtype, name): body
    for item in _collect("data")
    for dtype, named in item.items()
    for name, body in named.items()
}


def _literal(value: Any) -> Any:
    """A literal from the HCL ("x", 3, "${var.name}" resolved to the variable's default)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\$\{var\.([a-z0-9_]+)\}", value)
        if match:
            return VARIABLES[match.group(1)]["default"]
    return value


def default(name: str) -> Any:
    return VARIABLES[name]["default"]


# ------------------------------------------------------------------ evaluating HCL arithmetic
_FUNCS = {"min": min, "max": max, "floor": math.floor, "ceil": math.ceil}


def evaluate(expr: Any, variables: dict[str, Any]) -> Fraction:
    """Evaluate an HCL arithmetic expression over var.* and local.* exactly.

    Supports numbers, + - * / %, unary minus, parentheses and min/max/floor/ceil: what the rate
    formulas in locals.tf use. Anything else raises, so a formula this cannot read fails the test.
    """
    if isinstance(expr, bool):
        raise ValueError("boolean in arithmetic")
    if isinstance(expr, (int, float)):
        return Fraction(str(expr))
    text = expr.strip()
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    return _eval_node(ast.parse(text, mode="eval").body, variables)


def _eval_node(node: ast.AST, variables: dict[str, Any]) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return Fraction(str(node.value))
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        if node.value.id == "var":
            return evaluate(variables[node.attr], variables)
        if node.value.id == "local":
            return evaluate(LOCALS[node.attr], variables)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval_node(node.operand, variables)
    if isinstance(node, ast.BinOp):
        left, right = _eval_node(node.left, variables), _eval_node(node.right, variables)
        ops = {ast.Add: lambda: left + right, ast.Sub: lambda: left - right, ast.Mult: lambda: left * right,
               ast.Div: lambda: left / right, ast.Mod: lambda: left % right}
        for op_type, fn in ops.items():
            if isinstance(node.op, op_type):
                return fn()
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        args = [_eval_node(a, variables) for a in node.args]
        return Fraction(_FUNCS[node.func.id](*args))
    raise ValueError(f"unsupported HCL expression: {ast.dump(node)}")


def default_variables() -> dict[str, Any]:
    return {name: body.get("default") for name, body in VARIABLES.items()}


# ------------------------------------------------------------------ the repo's own contracts
def design_entry_points() -> dict[str, tuple[str, bool]]:
    """docs/design.md's table: folder -> (entry point, public)."""
    text = (ROOT / "docs" / "design.md").read_text()
    rows = re.findall(r"^\|\s*functions/(\w+)\s*\|\s*`(\w+)`\s*\|\s*(yes|no)\s*\|", text, flags=re.M)
    return {folder: (entry, public == "yes") for folder, entry, public in rows}


def design_env_names() -> set[str]:
    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", section))


def function_folders() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "functions").glob("*/main.py"))


# local.function_definitions: access ("public" | "internal" | "operator") -> folder -> entry.
GROUPS = LOCALS["function_definitions"]
HCL_FUNCTIONS = {name: {**spec, "access": access} for access, group in GROUPS.items() for name, spec in group.items()}


# ------------------------------------------------------------------ parse and hygiene
def test_every_tf_file_parses_and_declares_something():
    assert len(DOCS) >= 8, sorted(DOCS)
    for name, doc in DOCS.items():
        assert doc, f"{name} parsed to nothing"


def test_providers_are_pinned_exactly():
    terraform = _collect("terraform")[0]
    providers = terraform["required_providers"][0]
    assert providers["google"]["source"] == "hashicorp/google"
    for name in ("google", "archive"):
        assert re.fullmatch(r"= \d+\.\d+\.\d+", providers[name]["version"]), providers[name]
    provider = _collect("provider")[0]["google"]
    assert provider["project"] == "${var.project}" and provider["region"] == "${var.region}"


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_every_variable_is_typed_documented_and_defaulted(name):
    body = VARIABLES[name]
    assert "type" in body, f"variable {name} has no type"
    assert "default" in body, f"variable {name} has no default"
    assert str(body.get("description", "")).strip(), f"variable {name} has no description"


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)


def test_every_reference_resolves():
    """What `terraform validate` would catch first, without providers: dangling var/local/resource names."""
    # `moved` blocks name old addresses on purpose; the addresses they move to must exist.
    text = "\n".join(s for doc in DOCS.values() for s in _strings({k: v for k, v in doc.items() if k != "moved"}))
    for moved in _collect("moved"):
        rtype, name = moved["to"].strip("${}").split("[")[0].split(".")
        assert (rtype, name) in RESOURCES, f"moved to an undeclared {rtype}.{name}"
    assert set(re.findall(r"\bvar\.([a-z0-9_]+)", text)) <= set(VARIABLES)
    assert set(re.findall(r"\blocal\.([a-z0-9_]+)", text)) <= set(LOCALS)
    for dtype, name in re.findall(r"\bdata\.([a-z0-9_]+)\.([a-z0-9_]+)", text):
        assert (dtype, name) in DATA, f"data.{dtype}.{name} is not declared"
    for rtype, name in re.findall(r"(?<![.\w])(google_[a-z0-9_]+)\.([a-z0-9_]+)", text):
        assert (rtype, name) in RESOURCES, f"{rtype}.{name} is not declared"
    for (rtype, name), body in RESOURCES.items():
        deps = body.get("depends_on", [])
        for dep in (deps[0] if deps and isinstance(deps[0], list) else deps):
            dep = dep.strip("${}")
            assert tuple(dep.split(".")[:2]) in RESOURCES, f"{rtype}.{name} depends on unknown {dep}"


def test_no_placeholders_left_in_terraform():
    for path in sorted(TF.rglob("*")):
        if path.is_file() and ".terraform" not in path.parts and "build" not in path.parts and path.suffix in (".tf", ".py", ".sh", ".md", ".tftpl"):
            text = path.read_text()
            for marker in ("TODO", "FIXME", "XXX"):
                assert marker not in text, f"{path.relative_to(ROOT)} contains {marker}"


# ------------------------------------------------------------------ functions
def test_hcl_functions_match_the_design_table():
    design = design_entry_points()
    assert {"search", "stats", "process_account", "api_fallback", "hva_recalc", "reset_stale"} <= set(design)
    assert set(design) == set(HCL_FUNCTIONS), "docs/design.md's entry-point table and terraform/locals.tf disagree"
    for folder, (entry, public) in design.items():
        assert folder in HCL_FUNCTIONS, f"{folder} has no function in terraform/locals.tf"
        assert HCL_FUNCTIONS[folder]["entry_point"] == entry
        assert (folder in GROUPS["public"]) is public, f"{folder}: public should be {public}"


def test_every_function_folder_has_a_function_resource_with_its_entry_point():
    folders = function_folders()
    assert folders, "no functions/<name>/main.py yet"
    for folder in folders:
        assert folder in HCL_FUNCTIONS, f"functions/{folder} has no entry in terraform/locals.tf"
        entry = HCL_FUNCTIONS[folder]["entry_point"]
        tree = ast.parse((ROOT / "functions" / folder / "main.py").read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert entry in defined, f"functions/{folder}/main.py defines no {entry}() (has {sorted(defined)})"
        assert (ROOT / "functions" / folder / "requirements.txt").is_file(), f"functions/{folder}/requirements.txt missing"


def test_every_function_resource_has_a_folder():
    folders = set(function_folders())
    assert set(HCL_FUNCTIONS) <= folders, f"no functions/ folder for {sorted(set(HCL_FUNCTIONS) - folders)}"


def test_public_set_agrees_with_the_checkov_policy():
    import importlib.util
    import sys

    policies = TF / "checkov_policies"
    spec = importlib.util.spec_from_file_location("_stellarmap_policy_values", policies / "_values.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert set(module.PUBLIC_FUNCTIONS) == set(GROUPS["public"]) == {"search", "stats"}


def test_one_function_resource_for_every_function():
    """Issue 16: the functions are declared once, in one typed map, and one resource iterates it."""
    kinds = [name for rtype, name in RESOURCES if rtype == "google_cloudfunctions2_function"]
    assert kinds == ["function"], f"one google_cloudfunctions2_function resource, not {kinds}"
    assert set(GROUPS) == {"public", "internal", "operator"}
    assert sum(len(g) for g in GROUPS.values()) == len(HCL_FUNCTIONS), "a function is in two access groups"
    fields = {"entry_point", "invokers", "enqueues", "bigquery", "env"}
    for name, spec in HCL_FUNCTIONS.items():
        assert set(spec) - {"access"} == fields, (name, sorted(spec))
        assert set(spec["invokers"]) <= {"tasks", "scheduler"}, name
        assert bool(spec["invokers"]) == (spec["access"] == "internal"), f"{name}: invokers are for internal functions, and every one needs one"
    typed = LOCALS["functions"]
    assert "tomap(merge([" in typed and "local.function_definitions" in typed, "the map every resource iterates is typed by tomap()"
    assert "var.function_sizing[k]" in typed
    assert re.search(r'ingress\s*=\s*f\.access == "internal" \? "ALLOW_INTERNAL_ONLY" : "ALLOW_ALL"', typed), typed
    moved = {(m["from"].strip("${}"), m["to"].strip("${}")) for m in _collect("moved")}
    # The functions deployed while there were three resources (public, internal, operator).
    before = {"search", "stats", "process_account", "api_fallback", "hva_recalc", "reset_stale", "bulk_queue"}
    assert moved == {
        (f'google_cloudfunctions2_function.{access}["{name}"]', f'google_cloudfunctions2_function.function["{name}"]')
        for access, group in GROUPS.items() for name in group if name in before
    }, "every instance deployed before the merge into one resource is moved, not replaced"


def test_function_resource():
    fn = RESOURCES[("google_cloudfunctions2_function", "function")]
    assert fn["for_each"] == "${local.functions}"
    build = fn["build_config"][0]
    assert build["runtime"] == "python311"
    assert build["entry_point"] == "${each.value.entry_point}"
    storage = build["source"][0]["storage_source"][0]
    assert storage["object"] == "${google_storage_bucket_object.function_zip[each.key].name}"
    service = fn["service_config"][0]
    assert service["ingress_settings"] == "${each.value.ingress}"
    assert service["environment_variables"] == "${local.function_environment[each.key]}"
    assert service["service_account_email"] == "${google_service_account.function[each.key].email}"
    for field, key in (("available_memory", "memory"), ("timeout_seconds", "timeout_seconds"), ("max_instance_count", "max_instances")):
        assert service[field] == f"${{each.value.{key}}}"
    secret_env = service["dynamic"][0]["secret_environment_variables"]
    assert secret_env["for_each"] == "${local.function_secret_env}"
    volume = service["secret_volumes"][0]
    assert volume["secret"] == "${var.astra_bundle_secret_id}"
    assert volume["mount_path"] == "${local.astra_bundle_mount}"
    environment = LOCALS["function_environment"]
    assert 'f.access == "public" ? local.public_function_env : local.function_env' in environment
    assert "f.env" in environment
    conditions = " ".join(p["condition"] for p in fn["lifecycle"][0]["precondition"])
    assert '["public", "internal", "operator"]' in conditions and '["search", "stats"]' in conditions


def test_sizing_covers_exactly_the_functions():
    sizing = default("function_sizing")
    assert set(sizing) == set(HCL_FUNCTIONS)
    for name, size in sizing.items():
        assert re.fullmatch(r"\d+(M|Mi|G|Gi)", size["memory"]), (name, size)
        assert 1 <= size["timeout_seconds"] <= 3600, (name, size)
        assert 0 <= size["min_instances"] <= size["max_instances"], (name, size)


def test_archive_zips_function_files_and_common():
    archive = DATA[("archive_file", "function")]
    assert archive["for_each"] == "${local.functions}"
    sources = archive["dynamic"]
    assert [s["source"]["for_each"] for s in sources] == ["${local.function_files[each.key]}", "${local.common_files}"]
    assert sources[1]["source"]["content"][0]["filename"] == '"common/${source.value}"'
    obj = RESOURCES[("google_storage_bucket_object", "function_zip")]
    assert "output_md5" in obj["name"], "objects must be named by the zip's md5"
    function_files = LOCALS["function_files"]
    assert '"**/*.py"' in function_files and '"requirements.txt"' in function_files
    assert LOCALS["common_files"] == '${fileset(local.common_dir, "**/*.py")}'


# ------------------------------------------------------------------ environment
REQUIRED_ENV = {
    "STELLARMAP_STORE": "cassandra",
    "STELLARMAP_QUEUE": "cloudtasks",
    "HUBBLE_ENGINE": "bigquery",
    "CASSANDRA_KEYSPACE": None,
    "ASTRA_SECURE_BUNDLE_PATH": None,
    "CLOUD_TASKS_PROJECT": None,
    "CLOUD_TASKS_LOCATION": None,
    "LINEAGE_QUEUE": None,
    "API_FALLBACK_QUEUE": None,
    "PROCESS_ACCOUNT_URL": None,
    "API_FALLBACK_URL": None,
    "TASKS_INVOKER_SA": None,
    "CORS_ORIGINS": None,
    "BIGQUERY_PROJECT": None,
    "HUBBLE_DATASET": None,
    "HUBBLE_DBT_DATASET": None,
}


def test_function_environment_matches_the_design():
    env = LOCALS["function_env"]
    for key, value in REQUIRED_ENV.items():
        assert key in env, f"{key} missing from local.function_env"
        if value is not None:
            assert env[key] == value, (key, env[key])
    assert set(env) <= design_env_names(), f"not in docs/design.md: {sorted(set(env) - design_env_names())}"
    assert "ASTRA_TOKEN" not in env, "the token must come from Secret Manager, not a plain variable"
    assert LOCALS["function_secret_env"][0]["key"] == "ASTRA_TOKEN"
    assert LOCALS["function_secret_env"][0]["secret"] == "${var.astra_token_secret_id}"
    assert env["ASTRA_SECURE_BUNDLE_PATH"] == '"${local.astra_bundle_mount}/${local.astra_bundle_file}"'
    assert env["PROCESS_ACCOUNT_URL"] == '${local.function_urls["process_account"]}'
    assert env["API_FALLBACK_URL"] == '${local.function_urls["api_fallback"]}'
    assert env["CORS_ORIGINS"] == "${local.cors_origins}"
    assert "var.site_origin" in LOCALS["cors_origins"]


def _design_trusted_hops_on_gcp() -> int:
    """What docs/design.md says SEARCH_TRUSTED_PROXY_HOPS must be on GCP ("... N on GCP ...")."""
    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"SEARCH_TRUSTED_PROXY_HOPS \(.*?(\d+) on GCP", section, re.S)
    assert match, "docs/design.md no longer says what SEARCH_TRUSTED_PROXY_HOPS is on GCP"
    return int(match.group(1))


def test_public_functions_key_their_limits_on_the_caller_as_the_design_says():
    env = LOCALS["public_function_env"]
    assert env.startswith("${merge(local.function_env,"), "the public env extends the shared one"
    assert re.search(r"\bSEARCH_TRUSTED_PROXY_HOPS\s*=\s*tostring\(var\.trusted_proxy_hops\)", env), env
    assert default("trusted_proxy_hops") == _design_trusted_hops_on_gcp() == 1
    assert "SEARCH_TRUSTED_PROXY_HOPS" not in LOCALS["function_env"], "only the public functions sit behind the front end"
    from common.ratelimit_clients import trusted_hops

    assert trusted_hops(app_config.Settings.from_env(env={}, extra={"SEARCH_TRUSTED_PROXY_HOPS": str(default("trusted_proxy_hops"))})) == 1


def test_stats_limits_are_wired_and_default_to_the_code():
    from common.read_models import limits

    env = LOCALS["public_function_env"]
    names = set(re.findall(r"\b(STATS_[A-Z_]+)\s*=", env))
    expected = {
        "STATS_RATE_PER_MIN": ("rate_per_min", limits.DEFAULT_RATE_PER_MIN),
        "STATS_BURST": ("burst", limits.DEFAULT_BURST),
        "STATS_EXPORT_RATE_PER_MIN": ("export_rate_per_min", limits.DEFAULT_EXPORT_RATE_PER_MIN),
        "STATS_EXPORT_BURST": ("export_burst", limits.DEFAULT_EXPORT_BURST),
        "STATS_MAX_CONCURRENT_EXPORTS": ("max_concurrent_exports", limits.DEFAULT_MAX_CONCURRENT_EXPORTS),
        "STATS_MAX_CONCURRENT_EXPORTS_PER_CLIENT": ("max_concurrent_exports_per_client", limits.DEFAULT_MAX_CONCURRENT_EXPORTS_PER_CLIENT),
    }
    assert names == set(expected)
    assert names | {"SEARCH_TRUSTED_PROXY_HOPS"} <= design_env_names(), "docs/design.md lists every variable"
    for name, (field, code_default) in expected.items():
        assert re.search(rf"\b{name}\s*=\s*tostring\(var\.stats_client_limits\.{field}\)", env), name
        assert default("stats_client_limits")[field] == code_default, field


def test_urls_in_the_environment_are_deterministic_cloud_run_urls():
    # No reference to a function resource inside the environment: that would be a cycle.
    assert "google_cloudfunctions2_function" not in str(LOCALS["function_env"])
    assert "https://${name}-${data.google_project.this.number}.${var.region}.run.app" in LOCALS["function_urls"]


def test_defaults_agree_with_common_config():
    settings = app_config.Settings()
    assert default("astra_keyspace") == settings.cassandra_keyspace
    assert default("hubble_dataset") == app_config.DEFAULT_HUBBLE_DATASET
    assert default("hubble_dbt_dataset") == app_config.DEFAULT_HUBBLE_DBT_DATASET
    assert default("horizon_url_public") == app_config.DEFAULT_HORIZON_URLS["public"]
    assert default("horizon_url_testnet") == app_config.DEFAULT_HORIZON_URLS["testnet"]
    assert default("expert_url") == app_config.DEFAULT_EXPERT_URL
    assert default("horizon_max_per_hour") == rates.HORIZON_MAX_PER_HOUR == app_config.PIPELINE_CONFIG_DEFAULTS["horizon_max_per_hour"]
    assert default("expert_max_per_minute") == rates.EXPERT_MAX_PER_MINUTE == app_config.PIPELINE_CONFIG_DEFAULTS["expert_max_per_minute"]
    assert default("upstream_rate_pct") == rates.UPSTREAM_RATE_PCT == app_config.PIPELINE_CONFIG_DEFAULTS["upstream_rate_pct"]
    assert default("horizon_calls_per_task") == rates.HORIZON_CALLS_PER_TASK
    assert default("expert_calls_per_task") == rates.EXPERT_CALLS_PER_TASK
    from common.domain import NETWORKS

    assert default("networks") == list(NETWORKS)


# ------------------------------------------------------------------ queues
def test_queue_rate_limits_agree_with_common_rates():
    variables = default_variables()
    queues = LOCALS["queues"]
    expected = {"api-fallback": rates.api_fallback_limits(), "lineage": rates.lineage_limits(), "hubble-sync": rates.hubble_sync_limits()}
    assert set(queues) == set(expected)
    for name, limits in expected.items():
        q = queues[name]
        assert float(evaluate(q["max_dispatches_per_second"], variables)) == limits.max_dispatches_per_second, name
        assert evaluate(q["max_concurrent_dispatches"], variables) == limits.max_concurrent_dispatches, name
        assert evaluate(q["max_burst_size"], variables) == limits.max_burst_size, name
    retry = default("queue_retry")
    assert retry["max_attempts"] == rates.MAX_ATTEMPTS
    assert retry["min_backoff_s"] == rates.MIN_BACKOFF_S
    assert retry["max_backoff_s"] == rates.MAX_BACKOFF_S
    assert retry["max_doublings"] == rates.MAX_DOUBLINGS


def test_api_fallback_rate_at_the_public_defaults_is_below_one_and_explained():
    rate = evaluate(LOCALS["queues"]["api-fallback"]["max_dispatches_per_second"], default_variables())
    assert rate == Fraction(71, 100)  # 3600 req/h x 71% / 1 call (the lightest task) / 3600 s
    assert rate < 1
    reason = default("api_fallback_slow_rate_reason")
    assert "0.71" in reason and "Horizon" in reason
    queue = RESOURCES[("google_cloud_tasks_queue", "queue")]
    preconditions = queue["lifecycle"][0]["precondition"]
    assert any("slow_rate_reason" in p["condition"] for p in preconditions)


def test_api_fallback_concurrency_is_what_one_limiter_serves():
    """The queue never has more tasks in flight than the function takes (Cloud Run would refuse the
    rest with 429s), and the in-process limiters split the budget between exactly the instances that
    can run (UPSTREAM_PROCESSES, 1 when unset): otherwise N instances would each spend the whole share."""
    sizing = default("function_sizing")["api_fallback"]
    queue = LOCALS["queues"]["api-fallback"]
    concurrent = evaluate(queue["max_concurrent_dispatches"], default_variables())
    assert concurrent == sizing["max_instances"] * sizing["concurrency"] == rates.API_FALLBACK_MAX_CONCURRENT
    processes = int(str(LOCALS["function_env"].get("UPSTREAM_PROCESSES", "1")).strip('"'))
    assert processes == sizing["max_instances"]


@settings(max_examples=200, deadline=None)
@given(
    horizon=st.integers(min_value=60, max_value=1_000_000),
    expert=st.integers(min_value=1, max_value=100_000),
    pct=st.integers(min_value=1, max_value=100),
    horizon_calls=st.integers(min_value=1, max_value=2000).map(lambda n: n / 100),
    expert_calls=st.integers(min_value=1, max_value=2000).map(lambda n: n / 100),
)
def test_api_fallback_rate_formula_stays_inside_both_budgets(horizon, expert, pct, horizon_calls, expert_calls):
    variables = default_variables() | {
        "horizon_max_per_hour": horizon,
        "expert_max_per_minute": expert,
        "upstream_rate_pct": pct,
        "horizon_calls_per_task": horizon_calls,
        "expert_calls_per_task": expert_calls,
    }
    rate = evaluate(LOCALS["api_fallback_rate"], variables)
    horizon_budget = Fraction(horizon * pct, 100 * 3600)
    expert_budget = Fraction(expert * pct, 100 * 60)
    h_calls, e_calls = Fraction(str(horizon_calls)), Fraction(str(expert_calls))
    assert rate * h_calls <= horizon_budget
    assert rate * e_calls <= expert_budget
    # and it is the tightest of the two, rounded down to 4 decimals (never up past the budget)
    exact = min(horizon_budget / h_calls, expert_budget / e_calls)
    assert exact - Fraction(1, 10000) < rate <= exact
    # common/queue/rates.py computes it exactly as Terraform does.
    python = rates.api_fallback_limits(horizon, expert, pct, horizon_calls, expert_calls).max_dispatches_per_second
    assert python == float(rate)


def test_queues_target_internal_functions_invoked_by_the_tasks_account():
    queue = RESOURCES[("google_cloud_tasks_queue", "queue")]
    assert queue["for_each"] == "${local.queues}"
    target = queue["http_target"][0]
    assert target["uri_override"][0]["uri_override_enforce_mode"] == "ALWAYS"
    assert target["oidc_token"][0]["service_account_email"] == "${google_service_account.tasks_invoker.email}"
    assert target["oidc_token"][0]["audience"] == "${local.function_urls[each.value.target]}"
    targets = {name: q["target"] for name, q in LOCALS["queues"].items()}
    assert targets == QUEUE_TARGETS, "terraform/locals.tf's queues and common/queue/port.py's QUEUE_TARGETS disagree"
    internal = GROUPS["internal"]
    for name, fn in targets.items():
        assert fn in internal, f"queue {name} targets {fn}, which is not an internal function"
        assert "tasks" in internal[fn]["invokers"], f"the tasks invoker may not call {fn}"
    fed = {fn for fn, spec in internal.items() if "tasks" in spec["invokers"]}
    assert fed == set(targets.values()), "a function invoked by the tasks account has no queue"
    for fn, spec in HCL_FUNCTIONS.items():
        assert set(spec["enqueues"]) <= set(LOCALS["queues"]), f"{fn} enqueues on an unknown queue"
    assert queue["retry_config"][0]["max_attempts"] == "${var.queue_retry.max_attempts}"
    assert queue["rate_limits"][0] == {
        "max_dispatches_per_second": "${each.value.max_dispatches_per_second}",
        "max_concurrent_dispatches": "${each.value.max_concurrent_dispatches}",
    }


def test_scheduler_jobs_target_internal_functions_with_oidc_and_retry():
    schedules = LOCALS["schedules"]
    assert {k: s["target"] for k, s in schedules.items()} == {"hva_recalc": "hva_recalc", "reset_stale": "reset_stale", "hubble_sync_daily": "hubble_sync"}
    assert default("hva_recalc_schedule") == "0 * * * *"
    assert default("reset_stale_schedule") == "*/15 * * * *"
    internal = GROUPS["internal"]
    for s in schedules.values():
        assert s["target"] in internal and "scheduler" in internal[s["target"]]["invokers"]
    assert {fn for fn, spec in internal.items() if "scheduler" in spec["invokers"]} == {s["target"] for s in schedules.values()}
    job = RESOURCES[("google_cloud_scheduler_job", "job")]
    http = job["http_target"][0]
    assert http["uri"] == "${google_cloudfunctions2_function.function[each.value.target].service_config[0].uri}"
    assert job["attempt_deadline"] == '"${min(local.functions[each.value.target].timeout_seconds, 1800)}s"'
    assert http["oidc_token"][0]["service_account_email"] == "${google_service_account.scheduler_invoker.email}"
    assert job["retry_config"][0]["retry_count"] == "${var.scheduler_retry_count}"


# ------------------------------------------------------------------ the network-wide Hubble sync (issue 15)
def test_hubble_sync_function_queue_and_job_match_common():
    """docs/design.md's last section: the internal hubble_sync function, the hubble-sync queue (one
    dispatch at a time) and the daily job, named as common/ names them."""
    from common.handlers import hubble_sync
    from common.queue.cloud_tasks import SYNC_SETTINGS
    from common.queue.port import SYNC_QUEUE
    from stellarmap_cli.jobs import JOBS, SchedulerTarget

    fn = GROUPS["internal"]["hubble_sync"]
    assert fn["entry_point"] == "hubble_sync" and set(fn["invokers"]) == {"tasks", "scheduler"}
    assert fn["enqueues"] == [SYNC_QUEUE] and fn["bigquery"] is True
    assert (ROOT / "common" / "handlers" / "hubble_sync.py").is_file()

    queue = LOCALS["queues"][SYNC_QUEUE]
    assert queue["target"] == QUEUE_TARGETS[SYNC_QUEUE] == "hubble_sync"
    assert queue["name"] == '"${var.name_prefix}-hubble-sync"'
    assert evaluate(queue["max_concurrent_dispatches"], default_variables()) == 1 == rates.HUBBLE_SYNC_MAX_CONCURRENT

    # Its queue's settings reach exactly the functions that enqueue on it (cloud_tasks.py: both or neither).
    sync_env = LOCALS["sync_queue_env"]
    assert set(sync_env) == set(SYNC_SETTINGS) == {"HUBBLE_SYNC_QUEUE", "HUBBLE_SYNC_URL"}
    assert sync_env["HUBBLE_SYNC_QUEUE"] == f'${{local.queues["{SYNC_QUEUE}"].name}}'
    assert sync_env["HUBBLE_SYNC_URL"] == '${local.function_urls["hubble_sync"]}'
    assert f'contains(f.enqueues, "{SYNC_QUEUE}") ? local.sync_queue_env : {{}}' in LOCALS["function_environment"]
    assert not set(SYNC_SETTINGS) & set(LOCALS["function_env"]) and not set(SYNC_SETTINGS) & set(LOCALS["public_function_env"])

    # Its budget: a typed, validated variable, passed as HUBBLE_SYNC_BUDGET_USD, defaulting to the code's.
    assert fn["env"] == {"HUBBLE_SYNC_BUDGET_USD": "${tostring(var.hubble_sync_budget_usd)}"}
    budget = VARIABLES["hubble_sync_budget_usd"]
    assert budget["type"] == "number" and budget["default"] == hubble_sync.DEFAULT_BUDGET_USD
    condition = budget["validation"][0]["condition"]
    assert "var.hubble_sync_budget_usd > 0" in condition and "1000000" in condition
    assert set(fn["env"]) | set(SYNC_SETTINGS) <= design_env_names()
    assert default("function_sizing")["hubble_sync"]["timeout_seconds"] >= hubble_sync.TASK_SECONDS

    # The daily job posts {"network", "mode": "daily"} with OIDC (the job resource is shared, tested above),
    # is named as `stellarmap jobs` names it, and only for networks that are served.
    daily = LOCALS["schedules"]["hubble_sync_daily"]
    assert daily["target"] == "hubble_sync" and daily["body"] == {"mode": "daily"}
    assert daily["networks"] == "${var.hubble_sync_networks}" and default("hubble_sync_networks") == ["public"]
    assert "hubble_sync_daily" in JOBS
    assert SchedulerTarget("p", "l").job_name("hubble_sync_daily", "public").endswith("/jobs/stellarmap-hubble-sync-daily-public")
    job = RESOURCES[("google_cloud_scheduler_job", "job")]
    assert job["name"] == '"${var.name_prefix}-${replace(each.value.job, "_", "-")}-${each.value.network}"'
    assert job["http_target"][0]["body"] == "${base64encode(jsonencode(merge(each.value.body, {network = each.value.network})))}"
    assert any("contains(var.networks, each.value.network)" in p["condition"] for p in job["lifecycle"][0]["precondition"])


# ------------------------------------------------------------------ IAM
def test_only_search_and_stats_are_public():
    public = RESOURCES[("google_cloud_run_v2_service_iam_binding", "public_invoker")]
    assert public["for_each"] == "${local.function_definitions.public}"
    assert public["members"] == ["allUsers"]
    internal = RESOURCES[("google_cloud_run_v2_service_iam_binding", "internal_invoker")]
    assert internal["for_each"] == "${local.function_definitions.internal}"
    assert "allUsers" not in str(internal) and "allAuthenticatedUsers" not in str(internal)
    assert "allUsers" not in str(LOCALS["invoker_members"])
    operator = RESOURCES[("google_cloud_run_v2_service_iam_binding", "operator_invoker")]
    assert operator["members"] == "${var.operator_members}"
    assert "local.function_definitions.operator" in operator["for_each"]
    for binding in (public, internal, operator):
        assert binding["name"] == "${google_cloudfunctions2_function.function[each.key].name}"
    assert default("operator_members") == []
    condition = VARIABLES["operator_members"]["validation"][0]["condition"]
    pattern = re.search(r'regex\("([^"]+)"', condition).group(1).replace("\\\\", "\\")
    assert re.match(pattern, "group:ops@example.com")
    assert not re.match(pattern, "allUsers") and not re.match(pattern, "allAuthenticatedUsers")
    # every function is in exactly one group, and search/stats are the only public ones
    groups = [set(g) for g in GROUPS.values()]
    assert sum(len(g) for g in groups) == len(set().union(*groups))
    for (rtype, name), body in RESOURCES.items():
        if "allUsers" in str(body) or "allAuthenticatedUsers" in str(body):
            assert (rtype, name) in {
                ("google_cloud_run_v2_service_iam_binding", "public_invoker"),
                ("google_storage_bucket_iam_member", "site_public_read"),
            }, f"{rtype}.{name} grants a public principal"


def test_function_service_accounts_may_enqueue_and_act_as_the_invoker_only():
    enqueuer = RESOURCES[("google_cloud_tasks_queue_iam_member", "enqueuer")]
    assert enqueuer["role"] == "roles/cloudtasks.enqueuer"
    act_as = RESOURCES[("google_service_account_iam_member", "act_as_tasks_invoker")]
    assert act_as["role"] == "roles/iam.serviceAccountUser"
    assert act_as["service_account_id"] == "${google_service_account.tasks_invoker.name}"
    project_roles = {body["role"] for (rtype, _), body in RESOURCES.items() if rtype == "google_project_iam_member"}
    assert project_roles == {"roles/bigquery.jobUser", "roles/logging.logWriter"}
    assert not any(rtype in ("google_project_iam_binding", "google_project_iam_policy") for rtype, _ in RESOURCES)
    bigquery = {k for k, f in HCL_FUNCTIONS.items() if f["bigquery"]}
    assert bigquery == {"process_account", "hubble_sync"}


# ------------------------------------------------------------------ site and outputs
def test_site_bucket_is_uniform_versioned_and_public_only_for_site_objects():
    site = RESOURCES[("google_storage_bucket", "site")]
    assert site["uniform_bucket_level_access"] is True
    assert site["versioning"][0]["enabled"] is True
    sources = RESOURCES[("google_storage_bucket", "sources")]
    assert sources["public_access_prevention"] == "enforced"
    read = RESOURCES[("google_storage_bucket_iam_member", "site_public_read")]
    assert read["bucket"] == "${google_storage_bucket.site.name}" and read["role"] == "roles/storage.objectViewer"
    config = RESOURCES[("google_storage_bucket_object", "site_config")]
    assert config["name"] == "config.js"
    assert 'deployed_urls["search"]' in str(config["content"]) and 'deployed_urls["stats"]' in str(config["content"])
    template = (TF / "templates" / "config.js.tftpl").read_text()
    assert "window.STELLARMAP_CONFIG = ${config};" in template


def _top_level_keys(js_object: str) -> set[str]:
    """Keys at depth 1 of a JavaScript object literal ({a: 1, "b": {c: 2}} -> {a, b})."""
    keys, depth, token = set(), 0, ""
    in_string = None
    for ch in js_object:
        if in_string:
            token += ch
            if ch == in_string:
                in_string = None
            continue
        if ch in "\"'`":
            in_string = ch
            token += ch
        elif ch in "{[(":
            depth += 1
            token = ""
        elif ch in "}])":
            depth -= 1
            token = ""
        elif ch == ":" and depth == 1:
            name = token.strip().strip("\"'")
            if re.fullmatch(r"[A-Za-z_$][\w$]*", name):
                keys.add(name)
            token = ""
        elif ch == "," and depth == 1:
            token = ""
        else:
            token += ch
    return keys


def test_generated_config_js_has_the_shape_of_the_site_config():
    site_config = ROOT / "static_site" / "config.js"
    assert site_config.is_file(), "static_site/config.js does not exist yet"
    # only whole-line comments: "//" also occurs inside the URLs
    text = re.sub(r"(?m)^\s*//[^\n]*", "", site_config.read_text())
    match = re.search(r"window\.STELLARMAP_CONFIG\s*=\s*(\{.*\})\s*;?", text, flags=re.S)
    assert match, "static_site/config.js does not assign window.STELLARMAP_CONFIG = {...}"
    site_keys = _top_level_keys(match.group(1))
    content = RESOURCES[("google_storage_bucket_object", "site_config")]["content"]
    terraform_keys = set(re.findall(r"\b([A-Za-z_]\w*)\s*=\s*(?:local|var)\.", content))
    # the site requires searchUrl and statsUrl; every other key is optional with a default in js/api.js
    assert {"searchUrl", "statsUrl"} <= terraform_keys, f"terraform/site.tf writes {sorted(terraform_keys)}"
    assert terraform_keys <= site_keys, f"terraform/site.tf writes {sorted(terraform_keys)}, the site reads {sorted(site_keys)}"


def test_outputs():
    outputs = {name for item in _collect("output") for name in item}
    assert {"function_urls", "site_url", "queue_names", "search_url", "stats_url"} <= outputs
