"""The operator console's data: who may sign in (`users`), the per-transaction tenant scope
(`scope`), and the read models its pages show (one module per page family).

Every query here runs inside `scope.scoped(...)`: as `outbound_tenant` with the viewer's client set,
or as `outbound_operator`. Row-level security decides what a viewer sees; the queries do not filter
by client for isolation's sake (an operator's optional client filter is a convenience, not a guard).
"""
