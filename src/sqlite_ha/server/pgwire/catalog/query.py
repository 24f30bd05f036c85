"""Queries over the PostgreSQL catalog, rewritten for the catalog database: arrays, reg* casts, column types.

Clients' catalog queries lean on PostgreSQL's arrays (``unnest(indkey)``, ``generate_subscripts``,
``array_agg(… ORDER BY …)``, ``indkey[0]``, ``= ANY(conkey)``) and on the reg* types (``oid::regclass``
prints a name, compares as an OID). ``rewrite`` turns a parsed query (sqlglot, PostgreSQL) into one SQLite
runs with the functions of ``catalog_functions``, before the general translation in ``dialect`` runs:

* a set-returning function in a select list (``unnest``, ``generate_subscripts``, ``generate_series``)
  becomes a join on ``json_each(pg_positions(…))``, one row per position, in lockstep as in PostgreSQL;
* ``unnest(…) [WITH ORDINALITY]`` and ``generate_series(…)`` in FROM become ``json_each``, with their
  columns renamed to ``value`` and ``key + 1``;
* ``array_agg`` becomes ``json_group_array``, ``ARRAY(subquery)`` a ``json_group_array`` over it,
  ``a[i]`` ``pg_element``, and ``= ANY(array)`` reads any array form through ``pg_json``;
* ``x::regclass`` (and the other reg* types) is the object's name where it is output or cast to text, and
  its OID elsewhere.

Result columns computed by an expression have no declared type in SQLite, so ``rewrite`` also returns a
comment to put before the SQL naming the PostgreSQL type of each output column it can infer
(``/* pg_types: int8,_text,,bool */``); the catalog announces those types (arrays as arrays).
"""

from __future__ import annotations

from sqlglot import exp

from sqlite_ha.server.pgwire.catalog.schema import CATALOG_OIDS, column_types

DType = exp.DataType.Type

_REG_NAMES = {"regclass", "regtype", "regnamespace", "regproc", "regprocedure", "regrole", "regoper"}
_TEXT_TYPES = {DType.TEXT, DType.VARCHAR, DType.NAME, DType.CHAR, DType.BPCHAR}
_CAST_TYPES = {
    DType.INT: "int4",
    DType.BIGINT: "int8",
    DType.SMALLINT: "int2",
    DType.TEXT: "text",
    DType.VARCHAR: "varchar",
    DType.CHAR: "bpchar",
    DType.BPCHAR: "bpchar",
    DType.NAME: "name",
    DType.BOOLEAN: "bool",
    DType.DOUBLE: "float8",
    DType.FLOAT: "float4",
    DType.DECIMAL: "numeric",
}
# what the catalog's functions return, where a client reads the type (JDBC: getBoolean on a bool column)
_FUNCTION_TYPES = {
    "pg_is_in_recovery": "bool",
    "pg_backend_pid": "int4",
    "current_schemas": "_name",
    "pg_table_is_visible": "bool",
    "pg_type_is_visible": "bool",
    "pg_function_is_visible": "bool",
    "has_table_privilege": "bool",
    "has_schema_privilege": "bool",
    "has_database_privilege": "bool",
    "current_setting": "text",
    "set_config": "text",
    "pg_get_expr": "text",
    "pg_get_indexdef": "text",
    "pg_get_constraintdef": "text",
    "pg_get_viewdef": "text",
    "format_type": "text",
    "pg_postmaster_start_time": "timestamptz",
    "pg_get_serial_sequence": "text",
    "json_build_object": "json",  # SQLAlchemy's identity_options: psycopg must decode it
    "json_object": "json",
}
_BOOLEAN = (exp.Predicate, exp.Not, exp.Connector, exp.Boolean, exp.LogicalAnd, exp.LogicalOr)


