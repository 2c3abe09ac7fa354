"""What a query asks of each table, read from its parse tree (pglast): the index advisor's input.

For every SELECT / UPDATE / DELETE: the tables it reads (with aliases), and per column reference
whether it is compared by equality (=, IN, = ANY), by a range (<, >, BETWEEN), used as a join key,
tested against a constant (IS NULL, IS NOT NULL, = true/false: partial-index predicates), or sorted
(ORDER BY with direction). Only top-level AND conjuncts count: an OR cannot use one btree index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pglast import ast, parse_sql
from pglast.enums import A_Expr_Kind, BoolExprType, NullTestType, SortByDir

RANGE_OPERATORS = {"<", ">", "<=", ">="}


@dataclass(frozen=True)
class TableRef:
    schema: str | None
    name: str


@dataclass
class QueryShape:
    tables: dict[str, TableRef] = field(default_factory=dict)  # alias (or name) -> table
    equality: list[tuple[str | None, str]] = field(default_factory=list)  # (qualifier, column)
    ranges: list[tuple[str | None, str]] = field(default_factory=list)
    joins: list[tuple[str | None, str]] = field(default_factory=list)
    constants: list[tuple[str | None, str, str]] = field(default_factory=list)  # (qualifier, column, predicate)
    # column = $n (the parameter whose value normalization hid) and column = 'literal' (a value it shows)
    parameters: list[tuple[str | None, str, int]] = field(default_factory=list)  # (qualifier, column, n)
    literals: list[tuple[str | None, str, str]] = field(default_factory=list)  # (qualifier, column, value)
    order_by: list[tuple[str | None, str, bool]] = field(default_factory=list)  # (qualifier, column, descending)
    has_limit: bool = False
    params: int = 0  # highest $n


class Unparseable(ValueError):
    pass


def _column(node) -> tuple[str | None, str] | None:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if not isinstance(node, ast.ColumnRef):
        return None
    names = [f.sval for f in node.fields if isinstance(f, ast.String)]
    if not names or len(names) != len(node.fields):
        return None  # a star
    return (names[-2] if len(names) >= 2 else None), names[-1]


def _is_value(node) -> bool:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return isinstance(node, ast.ParamRef | ast.A_Const | ast.FuncCall)


def _unwrap(node):
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return node


def _literal(node) -> str | None:
    """The text of a string or number constant (the value a partial-index predicate can name)."""
    node = _unwrap(node)
    if not isinstance(node, ast.A_Const) or node.isnull or isinstance(node.val, ast.Boolean):
        return None
    value = node.val
    for attribute in ("sval", "ival", "fval"):
        if hasattr(value, attribute):
            return str(getattr(value, attribute))
    return None


def _const_bool(node) -> bool | None:
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Boolean):
        return node.val.boolval
    return None


def _operator(expr: ast.A_Expr) -> str:
    return expr.name[-1].sval if expr.name else ""


def _conjuncts(node) -> list:
    if isinstance(node, ast.BoolExpr) and node.boolop == BoolExprType.AND_EXPR:
        found = []
        for arg in node.args:
            found.extend(_conjuncts(arg))
        return found
    return [node] if node is not None else []


def _add_predicate(shape: QueryShape, node) -> None:
    if isinstance(node, ast.NullTest):
        column = _column(node.arg)
        if column:
            test = "IS NULL" if node.nulltesttype == NullTestType.IS_NULL else "IS NOT NULL"
            shape.constants.append((*column, test))
        return
    if isinstance(node, ast.ColumnRef):  # WHERE active
        column = _column(node)
        if column:
            shape.constants.append((*column, "IS TRUE"))
        return
    if isinstance(node, ast.BoolExpr) and node.boolop == BoolExprType.NOT_EXPR and len(node.args) == 1:
        column = _column(node.args[0])
        if column:
            shape.constants.append((*column, "IS FALSE"))
        return
    if not isinstance(node, ast.A_Expr):
        return
    left, right = _column(node.lexpr), _column(node.rexpr) if not isinstance(node.rexpr, tuple) else None
    op = _operator(node)
    if node.kind in (A_Expr_Kind.AEXPR_OP, A_Expr_Kind.AEXPR_OP_ANY, A_Expr_Kind.AEXPR_IN):
        if op == "=" and left and right:
            shape.joins.extend([left, right])
        elif op == "=" and (left or right):
            column = left or right
            value = node.rexpr if left else node.lexpr
            boolean = _const_bool(value)
            if boolean is not None:
                shape.constants.append((*column, "IS TRUE" if boolean else "IS FALSE"))
            elif node.kind == A_Expr_Kind.AEXPR_IN or _is_value(value):
                shape.equality.append(column)
                if node.kind == A_Expr_Kind.AEXPR_OP:
                    if isinstance(_unwrap(value), ast.ParamRef):
                        shape.parameters.append((*column, _unwrap(value).number))
                    elif (literal := _literal(value)) is not None:
                        shape.literals.append((*column, literal))
        elif op in RANGE_OPERATORS and node.kind == A_Expr_Kind.AEXPR_OP and (left or right):
            if left and right:
                return
            value = node.rexpr if left else node.lexpr
            if _is_value(value):
                shape.ranges.append(left or right)
    elif node.kind in (A_Expr_Kind.AEXPR_BETWEEN, A_Expr_Kind.AEXPR_BETWEEN_SYM) and left:
        shape.ranges.append(left)
    elif node.kind == A_Expr_Kind.AEXPR_LIKE and left and op == "~~":
        shape.ranges.append(left)  # a btree serves a left-anchored LIKE (with C collation / pattern ops)


def _add_from(shape: QueryShape, node) -> None:
    if isinstance(node, ast.RangeVar):
        ref = TableRef(node.schemaname, node.relname)
        shape.tables[node.alias.aliasname if node.alias else node.relname] = ref
    elif isinstance(node, ast.JoinExpr):
        _add_from(shape, node.larg)
        _add_from(shape, node.rarg)
        for conjunct in _conjuncts(node.quals):
            _add_predicate(shape, conjunct)


def _max_param(node, found: list[int]) -> None:
    if isinstance(node, ast.ParamRef):
        found.append(node.number)
    if isinstance(node, ast.Node):
        for name in node:
            _max_param(getattr(node, name), found)
    elif isinstance(node, tuple | list):
        for item in node:
            _max_param(item, found)


def query_shape(text: str) -> QueryShape:
    """The shape of one statement; Unparseable when it is not a single SELECT, UPDATE or DELETE."""
    try:
        statements = parse_sql(text)
    except Exception as exc:  # pglast raises its own ParseError
        raise Unparseable(str(exc)) from exc
    if len(statements) != 1:
        raise Unparseable("not a single statement")
    stmt = statements[0].stmt
    shape = QueryShape()
    if isinstance(stmt, ast.SelectStmt):
        if stmt.op.name != "SETOP_NONE":
            raise Unparseable("set operations are not advised on")
        for item in stmt.fromClause or ():
            _add_from(shape, item)
        where = stmt.whereClause
        shape.has_limit = stmt.limitCount is not None
        for sort in stmt.sortClause or ():
            column = _column(sort.node)
            if column is None:
                shape.order_by = []
                break
            shape.order_by.append((*column, sort.sortby_dir == SortByDir.SORTBY_DESC))
    elif isinstance(stmt, ast.UpdateStmt | ast.DeleteStmt):
        _add_from(shape, stmt.relation)
        for item in getattr(stmt, "fromClause", None) or getattr(stmt, "usingClause", None) or ():
            _add_from(shape, item)
        where = stmt.whereClause
    else:
        raise Unparseable(f"{type(stmt).__name__} is not advised on")
    for conjunct in _conjuncts(where):
        _add_predicate(shape, conjunct)
    found: list[int] = []
    _max_param(stmt, found)
    shape.params = max(found, default=0)
    return shape
