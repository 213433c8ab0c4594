-- pgbench's side of examples/journal_rate.rs: one journal row per transaction, one
-- transaction per client at a time (no group commit of callgate's), on the same table.
\set id random(1, 2000000000)
INSERT INTO journal_leases (domain, id, key, class, flow, pools, granted_at, expires_at, ttl_ms)
VALUES ('pgbench', :id, 'bench-call-' || :id, 'c', NULL, '[["vapi",1]]', 0, 600000, 600000)
ON CONFLICT (domain, id) DO NOTHING;