def rewrite(statement: exp.Expr) -> str:
    """Rewrite ``statement`` in place; return the comment naming its output columns' types (or "")."""
    types = output_types(statement)
    for select in list(statement.find_all(exp.Select)):
        _inline_lateral(select)
    for column in list(statement.find_all(exp.Column)):
        if column.name.lower() == "tableoid":
            _rewrite_tableoid(column)
    for source in list(statement.find_all(exp.Table)):
        if isinstance(source.this, exp.Anonymous) and source.this.name.lower() == "pg_options_to_table":
            _rewrite_options_to_table(source)
    for dot in list(statement.find_all(exp.Dot)):
        _rewrite_record_field(dot)
    for cast in list(statement.find_all(exp.Cast)):
        _rewrite_reg_cast(cast)
    for n, select in enumerate(list(statement.find_all(exp.Select))):
        _rewrite_set_returning_functions(select, f"_srf{n}")
    for table in list(statement.find_all(exp.Unnest, exp.Table)):
        _rewrite_table_function(table)
    for array in list(statement.find_all(exp.ArrayAgg, exp.Array, exp.Bracket, exp.Any, exp.All)):
        _rewrite_array_syntax(array)
    if not any(types):
        return ""
    return f"/* pg_types: {','.join(t or '' for t in types)} */ "


def _inline_lateral(select: exp.Select) -> None:
    """``CROSS JOIN LATERAL (SELECT f(x.a)) AS o(n)`` (no FROM: one row): SQLite has no LATERAL, so ``o.n``
    becomes ``f(x.a)`` where it is used and the join goes (pgbench finds its tables with such a query)."""
    for join in list(select.args.get("joins") or []):
        lateral = join.this
        if not isinstance(lateral, exp.Lateral) or join.args.get("kind", "").upper() not in ("CROSS", ""):
            continue
        inner = lateral.this.this if isinstance(lateral.this, exp.Subquery) else None
        alias = lateral.args.get("alias")
        if not isinstance(inner, exp.Select) or inner.args.get("from_") or inner.args.get("from"):
            continue
        if not isinstance(alias, exp.TableAlias) or not alias.columns:
            continue
        names = [c.name for c in alias.columns]
        if len(names) != len(inner.expressions):
            continue
        values = {n: e.unalias() for n, e in zip(names, inner.expressions, strict=True)}
        join.pop()
        for column in list(select.find_all(exp.Column)):
            if column.table == alias.name and column.name in values:
                column.replace(exp.Paren(this=values[column.name].copy()))


def _call(name: str, *args: exp.Expr) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


# --- output column types -----------------------------------------------------------------------------------


def output_types(statement: exp.Expr) -> list[str | None]:
    """The PostgreSQL type of each output column, as far as it can be told (None: SQLite's own)."""
    select = _leftmost(statement)
    if select is None:
        return []
    types: list[str | None] = []
    for projection in select.expressions:
        if isinstance(projection, exp.Star) or (
            isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
        ):
            break  # the columns after a * are not counted; the ones it stands for keep SQLite's types
        types.append(_type(projection, 0))
    return types


def _leftmost(query: exp.Expr) -> exp.Select | None:
    while isinstance(query, exp.SetOperation | exp.Subquery):
        query = query.this
    return query if isinstance(query, exp.Select) else None


