-- Issue 19 (AuthZEN interop): a policy version may carry an application's Cedar schema and
-- entities, which the AuthZEN API decides that application's requests with. NULL for none.
ALTER TABLE policy_versions ADD COLUMN application_schema TEXT;
ALTER TABLE policy_versions ADD COLUMN application_entities TEXT;
