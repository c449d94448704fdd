-- name: authenticate
SELECT k.id, k.business_id, k.is_admin, k.scopes, b.slug, b.rate_limits::text AS rate_limits
FROM api_keys k
LEFT JOIN businesses b ON b.id = k.business_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL;

-- name: business_by_slug
SELECT id, slug, name FROM businesses WHERE slug = $1;

-- name: create_business
INSERT INTO businesses (slug, name) VALUES ($1, $2) RETURNING id, slug, name;

-- name: create_key
INSERT INTO api_keys (id, key_hash, business_id, is_admin, scopes)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, created_at;

-- name: revoke_key
-- Keys are never deleted (events name the key that wrote them, actor api_key:<id>);
-- revoking stamps the row once, so the audit trail keeps the first revocation time.
UPDATE api_keys SET revoked_at = now()
WHERE id = $1 AND revoked_at IS NULL
RETURNING revoked_at;

-- name: key_by_id
SELECT revoked_at FROM api_keys WHERE id = $1;

-- name: list_keys
-- Never key_hash: no operator task needs it, so a listing pasted into a ticket shows nothing
-- that identifies the secret.
SELECT k.id, b.slug, k.is_admin, k.scopes, k.created_at, k.revoked_at
FROM api_keys k
LEFT JOIN businesses b ON b.id = k.business_id
WHERE $1::bigint IS NULL OR k.business_id = $1
ORDER BY k.created_at, k.id;

-- name: set_rate_limits
UPDATE businesses SET rate_limits = $2::jsonb WHERE slug = $1 RETURNING rate_limits::text AS rate_limits;

-- name: rate_limits
SELECT rate_limits::text AS rate_limits FROM businesses WHERE slug = $1;