def _type(node: exp.Expr, depth: int) -> str | None:
    if depth > 32:
        return None
    depth += 1
    if isinstance(node, exp.Alias | exp.Paren):
        return _type(node.this, depth)
    if isinstance(node, exp.Cast):
        return _cast_type(node.to)
    if isinstance(node, _BOOLEAN):
        return "bool"
    if isinstance(node, exp.Count):
        return "int8"
    if isinstance(node, exp.Literal) and not node.is_string:
        return "int4" if node.this.lstrip("-").isdigit() else "numeric"
    if isinstance(node, exp.Min | exp.Max | exp.Coalesce):
        return _first_known([node.this, *node.expressions], depth)
    if isinstance(node, exp.Case):
        return _first_known(
            [*(i.args.get("true") for i in node.args.get("ifs") or []), node.args.get("default")], depth
        )
    if isinstance(node, exp.ArrayAgg):
        inner = node.this.this if isinstance(node.this, exp.Order) else node.this
        return _array_of(_type(inner, depth))
    if isinstance(node, exp.Array):
        first = node.expressions[0] if node.expressions else None
        if isinstance(first, exp.Query):
            return _array_of(_query_column_type(first, None, depth))
        return _array_of(_type(first, depth) if first is not None else None)
    if isinstance(node, exp.Subquery):
        return _query_column_type(node.this, None, depth)
    if isinstance(node, exp.Explode):
        return _element_of(_type(node.this, depth))
    if isinstance(node, exp.Anonymous) and node.name.lower() == "generate_subscripts":
        return "int4"
    if isinstance(node, exp.Func):
        name = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
        if name.lower() in _FUNCTION_TYPES:
            return _FUNCTION_TYPES[name.lower()]
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Identifier):
        inner = node.this.this if isinstance(node.this, exp.Paren) else None
        if isinstance(inner, exp.Dot):
            inner = inner.expression
        if isinstance(inner, exp.Anonymous) and inner.name.lower() == "_pg_expandarray":
            return "int4" if node.expression.name.lower() == "n" else "int2"
    if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
        return _column_type(node, depth)
    return None


def _first_known(nodes: list[exp.Expr | None], depth: int) -> str | None:
    for node in nodes:
        found = _type(node, depth) if node is not None else None
        if found:
            return found
    return None


def _cast_type(to: exp.Expr) -> str | None:
    if isinstance(to, exp.ObjectIdentifier):
        name = to.name.lower()
        return "text" if name in _REG_NAMES else name
    if not isinstance(to, exp.DataType):
        return None
    if to.this == DType.ARRAY and to.expressions:
        return _array_of(_cast_type(to.expressions[0]))
    return _CAST_TYPES.get(to.this)


def _array_of(element: str | None) -> str:
    if element is None:
        return "_text"
    return element if element.startswith("_") or element.endswith("vector") else f"_{element}"


def _element_of(array: str | None) -> str | None:
    if array is None:
        return None
    return {"int2vector": "int2", "oidvector": "oid"}.get(array, array[1:] if array.startswith("_") else None)


def _column_type(column: exp.Column, depth: int) -> str | None:
    """The type of a column reference: a catalog table's column, or an output of a subquery or CTE."""
    select = column.parent_select
    while select is not None:
        for source in _sources(select):
            if column.table and column.table != source.alias_or_name:
                continue
            query, names = _query_of(source)
            if isinstance(source, exp.Table) and isinstance(
                source.this, exp.ExplodingGenerateSeries | exp.GenerateSeries
            ):
                found: str | None = "int4"  # generate_series of integers
            elif query is not None:
                found = _query_column_type(query, column.name, depth, names)
            else:
                found = _table_column_type(source.name, column.name)
            if found or column.table:
                return found
        select = select.parent_select
    return None


def _sources(select: exp.Select) -> list[exp.Expr]:
    from_ = select.args.get("from_")
    found = [from_.this] if isinstance(from_, exp.From) else []
    return found + [join.this for join in select.args.get("joins") or []]


def _query_of(source: exp.Expr) -> tuple[exp.Expr | None, list[str]]:
    """The query behind a FROM item (a subquery, or a table that names a CTE) and its column list."""
    if isinstance(source, exp.Subquery):
        return source.this, []
    if isinstance(source, exp.Table) and not source.args.get("db"):
        scope: exp.Expr | None = source
        while scope is not None:
            with_ = scope.args.get("with_") if isinstance(scope, exp.Query) else None
            if isinstance(with_, exp.With):
                for cte in with_.expressions:
                    if cte.alias_or_name == source.name:
                        return cte.this, [c.name for c in cte.args["alias"].columns]
            scope = scope.parent
    return None, []


