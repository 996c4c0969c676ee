// Helpers shared by the rules, the alerts and the dashboard.
{
  // `expr` with `selector` (PromQL matchers, '' for none) put into every vector selector. The rules and
  // alerts write every vector selector with braces, `{}` when it has no matchers of its own, so that
  // `up{}` becomes `up` or `up{job="x"}`, and `m{a="b"}` becomes `m{job="x", a="b"}`. PromQL has no other
  // braces outside string literals, and no rule here has a brace inside one.
  withSelector(expr, selector)::
    local sentinel = '\u0000';
    if selector == '' then std.strReplace(expr, '{}', '')
    else std.strReplace(
      std.strReplace(std.strReplace(expr, '{}', sentinel), '{', '{' + selector + ', '),
      sentinel,
      '{' + selector + '}'
    ),

  // A threshold as PromQL reads it: 0.1 and 86400, not 0.10000000000000001 (what std.toString gives).
  number(value):: '%.15g' % value,
}
