-- Invoices (silo-billing): plan history, billing contacts, invoices and credit notes, and the
-- one gapless sequence their numbers come from.

-- Every plan a tenant has held, from when: the dated segments an invoice prorates by. Kept by
-- triggers, so no path that creates a tenant or changes its plan can forget to record it.
CREATE TABLE tenant_plans (
    seq       INTEGER PRIMARY KEY,                 -- order of the changes
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    plan      TEXT NOT NULL,
    since     TEXT NOT NULL                        -- timestamp (UTC)
) STRICT;

CREATE INDEX tenant_plans_tenant ON tenant_plans (tenant_id, seq);

INSERT INTO tenant_plans (tenant_id, plan, since) SELECT id, plan, created_at FROM tenants ORDER BY created_at, id;

CREATE TRIGGER tenant_plans_created AFTER INSERT ON tenants
BEGIN
    INSERT INTO tenant_plans (tenant_id, plan, since) VALUES (NEW.id, NEW.plan, NEW.created_at);
END;

CREATE TRIGGER tenant_plans_changed AFTER UPDATE OF plan ON tenants WHEN NEW.plan <> OLD.plan
BEGIN
    INSERT INTO tenant_plans (tenant_id, plan, since) VALUES (NEW.id, NEW.plan, NEW.updated_at);
END;

-- Who an invoice is addressed to (one per tenant; blank until the owner or an operator fills it).
CREATE TABLE billing_profiles (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants (id),
    name       TEXT NOT NULL DEFAULT '',           -- company (or person) billed
    email      TEXT NOT NULL DEFAULT '',           -- where invoices and reminders go
    address    TEXT NOT NULL DEFAULT '',
    country    TEXT NOT NULL DEFAULT '',           -- ISO 3166-1 alpha-2: picks the tax rate
    tax_id     TEXT NOT NULL DEFAULT '',           -- VAT number
    updated_at TEXT NOT NULL
) STRICT;

-- Invoices and credit notes. An invoice is created as a draft by the billing run and gets its
-- number when finalised (open); it ends paid or void. A void invoice keeps its number and is
-- cancelled by a credit note (kind 'credit_note', status 'issued', negative amounts), numbered
-- from the same sequence.
CREATE TABLE invoices (
    id                TEXT PRIMARY KEY,            -- UUID v7
    kind              TEXT NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    period            TEXT NOT NULL,               -- YYYY-MM billed
    status            TEXT NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'issued')),
    number            INTEGER UNIQUE,              -- given when finalised; no gaps
    credits           TEXT REFERENCES invoices (id), -- a credit note: the invoice it cancels
    currency          TEXT NOT NULL,
    lines             TEXT NOT NULL CHECK (json_valid(lines)),
    subtotal          INTEGER NOT NULL,            -- minor units
    tax               INTEGER NOT NULL,
    total             INTEGER NOT NULL,
    tax_rate_bp       INTEGER NOT NULL,            -- basis points
    bill_to           TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(bill_to)), -- the contact when finalised
    created_at        TEXT NOT NULL,
    finalized_at      TEXT,
    due_at            TEXT,
    paid_at           TEXT,
    voided_at         TEXT,
    payment_provider  TEXT,
    payment_reference TEXT,
    reminders         INTEGER NOT NULL DEFAULT 0,  -- dunning reminders sent
    suspended_at      TEXT                         -- dunning suspended the tenant over it
) STRICT;

-- The billing run's idempotence: one invoice per tenant and month.
CREATE UNIQUE INDEX invoices_one_per_period ON invoices (tenant_id, period) WHERE kind = 'invoice';
CREATE INDEX invoices_by_status ON invoices (status, due_at);
CREATE INDEX invoices_by_period ON invoices (period, number);

-- The last number given. Finalising takes the write lock by bumping it, so numbers are given
-- one transaction at a time, and a transaction that fails gives its numbers back.
CREATE TABLE invoice_sequence (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
) STRICT;

INSERT INTO invoice_sequence (id, last) VALUES (1, 0);

-- People who used the tenant that day (distinct accounts with a request), as last counted.
ALTER TABLE usage_daily ADD COLUMN active_users INTEGER NOT NULL DEFAULT 0;