def _query_column_type(
    query: exp.Expr, name: str | None, depth: int, names: list[str] | None = None
) -> str | None:
    """The type of a query's output column ``name`` (its first when None); ``names`` are a CTE's own."""
    select = _leftmost(query)
    if select is None or not select.expressions:
        return None
    projections = select.expressions
    if name is not None and names and name in names:
        index = names.index(name)
    elif name is not None:
        matches = [p for p in projections if p.alias_or_name == name]
        return _type(matches[0], depth) if matches else None
    else:
        index = 0
    return _type(projections[index], depth) if index < len(projections) else None


def _table_column_type(table: str, column: str) -> str | None:
    types = column_types()
    declared = types.get((table.lower(), column.lower()))
    if declared is None:
        return None
    return {"INTEGER": "int8", "TEXT": "text", "BOOLEAN": "bool", "REAL": "float8"}.get(declared, declared)


# --- system columns and functions --------------------------------------------------------------------------


def _rewrite_tableoid(column: exp.Column) -> None:
    """``c.tableoid``: the OID of the catalog the row is in (a system column SQLite's tables have not)."""
    select = column.parent_select
    if select is None:
        return
    for source in _sources(select):
        if column.table and column.table != source.alias_or_name:
            continue
        if isinstance(source, exp.Table) and source.name.lower() in CATALOG_OIDS:
            value: exp.Expr = exp.Literal.number(CATALOG_OIDS[source.name.lower()])
            if isinstance(column.parent, exp.Select):  # a bare output column keeps its name
                value = exp.alias_(value, "tableoid")
            column.replace(value)
            return


def _rewrite_options_to_table(table: exp.Table) -> None:
    """``pg_options_to_table(options)``: no rows (nothing here has options: foreign data, attoptions)."""
    empty = exp.select(exp.alias_(exp.null(), "option_name"), exp.alias_(exp.null(), "option_value")).where(
        exp.false()
    )
    alias = table.args.get("alias")
    table.replace(
        exp.Subquery(this=empty, alias=alias.copy() if alias else exp.TableAlias(this=exp.to_identifier("o")))
    )


def _rewrite_record_field(dot: exp.Dot) -> None:
    """``information_schema._pg_expandarray(a)``: the schema goes (the function is the catalog's own);
    ``(record).field``: a field of a record, which the catalog makes as a JSON object (pgjdbc reads
    ``(information_schema._pg_expandarray(indkey)).n``)."""
    if dot.parent is None:
        return
    inner = dot.this
    if isinstance(inner, exp.Identifier) and inner.name.lower() == "information_schema":
        dot.replace(dot.expression)
    elif isinstance(inner, exp.Paren) and isinstance(dot.expression, exp.Identifier):
        path = exp.Literal.string(f"$.{dot.expression.name.lower()}")
        dot.replace(_call("json_extract", inner.this, path))


# --- reg* casts --------------------------------------------------------------------------------------------


def _rewrite_reg_cast(cast: exp.Cast) -> None:
    """``x::regclass`` → the object's name where it is output or cast to text, else its OID."""
    to = cast.to
    kind = to.name.lower() if isinstance(to, exp.ObjectIdentifier) else ""
    if kind not in _REG_NAMES:
        return
    value = cast.this
    outer = cast.parent
    while isinstance(outer, exp.Paren):
        outer = outer.parent
    as_text = (
        isinstance(outer, exp.Cast) and isinstance(outer.to, exp.DataType) and outer.to.this in _TEXT_TYPES
    )
    projected = isinstance(outer, exp.Select) or (
        isinstance(outer, exp.Alias) and isinstance(outer.parent, exp.Select)
    )
    function = "pg_regname" if as_text or projected else "pg_regoid"
    cast.replace(_call(function, exp.Literal.string(kind), value))


# --- set-returning functions -------------------------------------------------------------------------------


