-- Who issued an invoice, as it was when the invoice was numbered: the seller's name and
-- address, VAT ID and country (JSON). An invoice already issued does not change when the
-- settings do; a credit note carries its invoice's. NULL on invoices issued before this.
ALTER TABLE invoices ADD COLUMN issued_by TEXT COLLATE "C" CHECK (issued_by IS NULL OR json_valid(issued_by));
