-- A business's own rate limits per route class, overriding RATE_LIMIT_PER_BUSINESS:
-- {"submit": "500/1s", "read": "2000/1s"}. Configuration, written by `intake businesses limits`
-- as the owner; the app reads it with the API key (the grants on businesses already cover it).
ALTER TABLE businesses
    ADD COLUMN rate_limits jsonb NOT NULL DEFAULT '{}'::jsonb
        CONSTRAINT businesses_rate_limits_object CHECK (jsonb_typeof(rate_limits) = 'object');
