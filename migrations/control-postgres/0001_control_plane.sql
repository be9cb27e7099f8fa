-- The control plane: which tenants exist, where their file is, and what happened to them.
-- PostgreSQL: the same versions as migrations/control (SQLite), table for table; text sorts
-- by bytes as in SQLite (COLLATE "C"), times and JSON are text as there.

-- SQLite's JSON and string functions, as the control plane's statements use them, on
-- PostgreSQL: the statements are written once (SQLite's dialect) and run on both engines.
-- JSON is stored as text on both; these take and give text.

-- `$.a."b-c"[2]` → {a,b-c,2}: a SQLite JSON path as a PostgreSQL path array.
CREATE FUNCTION silo_json_path(path text) RETURNS text[] LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT coalesce(array_agg(coalesce(m[1], m[2], m[3]) ORDER BY n), '{}')
    FROM regexp_matches(path, '\.(?:"([^"]*)"|([^.\[]+))|\[(\d+)\]', 'g') WITH ORDINALITY AS r(m, n)
$$;

CREATE FUNCTION json_valid(doc text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM doc::jsonb;
    RETURN doc IS NOT NULL;
EXCEPTION WHEN others THEN
    RETURN false;
END $$;

-- The value at `path`: text for a string, the JSON text of anything else, NULL if absent.
CREATE FUNCTION json_extract(doc text, path text) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT doc::jsonb #>> silo_json_path(path)
$$;
-- `doc -> path` and `doc ->> path` on text, as SQLite reads them: the JSON at `path`, or its
-- SQL value (text for a string).
CREATE FUNCTION silo_json_at(doc text, path text) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT (doc::jsonb #> silo_json_path(path))::text
$$;
CREATE FUNCTION silo_json_text_at(doc text, path text) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT doc::jsonb #>> silo_json_path(path)
$$;
CREATE OPERATOR ->> (LEFTARG = text, RIGHTARG = text, FUNCTION = silo_json_text_at);
CREATE OPERATOR -> (LEFTARG = text, RIGHTARG = text, FUNCTION = silo_json_at);

CREATE FUNCTION json_type(doc text, path text) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'string' THEN 'text'
        WHEN 'boolean' THEN v::text
        WHEN 'number' THEN CASE WHEN v::text ~ '^-?\d+$' THEN 'integer' ELSE 'real' END
        ELSE jsonb_typeof(v) END
    FROM (SELECT doc::jsonb #> silo_json_path(path) AS v) AS at
$$;

CREATE FUNCTION json_set(doc text, path text, value jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_set(doc::jsonb, silo_json_path(path), coalesce(value, 'null'::jsonb), true)::text
$$;
CREATE FUNCTION json_set(doc text, path text, value text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT json_set(doc, path, to_jsonb(value))
$$;
CREATE FUNCTION json_set(doc text, path text, value json) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT json_set(doc, path, value::jsonb)
$$;

CREATE FUNCTION json_remove(doc text, VARIADIC paths text[]) RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    result jsonb := doc::jsonb;
    path text;
BEGIN
    FOREACH path IN ARRAY paths LOOP
        result := result #- silo_json_path(path);
    END LOOP;
    RETURN result::text;
END $$;

-- RFC 7396: a member of `patch` replaces the target's, objects merge, null removes.
CREATE FUNCTION silo_merge_patch(target jsonb, patch jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    result jsonb;
    member record;
BEGIN
    IF jsonb_typeof(patch) IS DISTINCT FROM 'object' THEN
        RETURN patch;
    END IF;
    result := CASE WHEN jsonb_typeof(target) = 'object' THEN target ELSE '{}'::jsonb END;
    FOR member IN SELECT key, value FROM jsonb_each(patch) LOOP
        IF jsonb_typeof(member.value) = 'null' THEN
            result := result - member.key;
        ELSE
            result := jsonb_set(result, ARRAY[member.key], silo_merge_patch(result -> member.key, member.value), true);
        END IF;
    END LOOP;
    RETURN result;
END $$;
CREATE FUNCTION json_patch(target text, patch text) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT silo_merge_patch(target::jsonb, patch::jsonb)::text
$$;

-- The elements of an array (their index as `key`), or the members of an object.
CREATE FUNCTION json_each(doc text) RETURNS TABLE (key text, value text) LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT (e.n - 1)::text, e.v FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(doc::jsonb) = 'array' THEN doc::jsonb ELSE '[]' END) WITH ORDINALITY AS e(v, n)
    UNION ALL
    SELECT o.key, o.value FROM jsonb_each_text(CASE WHEN jsonb_typeof(doc::jsonb) = 'object' THEN doc::jsonb ELSE '{}' END) AS o
$$;

CREATE FUNCTION instr(haystack text, needle text) RETURNS integer LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT strpos(haystack, needle)
$$;

-- SQLite's two-argument min and max (PostgreSQL's are aggregates only).
CREATE FUNCTION min(a anycompatible, b anycompatible) RETURNS anycompatible LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN a IS NULL OR b IS NULL THEN NULL ELSE least(a, b) END
$$;
CREATE FUNCTION max(a anycompatible, b anycompatible) RETURNS anycompatible LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN a IS NULL OR b IS NULL THEN NULL ELSE greatest(a, b) END
$$;

-- SQLite's NOCASE: ASCII letters compare without case.
CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);


CREATE TABLE tenants (
    id              TEXT COLLATE "C" PRIMARY KEY,             -- UUID v7, never reused
    slug            TEXT COLLATE "C" NOT NULL,
    name            TEXT COLLATE "C" NOT NULL,
    status          TEXT COLLATE "C" NOT NULL CHECK (status IN ('active', 'suspended', 'deleting', 'deleted')),
    region          TEXT COLLATE "C" NOT NULL,
    plan            TEXT COLLATE "C" NOT NULL,
    schema_version  BIGINT NOT NULL DEFAULT 0,
    migration_error TEXT COLLATE "C",                          -- set: quarantined until a migration succeeds
    created_at      TEXT COLLATE "C" NOT NULL,
    updated_at      TEXT COLLATE "C" NOT NULL,
    deleted_at      TEXT COLLATE "C",
    -- SQLite's implicit row number, which the backup scheduler walks tenants by.
    rowid           BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
);

-- A slug names one live tenant; a purged tenant's slug may be taken again (with a new id and path).
CREATE UNIQUE INDEX tenants_live_slug ON tenants (slug) WHERE status <> 'deleted';
CREATE INDEX tenants_status ON tenants (status, slug);
CREATE INDEX tenants_region ON tenants (region, slug);

CREATE TABLE audit_log (
    id        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at        TEXT COLLATE "C" NOT NULL,
    actor     TEXT COLLATE "C" NOT NULL,
    action    TEXT COLLATE "C" NOT NULL,
    tenant_id TEXT COLLATE "C" REFERENCES tenants (id),
    detail    TEXT COLLATE "C" NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
);

CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
