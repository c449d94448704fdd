-- name: authenticate
SELECT k.id, k.business_id, k.is_admin, k.scopes, b.slug
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

-- name: outbox_stats
SELECT count(*) AS backlog,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age_s
FROM outbox;