def _rewrite_set_returning_functions(select: exp.Select, alias: str) -> None:
    """``SELECT unnest(a), generate_subscripts(a, 1) FROM t`` → one row per position of the longest array."""
    found: list[tuple[exp.Expr, list[exp.Expr], str]] = []  # (call, its arguments, what it becomes)
    stack: list[exp.Expr] = list(select.expressions)
    while stack:
        node = stack.pop()
        if isinstance(node, exp.Query | exp.Subquery):
            continue
        if isinstance(node, exp.Explode):
            found.append((node, [node.this], "pg_nth"))
        elif (
            isinstance(node, exp.Anonymous)
            and node.name.lower() == "generate_subscripts"
            and node.expressions
        ):
            found.append((node, list(node.expressions), "pg_subscript"))  # (array, dimension)
        elif isinstance(node, exp.Anonymous) and node.name.lower() == "_pg_expandarray" and node.expressions:
            found.append((node, [node.expressions[0]], "pg_expand"))  # records (x, n) as JSON objects
        elif isinstance(node, exp.ExplodingGenerateSeries | exp.GenerateSeries):
            series = _call("pg_series", *(node.args[k] for k in ("start", "end", "step") if node.args.get(k)))
            found.append((node, [series], "pg_nth"))
        else:
            stack.extend(node.iter_expressions())
    if not found:
        return
    rows = exp.Table(
        this=_call("json_each", _call("pg_positions", *(args[0].copy() for _, args, _ in found))),
        alias=exp.TableAlias(this=exp.to_identifier(alias)),
    )
    for call, args, function in found:  # the array, the position, then any other argument
        call.replace(
            _call(function, args[0].copy(), exp.column("value", alias), *(a.copy() for a in args[1:]))
        )
    if isinstance(select.args.get("from_"), exp.From):
        select.append("joins", exp.Join(this=rows, kind="CROSS"))
    else:
        select.set("from_", exp.From(this=rows))


def _rewrite_table_function(node: exp.Expr) -> None:
    """``FROM unnest(a) WITH ORDINALITY AS u(v, n)`` / ``generate_series(…) s`` → ``json_each``."""
    others: list[exp.Expr] = []  # unnest(a, b, …): the arrays after the first, read at the first's index
    if isinstance(node, exp.Unnest) and isinstance(node.parent, exp.From | exp.Join) and node.expressions:
        values = _call("pg_json", node.expressions[0])
        others = [_call("pg_json", e) for e in node.expressions[1:]]
        alias = node.args.get("alias")
        ordinality = node.args.get("offset")
    elif isinstance(node, exp.Table) and isinstance(
        node.this, exp.ExplodingGenerateSeries | exp.GenerateSeries
    ):
        series = node.this
        values = _call("pg_series", *(series.args[k] for k in ("start", "end", "step") if series.args.get(k)))
        alias = node.args.get("alias")
        ordinality = node.args.get("ordinality")
    elif (
        isinstance(node, exp.Table)
        and isinstance(node.this, exp.Anonymous)
        and not node.this.name.lower().startswith(("json_", "pragma_", "pg_json"))
    ):  # a function of one value used as a table (pg_partition_ancestors): one row
        values = _call("json_array", node.this)
        alias = node.args.get("alias")
        ordinality = node.args.get("ordinality")
    else:
        return
    name = alias.name if isinstance(alias, exp.TableAlias) and alias.name else "unnest"
    columns = [c.name for c in alias.columns] if isinstance(alias, exp.TableAlias) else []
    value_name = columns[0] if columns else name
    if isinstance(ordinality, exp.Identifier):  # unnest(…) WITH ORDINALITY AS u(v, n), as sqlglot reads it
        ordinality_name: str | None = ordinality.name
    else:  # f(…) WITH ORDINALITY AS u(v, n): the last column counts
        ordinality_name = columns[-1] if ordinality and len(columns) > 1 else None
    select = node.parent_select
    node.replace(
        exp.Table(this=_call("json_each", values), alias=exp.TableAlias(this=exp.to_identifier(name)))
    )
    if select is None:
        return
    position = exp.Paren(this=exp.Add(this=exp.column("key", name), expression=exp.Literal.number(1)))
    named: dict[str, exp.Expr] = {value_name: exp.column("value", name)}
    for i, other in enumerate(others, start=1):
        path = exp.DPipe(this=exp.Literal.string("$["), expression=exp.column("key", name))
        path = exp.DPipe(this=path, expression=exp.Literal.string("]"))
        named[columns[i] if i < len(columns) else f"unnest_{i}"] = _call("json_extract", other, path)
    if ordinality_name:
        named[ordinality_name] = position
    referenced = list(select.find_all(exp.Column))  # the query's own references, before the star's
    _expand_star(select, name, named)
    for column in referenced:
        if column.table not in ("", name):
            continue
        if column.name in named:
            replacement = named[column.name].copy()
            if isinstance(column.parent, exp.Select):  # an output column keeps its name
                replacement = exp.alias_(replacement, column.name)
            column.replace(replacement)


