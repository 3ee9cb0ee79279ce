#!/usr/bin/env python3
"""The alert rules and the Grafana dashboard against docs/metrics.md.

    observability_check.py ALERTS DASHBOARD CATALOGUE [--syntax-with-promql-parser]

Checks that every rule has `for`, a `severity` label, and `summary` and `description`
annotations; that the dashboard is valid JSON, uses the `${datasource}` variable for
every panel and target, and has an expression in every target; and that every metric
name an alert or a panel (or a template variable) uses is in the catalogue (a
histogram's `_bucket`, `_sum`, `_count` included). With --syntax-with-promql-parser,
every expression is also parsed with the `promql-parser` package (the fallback when
promtool cannot be had); otherwise the shell script checks syntax with promtool.
Prints each problem and exits 1 if there is any.
"""
import json
import re
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - the shell script installs it
    sys.exit("PyYAML is needed: python3 -m pip install pyyaml")

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "atan2", "start", "end",
}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def catalogue(path):
    """name -> type, from the rows of the Catalogue table."""
    text = open(path, encoding="utf-8").read().split("## Catalogue", 1)[-1]
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.split("|")]
            rows[cells[1].strip("`")] = cells[2]
    if not rows:
        sys.exit(f"{path}: no catalogue rows")
    return rows


def grafana_to_promql(expr):
    """Grafana's variables replaced so the text is plain PromQL."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    expr = expr.replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def metric_names(expr):
    """The metric names an expression uses (a tokenizer, not a parser: strings, label
    matchers, ranges and grouping clauses are dropped, then every identifier that is
    not a function, an aggregation or a keyword is a metric)."""
    s = re.sub(r'"(\\.|[^"\\])*"' + r"|'(\\.|[^'\\])*'", '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = GROUPING.sub(" ", s)
    names = set()
    for m in IDENT.finditer(s):
        word, rest = m.group(0), s[m.end():].lstrip()
        before = s[:m.start()]
        if rest.startswith("("):
            continue  # a function or an aggregation
        if word.lower() in KEYWORDS or re.search(r"[0-9.]$", before):
            continue  # a keyword, or the unit of a number (5m, 1e3)
        names.add(word)
    return names


# Series Prometheus writes itself for every scrape target, not the gateway's.
SCRAPE_SERIES = {"up"}


def known(name, types):
    if name in types or name in SCRAPE_SERIES:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and types.get(base) == "histogram":
            return True
    return False


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    parse = "--syntax-with-promql-parser" in sys.argv
    if len(args) != 3:
        sys.exit(__doc__)
    alerts_path, dashboard_path, catalogue_path = args
    types = catalogue(catalogue_path)
    problems = []
    exprs = []  # (where, PromQL)

    rules = yaml.safe_load(open(alerts_path, encoding="utf-8")) or {}
    for group in rules.get("groups") or []:
        for rule in group.get("rules") or []:
            name = rule.get("alert") or rule.get("record") or "?"
            where = f"{alerts_path}: {name}"
            if "alert" in rule:
                if not rule.get("for"):
                    problems.append(f"{where}: no `for`")
                if not (rule.get("labels") or {}).get("severity"):
                    problems.append(f"{where}: no severity label")
                notes = rule.get("annotations") or {}
                for key in ("summary", "description"):
                    if not notes.get(key):
                        problems.append(f"{where}: no {key} annotation")
            exprs.append((where, str(rule.get("expr", ""))))
    if not exprs:
        problems.append(f"{alerts_path}: no rules")

    try:
        dashboard = json.load(open(dashboard_path, encoding="utf-8"))
    except (OSError, ValueError) as e:
        problems.append(f"{dashboard_path}: not valid JSON: {e}")
        dashboard = {}
    variables = (dashboard.get("templating") or {}).get("list") or []
    if not any(v.get("name") == "datasource" and v.get("type") == "datasource"
               and v.get("query") == "prometheus" for v in variables):
        problems.append(f"{dashboard_path}: no `datasource` variable of Prometheus datasources")
    for v in variables:
        query = v.get("query")
        query = query.get("query", "") if isinstance(query, dict) else str(query or "")
        for m in re.finditer(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,", query):
            exprs.append((f"{dashboard_path}: variable {v.get('name')}", m.group(1)))
    panels = list(dashboard.get("panels") or [])
    for p in list(panels):
        panels.extend(p.get("panels") or [])  # rows
    targets = 0
    for p in panels:
        if p.get("type") == "row":
            continue
        where = f"{dashboard_path}: panel {p.get('title')!r}"
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            problems.append(f"{where}: datasource is not ${{datasource}}")
        if not p.get("targets"):
            problems.append(f"{where}: no targets")
        for t in p.get("targets") or []:
            targets += 1
            if (t.get("datasource") or {}).get("uid", "${datasource}") != "${datasource}":
                problems.append(f"{where}: a target's datasource is not ${{datasource}}")
            if not t.get("expr"):
                problems.append(f"{where}: a target without expr")
            else:
                exprs.append((where, grafana_to_promql(t["expr"])))
    if not targets:
        problems.append(f"{dashboard_path}: no panel with a query")

    if parse:
        import promql_parser  # installed by the shell script
        for where, expr in exprs:
            try:
                promql_parser.parse(expr)
            except Exception as e:  # the parser raises its own ValueError kinds
                problems.append(f"{where}: {expr!r} does not parse: {e}")
    for where, expr in exprs:
        for name in sorted(metric_names(expr)):
            if not known(name, types):
                problems.append(f"{where}: {name} is not in {catalogue_path}")

    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"ok: {len(exprs)} expressions, every metric in {catalogue_path}")


if __name__ == "__main__":
    main()
