-- name: partner_secrets
-- The secrets that verify a partner's callbacks (several during a rotation), newest first.
SELECT p.business_id, s.id, s.sealed
FROM businesses b
JOIN partners p ON p.business_id = b.id
JOIN partner_secrets s ON s.partner_id = p.id
WHERE b.slug = $1 AND p.name = $2
ORDER BY s.created_at DESC, s.id;

-- name: create_partner
INSERT INTO partners (business_id, name) VALUES ($1, $2) RETURNING id;

-- name: partner_id
SELECT id FROM partners WHERE business_id = $1 AND name = $2;

-- name: add_partner_secret
INSERT INTO partner_secrets (id, partner_id, sealed) VALUES ($1, $2, $3) RETURNING created_at;

-- name: list_partners
-- Never the sealed secrets: ids and times are what an operator needs to rotate.
SELECT b.slug, p.name, p.created_at,
       coalesce(array_agg(s.id ORDER BY s.created_at, s.id) FILTER (WHERE s.id IS NOT NULL), '{}') AS secret_ids,
       coalesce(array_agg(s.created_at ORDER BY s.created_at, s.id) FILTER (WHERE s.id IS NOT NULL), '{}')
           AS secret_created_at
FROM partners p
JOIN businesses b ON b.id = p.business_id
LEFT JOIN partner_secrets s ON s.partner_id = p.id
WHERE $1::bigint IS NULL OR p.business_id = $1
GROUP BY b.slug, p.id
ORDER BY b.slug, p.name;

-- name: count_partner_secrets
SELECT count(*) FROM partner_secrets WHERE partner_id = $1;

-- name: remove_partner_secret
DELETE FROM partner_secrets WHERE partner_id = $1 AND id = $2 RETURNING id;

-- name: remove_partner
DELETE FROM partners WHERE id = $1;