def _expand_star(select: exp.Select, name: str, named: dict[str, exp.Expr]) -> None:
    """``SELECT * FROM t, unnest(…) u(a, b)``: the star would give json_each's own columns (key, value, …)
    for ``u``; it becomes ``t.*`` and the unnest's columns by their names (Django's index introspection
    reads ``idx.key``, ``idx.option`` from such a subquery)."""
    if not any(isinstance(e, exp.Star) for e in select.expressions):
        return
    sources = [select.args.get("from_"), *(select.args.get("joins") or [])]
    expanded: list[exp.Expr] = []
    for source in sources:
        table = source.this if isinstance(source, exp.From | exp.Join) else None
        if table is None or table.alias_or_name == name:
            continue
        expanded.append(exp.Column(this=exp.Star(), table=exp.to_identifier(table.alias_or_name)))
    for column_name, value in named.items():
        expanded.append(exp.alias_(value.copy(), column_name, quoted=True))
    select.set("expressions", [e for e in select.expressions if not isinstance(e, exp.Star)] + expanded)


# --- arrays ------------------------------------------------------------------------------------------------


def _rewrite_array_syntax(node: exp.Expr) -> None:
    if node.parent is None:
        return  # taken out of the tree by an earlier rewrite
    if isinstance(node, exp.ArrayAgg):
        node.replace(_call("json_group_array", node.this))
    elif isinstance(node, exp.Array) and node.expressions and isinstance(node.expressions[0], exp.Query):
        query = node.expressions[0]
        inner = _leftmost(query)
        if inner is None or not inner.expressions:
            return
        inner.expressions[0].replace(exp.alias_(inner.expressions[0].copy(), "_element"))
        aggregate = exp.select(_call("json_group_array", exp.column("_element"))).from_(
            exp.Subquery(this=query.copy(), alias=exp.TableAlias(this=exp.to_identifier("_elements")))
        )
        node.replace(exp.Subquery(this=aggregate))
    elif (
        isinstance(node, exp.Bracket)
        and len(node.expressions) == 1
        and not isinstance(node.expressions[0], exp.Slice)
    ):
        (subscript,) = exp.apply_index_offset(node.this, node.expressions, 1, dialect="postgres")
        node.replace(_call("pg_element", node.this, subscript))
    elif isinstance(node, exp.Any | exp.All):
        operand = node.this
        while isinstance(operand, exp.Paren):
            operand = operand.this
        if (
            isinstance(operand, exp.Array)
            and operand.expressions
            and isinstance(operand.expressions[0], exp.Query)
        ):
            # = ANY(ARRAY(SELECT …)) is = ANY(SELECT …)
            operand.replace(exp.Subquery(this=operand.expressions[0]))
        elif not isinstance(operand, exp.Query | exp.Subquery | exp.Array):
            node.set("this", _call("pg_json", operand))
